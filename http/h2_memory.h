// H2Memory: the allocator nghttp2's sessions use (nghttp2_mem), so that the
// library's own allocations stop being heap churn on the hot path.
//
// nghttp2 allocates about a dozen small blocks for every request it carries:
// an outbound item for each HEADERS and DATA it is asked to send, a copy of
// each response's field list, an entry for each field its HPACK encoder
// indexes, a buffer for each field its decoder takes. They live for a turn of
// the loop or for a few requests, and they come in a few sizes. H2Memory keeps
// freed blocks on one free list per size class (32 bytes to 4 KiB, powers of
// two) and hands them out again; larger blocks go to malloc and free. Each
// class keeps at most kKeptBytesPerClass bytes, so a burst does not leave the
// worker holding its peak for good.
//
// One allocator per process, for the one thread that runs the event loop: no
// locks (a worker has one thread; a unit test uses nghttp2 from one thread).
// Under AddressSanitizer a block on a free list is poisoned, and so are the
// bytes of a block past the size asked for, so a use after free or an overrun
// inside nghttp2 is still reported.
#pragma once

#include <nghttp2/nghttp2.h>

#include <array>
#include <cstddef>
#include <cstdint>

// AddressSanitizer, as GCC (__SANITIZE_ADDRESS__) and clang (__has_feature) say it.
#if defined(__SANITIZE_ADDRESS__)
#define POOLGATE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOLGATE_ASAN 1
#endif
#endif

namespace poolgate {

class H2Memory {
 public:
  static constexpr size_t kMinClassBytes = 32;
  static constexpr size_t kClasses = 8;  // 32, 64, ..., 4096 bytes, header included
  static constexpr size_t kKeptBytesPerClass = 1024 * 1024;

  // The process's allocator, as nghttp2 takes it.
  static nghttp2_mem* mem();

  H2Memory() = default;
  ~H2Memory();
  H2Memory(const H2Memory&) = delete;
  H2Memory& operator=(const H2Memory&) = delete;

  void* allocate(size_t size);
  void release(void* ptr);
  void* allocateZeroed(size_t count, size_t size);
  void* reallocate(void* ptr, size_t size);

  // What the free lists hold now, and what they have handed out again.
  size_t keptBlocks() const;
  uint64_t reused() const { return reused_; }

  struct Block;  // the header before each block (h2_memory.cc)

 private:
  static size_t classOf(size_t total);

  std::array<Block*, kClasses> free_{};
  std::array<uint32_t, kClasses> kept_{};
  uint64_t reused_ = 0;
};

}  // namespace poolgate
