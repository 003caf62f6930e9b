// Buffer + BufferPool: lazy storage, pooled blocks, growth that keeps offsets.
#include "core/buffer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <string_view>

namespace poolgate {
namespace {

constexpr size_t kBlock = 64;

std::string_view readable(const Buffer& buffer) { return {buffer.data(), buffer.size()}; }

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

TEST(BufferPool, AcquireAndReleaseTrackBlocks) {
  BufferPool pool(kBlock);
  EXPECT_EQ(pool.blockSize(), kBlock);
  char* first = pool.acquire();
  char* second = pool.acquire();
  EXPECT_EQ(pool.blocksInUse(), 2u);
  EXPECT_EQ(pool.freeBlocks(), 0u);
  pool.release(first);
  EXPECT_EQ(pool.blocksInUse(), 1u);
  EXPECT_EQ(pool.freeBlocks(), 1u);
  pool.release(second);
  EXPECT_EQ(pool.blocksInUse(), 0u);
  EXPECT_EQ(pool.freeBlocks(), 2u);
}

TEST(BufferPool, ReleasedBlockIsReused) {
  BufferPool pool(kBlock);
  char* block = pool.acquire();
  pool.release(block);
  EXPECT_EQ(pool.acquire(), block);
  EXPECT_EQ(pool.freeBlocks(), 0u);
  pool.release(block);
}

TEST(BufferPool, FreeListIsCappedAtMaxFree) {
  BufferPool pool(kBlock, /*max_free=*/1);
  char* a = pool.acquire();
  char* b = pool.acquire();
  pool.release(a);
  pool.release(b);  // over the cap: freed, not kept
  EXPECT_EQ(pool.freeBlocks(), 1u);
  EXPECT_EQ(pool.blocksInUse(), 0u);
}

TEST(Buffer, HasNoStorageUntilFirstWrite) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  EXPECT_FALSE(buffer.allocated());
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(buffer.size(), 0u);
  EXPECT_EQ(buffer.capacity(), 0u);
  EXPECT_EQ(buffer.writable(), 0u);
  EXPECT_EQ(pool.blocksInUse(), 0u);

  buffer.append("hi");
  EXPECT_TRUE(buffer.allocated());
  EXPECT_EQ(buffer.capacity(), kBlock);
  EXPECT_EQ(pool.blocksInUse(), 1u);
}

TEST(Buffer, AppendingNothingAllocatesNothing) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append("", 0);
  EXPECT_FALSE(buffer.allocated());
  EXPECT_EQ(pool.blocksInUse(), 0u);
}

TEST(Buffer, AppendThenConsume) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append("hello ");
  buffer.append("world");
  EXPECT_EQ(readable(buffer), "hello world");

  buffer.consume(6);
  EXPECT_EQ(readable(buffer), "world");
  EXPECT_EQ(buffer.beginOffset(), 6u);
  EXPECT_EQ(buffer.data(), buffer.base() + 6);
}

TEST(Buffer, ConsumingEverythingRewindsToTheStart) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append("abc");
  buffer.consume(3);
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(buffer.beginOffset(), 0u);
  EXPECT_EQ(buffer.writable(), kBlock);
  EXPECT_TRUE(buffer.allocated());  // keeps its block until releaseIfEmpty()
}

TEST(Buffer, WritePtrAndCommit) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  ASSERT_TRUE(buffer.ensureWritable(5));
  std::memcpy(buffer.writePtr(), "12345", 5);
  buffer.commit(3);
  EXPECT_EQ(readable(buffer), "123");
  EXPECT_EQ(buffer.writable(), kBlock - 3);
}

TEST(Buffer, CompactMovesReadableBytesToTheStart) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append("xxxxdata");
  buffer.consume(4);
  const char* base = buffer.base();
  buffer.compact();
  EXPECT_EQ(buffer.base(), base);
  EXPECT_EQ(buffer.beginOffset(), 0u);
  EXPECT_EQ(readable(buffer), "data");
  EXPECT_EQ(buffer.writable(), kBlock - 4);
}

TEST(Buffer, ClearKeepsStorage) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append("abc");
  buffer.clear();
  EXPECT_TRUE(buffer.empty());
  EXPECT_TRUE(buffer.allocated());
  EXPECT_EQ(pool.blocksInUse(), 1u);
}

