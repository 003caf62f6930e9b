// Session ticket keys: every copy of the master's secret (every worker, after
// fork) derives the same key for the same hour; a ticket is accepted under the
// current and the previous hour's key, and no older one.
#include <gtest/gtest.h>

#include <cstring>

#include "proxy/tls_server.h"

namespace poolgate {
namespace {

constexpr uint64_t kHour = TicketKeys::kRotationSeconds;
constexpr uint64_t kStart = 1'800'000'000;  // some moment, in seconds

TEST(TicketKeys, CopiesDeriveTheSameKeys) {
  TicketKeys master;
  ASSERT_TRUE(master.generate());
  TicketKeys worker = master;  // what fork() gives each worker
  const TicketKeys::Key& a = master.current(kStart);
  const TicketKeys::Key& b = worker.current(kStart + 10);
  EXPECT_EQ(memcmp(&a, &b, sizeof a), 0);
}

TEST(TicketKeys, DifferentSecretsDifferentKeys) {
  TicketKeys one, two;
  ASSERT_TRUE(one.generate());
  ASSERT_TRUE(two.generate());
  EXPECT_NE(memcmp(one.current(kStart).name, two.current(kStart).name, 16), 0);
}

TEST(TicketKeys, RotatesHourlyAndKeepsThePreviousKey) {
  TicketKeys keys;
  ASSERT_TRUE(keys.generate());
  unsigned char name[16];
  memcpy(name, keys.current(kStart).name, sizeof name);
  bool previous = true;
  ASSERT_NE(keys.find(name, kStart, &previous), nullptr);
  EXPECT_FALSE(previous);

  // An hour later a new key issues tickets; the old one still opens them.
  EXPECT_NE(memcmp(keys.current(kStart + kHour).name, name, sizeof name), 0);
  ASSERT_NE(keys.find(name, kStart + kHour, &previous), nullptr);
  EXPECT_TRUE(previous);

  // Two hours later it is gone.
  EXPECT_EQ(keys.find(name, kStart + 2 * kHour, &previous), nullptr);

  // A worker that jumps over several hours (or starts late) derives the same.
  TicketKeys late = keys;
  EXPECT_EQ(memcmp(late.current(kStart + 5 * kHour).aes, keys.current(kStart + 5 * kHour).aes, 32), 0);
}

TEST(TicketKeys, UnknownNameIsNotFound) {
  TicketKeys keys;
  ASSERT_TRUE(keys.generate());
  unsigned char name[16] = {};
  bool previous = false;
  EXPECT_EQ(keys.find(name, kStart, &previous), nullptr);
}

}  // namespace
}  // namespace poolgate
