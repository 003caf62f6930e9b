// LogThrottle: a burst in full, then one summary per interval while the
// failure recurs, and a fresh burst after a quiet interval. Time is driven
// with TimerQueue::setNow(); the log goes to a temporary file that is read back.
#include "core/log_throttle.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "core/log.h"

namespace poolgate {
namespace {

class LogThrottleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char path[] = "/tmp/pg-log-throttle-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    ::close(fd);
    path_ = path;
    std::string why;
    ASSERT_TRUE(Log::open(path_, LogLevel::kInfo, &why)) << why;
  }
  void TearDown() override {
    std::string why;
    Log::open("stderr", LogLevel::kInfo, &why);
    ::unlink(path_.c_str());
  }
  std::string logged() const {
    std::ifstream in(path_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  void advance(uint64_t ms) {
    queue_.setNow(queue_.now() + ms);
    queue_.runExpired();
  }

  std::string path_;
  TimerQueue queue_{1'000'000};
};

TEST_F(LogThrottleTest, BurstInFullThenCountsTheRest) {
  LogThrottle throttle(queue_, LogLevel::kWarn, "upstream 127.0.0.1:5000", "errors", 1000, 3);
  int admitted = 0;
  for (int i = 0; i < 1000; ++i) admitted += throttle.admit("connect: Connection refused") ? 1 : 0;
  EXPECT_EQ(admitted, 3);
  EXPECT_EQ(throttle.suppressed(), 997u);
  EXPECT_EQ(logged(), "");  // the summary waits for the end of the interval

  advance(1000);
  const std::string text = logged();
  EXPECT_NE(text.find("upstream 127.0.0.1:5000: 997 more errors in the last 1.0 s (last: connect: Connection refused)"),
            std::string::npos)
      << text;
  EXPECT_EQ(throttle.suppressed(), 0u);
}

TEST_F(LogThrottleTest, WhileTheFailureRecursOnlySummaries) {
  LogThrottle throttle(queue_, LogLevel::kWarn, "accept", "failures", 1000, 3);
  for (int i = 0; i < 10; ++i) throttle.admit("Too many open files");
  advance(1000);
  // Still failing: nothing more in full, one summary per interval.
  for (int second = 0; second < 3; ++second) {
    for (int i = 0; i < 5; ++i) EXPECT_FALSE(throttle.admit("Too many open files"));
    advance(1000);
  }
  const std::string text = logged();
  size_t summaries = 0;
  for (size_t at = text.find("more failures"); at != std::string::npos; at = text.find("more failures", at + 1)) {
    ++summaries;
  }
  EXPECT_EQ(summaries, 4u) << text;
  EXPECT_NE(text.find("accept: 5 more failures"), std::string::npos) << text;
}

TEST_F(LogThrottleTest, QuietIntervalStartsAFreshBurst) {
  LogThrottle throttle(queue_, LogLevel::kWarn, "s", "errors", 1000, 2);
  EXPECT_TRUE(throttle.admit("a"));
  EXPECT_TRUE(throttle.admit("a"));
  EXPECT_FALSE(throttle.admit("a"));
  advance(1000);  // summary of 1
  advance(1000);  // an interval with nothing: the episode ends
  EXPECT_FALSE(throttle.summarising());
  EXPECT_TRUE(throttle.admit("b"));
  EXPECT_TRUE(throttle.admit("b"));
  EXPECT_FALSE(throttle.admit("b"));
}

TEST_F(LogThrottleTest, OccurrencesWithinTheBurstWriteNoSummary) {
  LogThrottle throttle(queue_, LogLevel::kWarn, "s", "errors", 1000, 3);
  EXPECT_TRUE(throttle.admit("a"));
  EXPECT_TRUE(throttle.admit("a"));
  advance(1000);
  advance(1000);
  EXPECT_EQ(logged().find("more"), std::string::npos);
  EXPECT_TRUE(throttle.admit("a"));  // a new episode: in full again
}

}  // namespace
}  // namespace poolgate
