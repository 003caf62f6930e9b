// Spool (core/spool.h): order across memory and file, the caps where the
// reader should stop, the worker's memory budget, and what is left behind.
#include "core/spool.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>

namespace poolgate {
namespace {

class TempDirectory {
 public:
  TempDirectory() {
    char path[] = "/tmp/poolgate-spool-test-XXXXXX";
    path_ = mkdtemp(path);
  }
  ~TempDirectory() { rmdir(path_.c_str()); }
  const std::string& path() const { return path_; }
  size_t entries() const {
    size_t count = 0;
    DIR* dir = opendir(path_.c_str());
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++count;
    }
    closedir(dir);
    return count;
  }

 private:
  std::string path_;
};

std::string pattern(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i % 61);
  return s;
}

std::string drainAll(Spool& spool, BufferPool& pool, size_t step) {
  std::string out;
  Buffer buffer(pool);
  while (!spool.empty()) {
    if (spool.drainInto(buffer, step) == 0) break;
    out.append(buffer.data(), buffer.size());
    buffer.clear();
  }
  return out;
}

class SpoolTest : public ::testing::Test {
 protected:
  SpoolTest() {
    limits.memory = 4 * 1024;
    limits.file = 64 * 1024;
    limits.directory = dir.path();
    budget.cap = 1 << 20;
  }
  TempDirectory dir;
  BufferPool pool{1024};
  SpoolLimits limits;
  SpoolBudget budget;
};

TEST_F(SpoolTest, KeepsOrderAcrossMemoryAndFile) {
  Spool spool(pool, budget, limits);
  const std::string data = pattern(20000, 'a');
  for (size_t at = 0; at < data.size(); at += 777) {
    ASSERT_TRUE(spool.append(data.data() + at, std::min<size_t>(777, data.size() - at)));
  }
  EXPECT_TRUE(spool.usedFile());
  EXPECT_LE(spool.memoryBytes(), limits.memory);
  EXPECT_EQ(spool.size(), data.size());
  EXPECT_EQ(spool.appended(), data.size());
  EXPECT_EQ(dir.entries(), 0u) << "the temporary file shows in the directory";
  // Drained in steps, with appends in between: still in order.
  Buffer buffer(pool);
  std::string out;
  ASSERT_EQ(spool.drainInto(buffer, 5000), 5000u);
  out.append(buffer.data(), buffer.size());
  const std::string more = pattern(3000, 'k');
  ASSERT_TRUE(spool.append(more.data(), more.size()));
  out += drainAll(spool, pool, 3333);
  EXPECT_EQ(out, data + more);
  EXPECT_EQ(budget.in_use, 0u);
}

TEST_F(SpoolTest, FullAtTheFileCapButNeverRefusesWhatIsInHand) {
  Spool spool(pool, budget, limits);
  const std::string data = pattern(limits.memory + limits.file, 'b');
  for (size_t at = 0; at + 1 < data.size(); at += 512) {  // memory fills first, then the file
    ASSERT_TRUE(spool.append(data.data() + at, std::min<size_t>(512, data.size() - 1 - at)));
  }
  EXPECT_EQ(spool.memoryBytes(), limits.memory);
  EXPECT_FALSE(spool.full());
  ASSERT_TRUE(spool.append(data.data() + data.size() - 1, 1));
  EXPECT_TRUE(spool.full());
  const std::string extra = pattern(500, 'z');
  EXPECT_TRUE(spool.append(extra.data(), extra.size()));  // a read already in hand
  EXPECT_EQ(drainAll(spool, pool, 4096), data + extra);
  EXPECT_FALSE(spool.full());
}

TEST_F(SpoolTest, WithoutAFileMemoryIsTheCap) {
  limits.file = 0;
  Spool spool(pool, budget, limits);
  const std::string data = pattern(limits.memory + 100, 'c');
  ASSERT_TRUE(spool.append(data.data(), data.size()));
  EXPECT_FALSE(spool.usedFile());
  EXPECT_TRUE(spool.full());
  EXPECT_EQ(drainAll(spool, pool, 1000), data);
}

TEST_F(SpoolTest, TheWorkerBudgetSendsBytesToTheFile) {
  budget.cap = 2048;  // two blocks for all spools
  Spool first(pool, budget, limits), second(pool, budget, limits);
  const std::string data = pattern(2048, 'd');
  ASSERT_TRUE(first.append(data.data(), data.size()));
  EXPECT_FALSE(first.usedFile());
  ASSERT_TRUE(second.append(data.data(), data.size()));
  EXPECT_TRUE(second.usedFile()) << "the budget was spent: to the file";
  EXPECT_EQ(budget.in_use, 2048u);
  first.clear();
  EXPECT_EQ(budget.in_use, 0u);
  EXPECT_EQ(drainAll(second, pool, 700), data);
}

TEST_F(SpoolTest, AFileThatCannotBeOpenedIsAnError) {
  limits.directory = dir.path() + "/missing";
  Spool spool(pool, budget, limits);
  const std::string data = pattern(limits.memory + 1, 'e');
  EXPECT_FALSE(spool.append(data.data(), data.size()));
  EXPECT_EQ(spool.size(), 0u);
}

}  // namespace
}  // namespace poolgate
