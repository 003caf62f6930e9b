// H2Memory, nghttp2's allocator: freed blocks come back by size class, within
// the bytes each class may keep, and behave as malloc's would.
#include "http/h2_memory.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace poolgate {
namespace {

TEST(H2Memory, AFreedBlockIsHandedOutAgainForASizeOfItsClass) {
  H2Memory memory;
  void* a = memory.allocate(100);  // 100 + 16 bytes of header: the 128-byte class
  ASSERT_NE(a, nullptr);
  memory.release(a);
  EXPECT_EQ(memory.keptBlocks(), 1u);
  void* b = memory.allocate(90);
  EXPECT_EQ(b, a);
  EXPECT_EQ(memory.reused(), 1u);
  EXPECT_EQ(memory.keptBlocks(), 0u);
  void* c = memory.allocate(200);  // another class: a block of its own
  EXPECT_NE(c, a);
  memory.release(b);
  memory.release(c);
  EXPECT_EQ(memory.keptBlocks(), 2u);
}

TEST(H2Memory, BlocksKeepMallocsAlignment) {
  H2Memory memory;
  for (size_t size : {1, 15, 16, 17, 100, 1000, 4080, 5000}) {
    void* p = memory.allocate(size);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignof(std::max_align_t), 0u) << size;
    memory.release(p);
  }
}

TEST(H2Memory, ReallocateKeepsTheBytesAndGrows) {
  H2Memory memory;
  auto* p = static_cast<char*>(memory.allocate(10));
  std::memcpy(p, "0123456789", 10);
  EXPECT_EQ(memory.reallocate(p, 16), p);  // the 32-byte class holds 16 after its header
  auto* q = static_cast<char*>(memory.reallocate(p, 3000));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(std::memcmp(q, "0123456789", 10), 0);
  auto* r = static_cast<char*>(memory.reallocate(q, 100000));  // past the classes: malloc's
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(std::memcmp(r, "0123456789", 10), 0);
  memory.release(r);
  void* fresh = memory.reallocate(nullptr, 50);  // as malloc
  EXPECT_NE(fresh, nullptr);
  memory.release(fresh);
}

TEST(H2Memory, ZeroedBlocksAreZeroEvenWhenReused) {
  H2Memory memory;
  void* dirty = memory.allocate(64);
  std::memset(dirty, 0xab, 64);
  memory.release(dirty);
  auto* z = static_cast<unsigned char*>(memory.allocateZeroed(8, 8));
  ASSERT_EQ(static_cast<void*>(z), dirty);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(z[i], 0) << i;
  memory.release(z);
  EXPECT_EQ(memory.allocateZeroed(SIZE_MAX / 2, 4), nullptr);  // overflow
}

TEST(H2Memory, LargeBlocksAreNotKept) {
  H2Memory memory;
  memory.release(memory.allocate(4081));  // 4081 + 16 > 4096
  memory.release(memory.allocate(1 << 20));
  EXPECT_EQ(memory.keptBlocks(), 0u);
}

TEST(H2Memory, EachClassKeepsABoundedNumberOfBytes) {
  H2Memory memory;
  std::vector<void*> blocks;
  for (int i = 0; i < 400; ++i) blocks.push_back(memory.allocate(4000));  // the 4096-byte class
  for (void* b : blocks) memory.release(b);
  EXPECT_EQ(memory.keptBlocks(), H2Memory::kKeptBytesPerClass / 4096);
}

// Under AddressSanitizer (the CI's second pass) a block on a free list is
// poisoned: a use after free inside nghttp2 is reported as if malloc's.
TEST(H2Memory, ABlockOnAFreeListIsPoisonedUnderAsan) {
#if !defined(POOLGATE_ASAN)
  GTEST_SKIP() << "needs AddressSanitizer";
#else
  H2Memory memory;
  auto* p = static_cast<volatile char*>(memory.allocate(40));
  p[0] = 1;
  memory.release(const_cast<char*>(p));
  EXPECT_DEATH(p[0] = 2, "use-after-poison");
#endif
}

// And so are the bytes past the size asked for, within the block's class.
TEST(H2Memory, BytesPastTheSizeAskedForArePoisonedUnderAsan) {
#if !defined(POOLGATE_ASAN)
  GTEST_SKIP() << "needs AddressSanitizer";
#else
  H2Memory memory;
  auto* p = static_cast<volatile char*>(memory.allocate(40));  // the 64-byte class: 48 usable
  p[39] = 1;
  EXPECT_DEATH(p[40] = 2, "use-after-poison");
  auto* q = static_cast<volatile char*>(memory.reallocate(const_cast<char*>(p), 44));  // grows in place
  ASSERT_EQ(q, p);
  q[43] = 1;  // now the caller's
  memory.release(const_cast<char*>(q));
#endif
}

}  // namespace
}  // namespace poolgate
