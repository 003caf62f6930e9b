// Shared health verdicts, the health probe's status-line reader, and the
// sequence-locked address lists of resolved names.
#include "upstream/health.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "shm/stats_segment.h"

namespace poolgate {
namespace {

TEST(ParseStatusLine, ReadsTheCode) {
  EXPECT_EQ(parseStatusLine("HTTP/1.1 200 OK\r\n"), 200);
  EXPECT_EQ(parseStatusLine("HTTP/1.0 503 Service Unavailable\r\nServer: x\r\n"), 503);
  EXPECT_EQ(parseStatusLine("HTTP/1.1 204\r\n"), 204);  // the reason phrase may be absent
  EXPECT_EQ(parseStatusLine("HTTP/1.1 103 Early Hints\r\n"), 103);
}

TEST(ParseStatusLine, WaitsForTheWholeLine) {
  EXPECT_EQ(parseStatusLine(""), 0);
  EXPECT_EQ(parseStatusLine("HTTP/1.1 200 O"), 0);
  EXPECT_EQ(parseStatusLine(std::string(2000, 'x')), -1) << "an endless line is no status line";
}

TEST(ParseStatusLine, RejectsWhatIsNotOne) {
  for (const char* bad : {"HTTP/2 200 OK\r\n", "HTTP/1.1 20 OK\r\n", "HTTP/1.1 2000 OK\r\n", "HTTP/1.1 abc OK\r\n",
                          "SSH-2.0-OpenSSH_9.2\r\n", "HTTP/1.1 099 Low\r\n", "HTTP/1.1 600 High\r\n"}) {
    EXPECT_EQ(parseStatusLine(bad), -1) << bad;
  }
}

constexpr uint64_t kWindowMs = 10'000;

TEST(SharedHealth, MaxFailsWithinTheWindowMarksDown) {
  SharedHealth health;
  EXPECT_TRUE(health.healthy(1'000));
  EXPECT_FALSE(health.noteFailure(1'000, 3, kWindowMs));
  EXPECT_FALSE(health.noteFailure(2'000, 3, kWindowMs));
  EXPECT_TRUE(health.noteFailure(3'000, 3, kWindowMs)) << "the third failure within the window marks it down";
  EXPECT_FALSE(health.healthy(3'000));
  EXPECT_FALSE(health.healthy(12'999));
  EXPECT_TRUE(health.healthy(13'000)) << "back after fail_timeout";
}

TEST(SharedHealth, FailuresSpreadBeyondTheWindowDoNotAddUp) {
  SharedHealth health;
  EXPECT_FALSE(health.noteFailure(1'000, 2, kWindowMs));
  EXPECT_FALSE(health.noteFailure(1'000 + kWindowMs + 1, 2, kWindowMs)) << "a new window began";
  EXPECT_TRUE(health.healthy(1'000 + kWindowMs + 1));
}

TEST(SharedHealth, SuccessEndsTheWindow) {
  SharedHealth health;
  EXPECT_FALSE(health.noteFailure(1'000, 2, kWindowMs));
  health.noteSuccess();
  EXPECT_FALSE(health.noteFailure(2'000, 2, kWindowMs));
  EXPECT_TRUE(health.healthy(2'000));
}

TEST(SharedHealth, ZeroMaxFailsNeverMarksDown) {
  SharedHealth health;
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(health.noteFailure(1'000 + i, 0, kWindowMs));
  EXPECT_TRUE(health.healthy(2'000));
}

TEST(SharedHealth, FailingCheckTakesItOutPassingDoesNot) {
  SharedHealth health;
  health.check = static_cast<uint32_t>(CheckState::kFailing);
  EXPECT_FALSE(health.healthy(1'000));
  health.check = static_cast<uint32_t>(CheckState::kPassing);
  EXPECT_TRUE(health.healthy(1'000));
  // Passive and active verdicts combine: either one takes it out.
  EXPECT_TRUE(health.noteFailure(1'000, 1, kWindowMs));
  EXPECT_FALSE(health.healthy(1'000));
}

TEST(SharedTables, EntriesAreFoundByUpstreamAndAddress) {
  auto segment = std::make_unique<StatsSegment>();
  EXPECT_EQ(findSharedServer(*segment, "app", "10.0.0.1:80"), -1);
  int a = addSharedServer(*segment, "app", "10.0.0.1:80");
  int b = addSharedServer(*segment, "api", "10.0.0.1:80");
  EXPECT_GE(a, 0);
  EXPECT_NE(a, b) << "the same address in two upstreams is two entries";
  EXPECT_EQ(addSharedServer(*segment, "app", "10.0.0.1:80"), a) << "adding again finds the entry";
  EXPECT_EQ(findSharedServer(*segment, "api", "10.0.0.1:80"), b);
  EXPECT_EQ(findSharedName(*segment, "app", "app.test:80"), -1);
  int name = addSharedName(*segment, "app", "app.test:80");
  EXPECT_EQ(findSharedName(*segment, "app", "app.test:80"), name);
  EXPECT_EQ(addSharedServer(*segment, std::string(200, 'u'), "10.0.0.1:80"), -1) << "a key too long is refused";
}

TEST(SharedTables, PublishedAddressesAreReadWhole) {
  auto segment = std::make_unique<StatsSegment>();
  SharedName& entry = segment->names[addSharedName(*segment, "app", "app.test:80")];
  std::vector<std::string> read;
  EXPECT_EQ(readAddresses(entry, &read), 0u);
  EXPECT_TRUE(read.empty());

  publishAddresses(entry, {"10.0.0.1:80", "[2001:db8::1]:80"});
  uint64_t first = readAddresses(entry, &read);
  EXPECT_EQ(first % 2, 0u) << "a reader never returns a version taken mid-write";
  EXPECT_EQ(read, (std::vector<std::string>{"10.0.0.1:80", "[2001:db8::1]:80"}));

  publishAddresses(entry, {"10.0.0.2:80"});
  uint64_t second = readAddresses(entry, &read);
  EXPECT_GT(second, first);
  EXPECT_EQ(read, (std::vector<std::string>{"10.0.0.2:80"}));

  std::vector<std::string> many;
  for (int i = 0; i < 40; ++i) many.push_back("10.1.0." + std::to_string(i) + ":80");
  publishAddresses(entry, many);
  readAddresses(entry, &read);
  EXPECT_EQ(read.size(), kMaxNameAddresses) << "the list is bounded";
}

}  // namespace
}  // namespace poolgate
