#include "http/h2_memory.h"

#include <bit>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(POOLGATE_ASAN)
#include <sanitizer/asan_interface.h>
#define PG_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define PG_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define PG_POISON(p, n) ((void)(p), (void)(n))
#define PG_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace poolgate {

// Before every block: what it can hold, and what was asked of it while it is
// out (or the free list's link while it is on one). 16 bytes, so the block
// itself keeps malloc's alignment.
struct H2Memory::Block {
  size_t capacity;  // bytes after the header
  union {
    size_t size;  // out: the size asked for (realloc copies that much)
    Block* next;  // on a free list
  };
};

namespace {

constexpr size_t kHeader = 16;  // sizeof(H2Memory::Block), checked in allocate()
constexpr size_t kLargestClass = H2Memory::kMinClassBytes << (H2Memory::kClasses - 1);

constexpr size_t classBytes(size_t cls) { return H2Memory::kMinClassBytes << cls; }

void* user(void* block) { return static_cast<char*>(block) + kHeader; }

// Under ASan the bytes past the size asked for are poisoned too, as malloc's
// would be past the end of the block.
void* handOut(H2Memory::Block* block, size_t size) {
  block->size = size;
  char* p = static_cast<char*>(user(block));
  PG_UNPOISON(p, size);
  PG_POISON(p + size, block->capacity - size);
  return p;
}

}  // namespace

H2Memory::~H2Memory() {
  for (Block*& head : free_) {
    while (head != nullptr) {
      Block* next = head->next;
      std::free(head);
      head = next;
    }
  }
}

nghttp2_mem* H2Memory::mem() {
  // Never destroyed: a session freed while the process exits still finds it.
  static H2Memory* const memory = new H2Memory;
  static nghttp2_mem table = {
      memory,
      [](size_t size, void* self) { return static_cast<H2Memory*>(self)->allocate(size); },
      [](void* ptr, void* self) { static_cast<H2Memory*>(self)->release(ptr); },
      [](size_t count, size_t size, void* self) { return static_cast<H2Memory*>(self)->allocateZeroed(count, size); },
      [](void* ptr, size_t size, void* self) { return static_cast<H2Memory*>(self)->reallocate(ptr, size); },
  };
  return &table;
}

// The smallest class that holds `total` bytes (total <= kLargestClass).
size_t H2Memory::classOf(size_t total) {
  constexpr size_t kMinShift = std::bit_width(kMinClassBytes - 1);  // 32 bytes: 5
  return total <= kMinClassBytes ? 0 : std::bit_width(total - 1) - kMinShift;
}

void* H2Memory::allocate(size_t size) {
  static_assert(sizeof(Block) == kHeader);
  if (size > SIZE_MAX - kHeader) return nullptr;
  const size_t total = size + kHeader;
  if (total > kLargestClass) {
    auto* block = static_cast<Block*>(std::malloc(total));
    if (block == nullptr) return nullptr;
    block->capacity = size;
    return handOut(block, size);
  }
  const size_t cls = classOf(total);
  Block* block = free_[cls];
  if (block != nullptr) {
    free_[cls] = block->next;
    --kept_[cls];
    ++reused_;
    return handOut(block, size);
  }
  block = static_cast<Block*>(std::malloc(classBytes(cls)));
  if (block == nullptr) return nullptr;
  block->capacity = classBytes(cls) - kHeader;
  return handOut(block, size);
}

void H2Memory::release(void* ptr) {
  if (ptr == nullptr) return;
  auto* block = reinterpret_cast<Block*>(static_cast<char*>(ptr) - kHeader);
  const size_t total = block->capacity + kHeader;
  if (total > kLargestClass) {
    std::free(block);
    return;
  }
  const size_t cls = classOf(total);
  if (size_t{kept_[cls] + 1} * classBytes(cls) > kKeptBytesPerClass) {
    std::free(block);
    return;
  }
  block->next = free_[cls];
  free_[cls] = block;
  ++kept_[cls];
  PG_POISON(ptr, block->capacity);
}

void* H2Memory::allocateZeroed(size_t count, size_t size) {
  if (size != 0 && count > SIZE_MAX / size) return nullptr;
  void* ptr = allocate(count * size);
  if (ptr != nullptr) std::memset(ptr, 0, count * size);
  return ptr;
}

void* H2Memory::reallocate(void* ptr, size_t size) {
  if (ptr == nullptr) return allocate(size);
  auto* block = reinterpret_cast<Block*>(static_cast<char*>(ptr) - kHeader);
  if (size <= block->capacity) return handOut(block, size);
  void* bigger = allocate(size);
  if (bigger == nullptr) return nullptr;  // the old block stays the caller's
  std::memcpy(bigger, ptr, block->size);
  release(ptr);
  return bigger;
}

size_t H2Memory::keptBlocks() const {
  size_t n = 0;
  for (uint32_t k : kept_) n += k;
  return n;
}

}  // namespace poolgate