TEST(Buffer, ReleaseIfEmptyReturnsTheBlockToThePool) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append("abc");
  buffer.consume(3);
  buffer.releaseIfEmpty();
  EXPECT_FALSE(buffer.allocated());
  EXPECT_EQ(buffer.capacity(), 0u);
  EXPECT_EQ(pool.blocksInUse(), 0u);
  EXPECT_EQ(pool.freeBlocks(), 1u);
}

TEST(Buffer, ReleaseIfEmptyKeepsANonEmptyBuffer) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append("abc");
  buffer.releaseIfEmpty();
  EXPECT_TRUE(buffer.allocated());
  EXPECT_EQ(readable(buffer), "abc");
  EXPECT_EQ(pool.blocksInUse(), 1u);
}

TEST(Buffer, ReleasedBlockServesTheNextBuffer) {
  BufferPool pool(kBlock);
  Buffer first(pool);
  first.append("abc");
  const char* block = first.base();
  first.consume(3);
  first.releaseIfEmpty();

  Buffer second(pool);
  second.append("x");
  EXPECT_EQ(second.base(), block);
  EXPECT_EQ(pool.freeBlocks(), 0u);
  EXPECT_EQ(pool.blocksInUse(), 1u);
}

TEST(Buffer, DestructorReturnsTheBlock) {
  BufferPool pool(kBlock);
  {
    Buffer buffer(pool);
    buffer.append("abc");
    EXPECT_EQ(pool.blocksInUse(), 1u);
  }
  EXPECT_EQ(pool.blocksInUse(), 0u);
  EXPECT_EQ(pool.freeBlocks(), 1u);
}

TEST(Buffer, FirstWriteLargerThanABlockTakesAHeapBlock) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  std::string big = pattern(kBlock * 3);
  buffer.append(big);
  EXPECT_EQ(readable(buffer), big);
  EXPECT_GE(buffer.capacity(), big.size());
  EXPECT_EQ(pool.blocksInUse(), 0u);  // not a pooled block
}

TEST(Buffer, GrowthReturnsThePooledBlock) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append(pattern(kBlock));
  EXPECT_EQ(pool.blocksInUse(), 1u);
  buffer.append("more");
  EXPECT_GT(buffer.capacity(), kBlock);
  EXPECT_EQ(pool.blocksInUse(), 0u);
  EXPECT_EQ(pool.freeBlocks(), 1u);
}

TEST(Buffer, HeapBlockIsFreedNotPooledOnRelease) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append(pattern(kBlock * 2));
  buffer.consume(kBlock * 2);
  buffer.releaseIfEmpty();
  EXPECT_FALSE(buffer.allocated());
  EXPECT_EQ(pool.freeBlocks(), 0u);
  EXPECT_EQ(pool.blocksInUse(), 0u);
}

// A parser records slices as offsets from base(); growth must keep them valid.
TEST(Buffer, GrowthWithoutCompactionKeepsOffsets) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append("0123456789GET /path");
  buffer.consume(10);  // readable bytes start at offset 10
  const size_t slice_offset = 10, slice_length = 9;
  ASSERT_EQ(std::string_view(buffer.base() + slice_offset, slice_length), "GET /path");

  ASSERT_TRUE(buffer.ensureWritable(kBlock * 4, /*limit=*/0, /*may_compact=*/false));
  EXPECT_GE(buffer.writable(), kBlock * 4);
  EXPECT_EQ(buffer.beginOffset(), 10u);
  EXPECT_EQ(std::string_view(buffer.base() + slice_offset, slice_length), "GET /path");
  EXPECT_EQ(readable(buffer), "GET /path");
}

TEST(Buffer, NoCompactionWhenNotAllowedEvenIfItWouldFit) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append(pattern(kBlock));
  buffer.consume(kBlock - 8);  // 8 readable bytes at the end; compaction would free plenty
  ASSERT_TRUE(buffer.ensureWritable(16, 0, /*may_compact=*/false));
  EXPECT_EQ(buffer.beginOffset(), kBlock - 8);
  EXPECT_EQ(readable(buffer), pattern(kBlock).substr(kBlock - 8));
}

