#include "core/buffer.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace poolgate {

BufferPool::BufferPool(size_t block_size, size_t max_free)
    : block_size_(block_size), max_free_(max_free) {}

BufferPool::~BufferPool() {
  for (char* block : free_) std::free(block);
}

char* BufferPool::acquire() {
  ++in_use_;
  if (!free_.empty()) {
    char* block = free_.back();
    free_.pop_back();
    return block;
  }
  char* block = static_cast<char*>(std::malloc(block_size_));
  if (block == nullptr) throw std::bad_alloc();
  return block;
}

void BufferPool::release(char* block) {
  --in_use_;
  if (free_.size() < max_free_) {
    free_.push_back(block);
  } else {
    std::free(block);
  }
}

void Buffer::freeStorage() {
  if (base_ == nullptr) return;
  if (pooled_) {
    pool_->release(base_);
  } else {
    std::free(base_);
  }
  base_ = nullptr;
  capacity_ = begin_ = end_ = 0;
  pooled_ = false;
}

bool Buffer::grow(size_t min_capacity, size_t limit) {
  if (limit != 0 && min_capacity > limit) return false;
  if (base_ == nullptr && min_capacity <= pool_->blockSize()) {
    base_ = pool_->acquire();
    capacity_ = pool_->blockSize();
    pooled_ = true;
    return true;
  }
  size_t capacity = capacity_ == 0 ? pool_->blockSize() : capacity_;
  while (capacity < min_capacity) capacity *= 2;
  if (limit != 0 && capacity > limit) capacity = limit;
  char* block = static_cast<char*>(std::malloc(capacity));
  if (block == nullptr) return false;
  if (base_ != nullptr) std::memcpy(block, base_, end_);
  size_t begin = begin_, end = end_;
  freeStorage();
  base_ = block;
  capacity_ = capacity;
  begin_ = begin;
  end_ = end;
  pooled_ = false;
  return true;
}

bool Buffer::ensureWritable(size_t n, size_t limit, bool may_compact) {
  if (writable() >= n && base_ != nullptr) return true;
  if (may_compact && base_ != nullptr && begin_ > 0 && capacity_ - size() >= n) {
    compact();
    return true;
  }
  if (may_compact) compact();  // grow (and check the limit) for the live bytes only
  return grow(end_ + n, limit);
}

void Buffer::append(const char* bytes, size_t n) {
  if (n == 0) return;
  if (!ensureWritable(n)) throw std::bad_alloc();
  std::memcpy(base_ + end_, bytes, n);
  end_ += n;
}

void Buffer::consume(size_t n) {
  begin_ += n;
  if (begin_ >= end_) begin_ = end_ = 0;
}

void Buffer::compact() {
  if (begin_ == 0) return;
  std::memmove(base_, base_ + begin_, end_ - begin_);
  end_ -= begin_;
  begin_ = 0;
}

void Buffer::releaseIfEmpty() {
  if (empty()) freeStorage();
}

}  // namespace poolgate
