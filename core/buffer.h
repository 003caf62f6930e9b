// Byte buffers whose storage comes from a per-worker free list.
//
// A Buffer holds no memory until something is written to it, and gives its
// block back as soon as it is emptied with release(): an idle keep-alive
// connection owns no buffer at all. Blocks are of one size; a buffer that must
// grow past it (a long request head) takes a heap block, which is freed, not
// pooled, on release.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace poolgate {

class BufferPool {
 public:
  explicit BufferPool(size_t block_size = 16 * 1024, size_t max_free = 4096);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  size_t blockSize() const { return block_size_; }
  char* acquire();
  void release(char* block);
  size_t freeBlocks() const { return free_.size(); }
  size_t blocksInUse() const { return in_use_; }

 private:
  size_t block_size_;
  size_t max_free_;
  size_t in_use_ = 0;
  std::vector<char*> free_;
};

class Buffer {
 public:
  explicit Buffer(BufferPool& pool) : pool_(&pool) {}
  ~Buffer() { freeStorage(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  const char* data() const { return base_ + begin_; }
  char* data() { return base_ + begin_; }
  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  bool allocated() const { return base_ != nullptr; }
  size_t capacity() const { return capacity_; }

  // The storage and the offsets of the readable bytes within it. Offsets into
  // the storage stay valid across growth; they move only on compact().
  const char* base() const { return base_; }
  size_t beginOffset() const { return begin_; }

  // Space to write into; ensureWritable() compacts (unless !may_compact, when
  // offsets into the storage must stay put) or grows as needed, and returns
  // false only when `limit` (total capacity cap, 0 = none) forbids it.
  char* writePtr() { return base_ + end_; }
  size_t writable() const { return capacity_ - end_; }
  bool ensureWritable(size_t n, size_t limit = 0, bool may_compact = true);
  void commit(size_t n) { end_ += n; }

  void append(const char* bytes, size_t n);
  void append(std::string_view text) { append(text.data(), text.size()); }
  void consume(size_t n);
  void clear() { begin_ = end_ = 0; }

  // Moves the readable bytes to the start of the storage.
  void compact();
  // Returns the storage to the pool if nothing is buffered.
  void releaseIfEmpty();

 private:
  void freeStorage();
  bool grow(size_t min_capacity, size_t limit);

  BufferPool* pool_;
  char* base_ = nullptr;
  size_t capacity_ = 0;
  size_t begin_ = 0;
  size_t end_ = 0;
  bool pooled_ = false;
};

}  // namespace poolgate