TEST(Buffer, EnsureWritableCompactsWhenAllowedAndThatSuffices) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append(pattern(kBlock));
  buffer.consume(kBlock - 8);
  const char* base = buffer.base();

  ASSERT_TRUE(buffer.ensureWritable(kBlock - 8));  // fits after compaction
  EXPECT_EQ(buffer.base(), base);                  // no new storage
  EXPECT_EQ(buffer.capacity(), kBlock);
  EXPECT_EQ(buffer.beginOffset(), 0u);
  EXPECT_EQ(readable(buffer), pattern(kBlock).substr(kBlock - 8));
  EXPECT_EQ(pool.blocksInUse(), 1u);
}

TEST(Buffer, EnsureWritableGrowsWhenCompactionIsNotEnough) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append(pattern(kBlock));
  buffer.consume(8);
  ASSERT_TRUE(buffer.ensureWritable(16));
  EXPECT_GE(buffer.writable(), 16u);
  EXPECT_EQ(readable(buffer), pattern(kBlock).substr(8));
}

TEST(Buffer, EnsureWritableDoesNothingWhenThereIsRoom) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append("abcd");
  buffer.consume(2);
  const char* base = buffer.base();
  ASSERT_TRUE(buffer.ensureWritable(8));
  EXPECT_EQ(buffer.base(), base);
  EXPECT_EQ(buffer.beginOffset(), 2u);  // no needless compaction
}

TEST(Buffer, LimitRefusesGrowth) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append(pattern(kBlock));
  EXPECT_FALSE(buffer.ensureWritable(1, /*limit=*/kBlock));
  EXPECT_EQ(buffer.capacity(), kBlock);
  EXPECT_EQ(readable(buffer), pattern(kBlock));  // untouched
}

TEST(Buffer, LimitRefusesAFirstAllocationOverIt) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  EXPECT_FALSE(buffer.ensureWritable(kBlock * 2, /*limit=*/kBlock));
  EXPECT_FALSE(buffer.allocated());
  EXPECT_EQ(pool.blocksInUse(), 0u);
}

TEST(Buffer, GrowthIsCappedAtTheLimit) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append(pattern(kBlock));
  // Doubling would give 2 * kBlock; the limit allows kBlock + 10.
  ASSERT_TRUE(buffer.ensureWritable(5, /*limit=*/kBlock + 10));
  EXPECT_EQ(buffer.capacity(), kBlock + 10);
  EXPECT_EQ(readable(buffer), pattern(kBlock));
}

// The limit caps capacity, and the readable bytes plus the room asked for fit
// under it once the consumed prefix is dropped: compaction was allowed, so
// the request must not be refused.
TEST(Buffer, LimitCountsReadableBytesWhenCompactionIsAllowed) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append(pattern(kBlock));
  buffer.consume(kBlock - 8);  // 8 readable bytes
  ASSERT_TRUE(buffer.ensureWritable(kBlock - 4, /*limit=*/kBlock + 6));  // needs 8 + 60 = 68 <= 70
  EXPECT_GE(buffer.writable(), kBlock - 4);
  EXPECT_LE(buffer.capacity(), kBlock + 6);
  EXPECT_EQ(readable(buffer), pattern(kBlock).substr(kBlock - 8));
}

TEST(Buffer, LimitCountsTheConsumedPrefixWhenCompactionIsForbidden) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append(pattern(kBlock));
  buffer.consume(kBlock - 8);  // offsets must stay: the prefix still occupies storage
  EXPECT_FALSE(buffer.ensureWritable(kBlock - 4, /*limit=*/kBlock + 6, /*may_compact=*/false));
  EXPECT_EQ(buffer.beginOffset(), kBlock - 8);
  EXPECT_EQ(readable(buffer), pattern(kBlock).substr(kBlock - 8));
}

TEST(Buffer, GrowthWithinTheLimitSucceeds) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  buffer.append(pattern(kBlock));
  ASSERT_TRUE(buffer.ensureWritable(kBlock, /*limit=*/kBlock * 4));
  EXPECT_GE(buffer.writable(), kBlock);
  EXPECT_LE(buffer.capacity(), kBlock * 4);
}

TEST(Buffer, RepeatedGrowthKeepsAllBytes) {
  BufferPool pool(kBlock);
  Buffer buffer(pool);
  std::string expected;
  for (int i = 0; i < 200; ++i) {
    std::string piece = pattern(static_cast<size_t>(i % 37 + 1));
    buffer.append(piece);
    expected += piece;
  }
  EXPECT_EQ(readable(buffer), expected);
}

}  // namespace
}  // namespace poolgate
