// Balancing: smooth weighted round robin, least_conn, random_two and the
// consistent hash ring, driven through UpstreamGroup::pick.
#include "upstream/balancer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/timer.h"
#include "pool/counters.h"
#include "upstream/upstream.h"

namespace poolgate {
namespace {

constexpr uint64_t kNow = 5'000'000;

ServerConfig serverAt(const std::string& text, uint32_t weight = 1) {
  std::string why;
  std::optional<HostPort> address = parseHostPort(text, &why);
  EXPECT_TRUE(address.has_value()) << text << ": " << why;
  ServerConfig server;
  if (address) server.address = *address;
  server.weight = weight;
  return server;
}

// "10.0.0.1:80", "10.0.0.2:80", ...
std::string addressOf(int n) { return "10.0.0." + std::to_string(n) + ":80"; }

// An upstream group with everything it needs kept alive alongside it.
class TestGroup {
 public:
  TestGroup(Balance balance, const std::vector<ServerConfig>& servers, std::string hash_key = "")
      : timers_(kNow) {
    config_.name = "test";
    config_.balance = balance;
    config_.hash_key = std::move(hash_key);
    config_.servers = servers;
    config_.health.max_fails = 1;
    config_.health.fail_timeout = 10.0;
    group_ = std::make_unique<UpstreamGroup>(config_, timers_);
    for (const ServerConfig& server : config_.servers) {
      SocketAddress address;
      EXPECT_TRUE(makeSocketAddress(server.address.host, server.address.port, &address)) << server.address.text;
      ServerStorage storage;
      storage.counters = &counters_.emplace_back();
      storage.health = &health_.emplace_back();
      group_->addServer(server.address.text, address, server.weight, storage);
    }
  }

  // Servers 1..count with the given weights (1 when not given).
  static std::vector<ServerConfig> servers(int count, const std::vector<uint32_t>& weights = {}) {
    std::vector<ServerConfig> list;
    for (int i = 0; i < count; ++i) {
      uint32_t weight = static_cast<size_t>(i) < weights.size() ? weights[i] : 1;
      list.push_back(serverAt(addressOf(i + 1), weight));
    }
    return list;
  }

  UpstreamGroup& operator*() { return *group_; }
  UpstreamGroup* operator->() { return group_.get(); }

  int pick(const TriedSet& tried = TriedSet{}, const PickContext& context = PickContext{}) {
    return group_->pick(tried, kNow, context);
  }
  int pickKey(std::string_view key, const TriedSet& tried = TriedSet{}) {
    PickContext context;
    context.hash_value = key;
    return pick(tried, context);
  }
  // The address of the server a key maps to ("" when none).
  std::string nameForKey(std::string_view key) {
    int index = pickKey(key);
    return index < 0 ? "" : group_->server(index).name();
  }
  // How often each server is picked in `picks` picks.
  std::vector<int> histogram(int picks, const TriedSet& tried = TriedSet{}) {
    std::vector<int> counts(group_->size(), 0);
    for (int i = 0; i < picks; ++i) {
      int index = pick(tried);
      EXPECT_GE(index, 0);
      if (index >= 0) ++counts[index];
    }
    return counts;
  }
  void markDown(size_t index) { group_->server(index).noteFailure(kNow, false); }
  void setActive(const std::vector<uint32_t>& active) {
    for (size_t i = 0; i < active.size(); ++i) group_->server(i).active_requests = active[i];
  }

 private:
  UpstreamConfig config_;
  TimerQueue timers_;
  std::deque<ServerCounters> counters_;
  std::deque<SharedHealth> health_;
  std::unique_ptr<UpstreamGroup> group_;
};

TriedSet triedOf(std::initializer_list<size_t> indexes) {
  TriedSet tried;
  for (size_t i : indexes) tried.add(i);
  return tried;
}

// Deterministic random keys ("user-<number>").
std::vector<std::string> randomKeys(size_t count) {
  std::mt19937_64 random(12345);
  std::vector<std::string> keys;
  keys.reserve(count);
  for (size_t i = 0; i < count; ++i) keys.push_back("user-" + std::to_string(random()));
  return keys;
}

// ---- round_robin -------------------------------------------------------------

TEST(BalancerRoundRobin, WeightsInterleaveSmoothly) {
  TestGroup group(Balance::kRoundRobin, TestGroup::servers(3, {5, 1, 1}));
  std::string sequence;
  for (int i = 0; i < 14; ++i) sequence += static_cast<char>('a' + group.pick());
  EXPECT_EQ(sequence, "aabacaaaabacaa");
}

TEST(BalancerRoundRobin, EqualWeightsRotate) {
  TestGroup group(Balance::kRoundRobin, TestGroup::servers(3));
  EXPECT_EQ(group.pick(), 0);
  EXPECT_EQ(group.pick(), 1);
  EXPECT_EQ(group.pick(), 2);
  EXPECT_EQ(group.pick(), 0);
}

TEST(BalancerRoundRobin, WeightsRespectedOverManyPicks) {
  TestGroup group(Balance::kRoundRobin, TestGroup::servers(3, {3, 2, 1}));
  EXPECT_EQ(group.histogram(600), (std::vector<int>{300, 200, 100}));
}

TEST(BalancerRoundRobin, TriedServersSkipped) {
  TestGroup group(Balance::kRoundRobin, TestGroup::servers(3));
  TriedSet tried = triedOf({1});
  std::vector<int> counts = group.histogram(100, tried);
  EXPECT_EQ(counts[1], 0);
  EXPECT_EQ(counts[0], 50);
  EXPECT_EQ(counts[2], 50);
  EXPECT_EQ(group.pick(triedOf({0, 1, 2})), -1);
}

TEST(BalancerRoundRobin, UnavailableServersSkippedUntilTheyRecover) {
  TestGroup group(Balance::kRoundRobin, TestGroup::servers(3));
  group.markDown(0);
  EXPECT_FALSE(group->server(0).available(kNow));
  std::vector<int> counts = group.histogram(100);
  EXPECT_EQ(counts[0], 0);
  EXPECT_EQ(counts[1] + counts[2], 100);
  // Back once fail_timeout (10 s) has passed.
  EXPECT_TRUE(group->server(0).available(kNow + 10'000));
  bool seen = false;
  for (int i = 0; i < 3; ++i) seen |= group->pick(TriedSet{}, kNow + 10'000) == 0;
  EXPECT_TRUE(seen);
}

TEST(BalancerRoundRobin, RetiredServersSkipped) {
  TestGroup group(Balance::kRoundRobin, TestGroup::servers(2));
  group->setInService(0, false);  // its address left the DNS answer
  EXPECT_FALSE(group->server(0).inService());
  EXPECT_EQ(group->inServiceCount(), 1u);
  EXPECT_EQ(group.histogram(10), (std::vector<int>{0, 10}));
  group->setInService(0, true);
  EXPECT_EQ(group.histogram(10), (std::vector<int>{5, 5}));
}

TEST(BalancerRoundRobin, AllDownGivesMinusOne) {
  TestGroup group(Balance::kRoundRobin, TestGroup::servers(2));
  group.markDown(0);
  group.markDown(1);
  EXPECT_EQ(group.pick(), -1);
}

// ---- least_conn --------------------------------------------------------------

TEST(BalancerLeastConn, PrefersFewestActive) {
  TestGroup group(Balance::kLeastConn, TestGroup::servers(3));
  group.setActive({3, 1, 2});
  for (int i = 0; i < 5; ++i) EXPECT_EQ(group.pick(), 1);
  group.setActive({0, 1, 2});
  EXPECT_EQ(group.pick(), 0);
}

TEST(BalancerLeastConn, ComparesActiveRelativeToWeight) {
  TestGroup group(Balance::kLeastConn, TestGroup::servers(2, {1, 3}));
  group.setActive({1, 2});  // 1/1 against 2/3
  EXPECT_EQ(group.pick(), 1);
  group.setActive({1, 4});  // 1/1 against 4/3
  EXPECT_EQ(group.pick(), 0);
}

TEST(BalancerLeastConn, TiesShareLoadByWeight) {
  TestGroup group(Balance::kLeastConn, TestGroup::servers(3));
  EXPECT_EQ(group.histogram(300), (std::vector<int>{100, 100, 100}));
  TestGroup weighted(Balance::kLeastConn, TestGroup::servers(2, {2, 1}));
  EXPECT_EQ(weighted.histogram(300), (std::vector<int>{200, 100}));
}

TEST(BalancerLeastConn, TieAmongLeastLoadedOnly) {
  TestGroup group(Balance::kLeastConn, TestGroup::servers(3));
  group.setActive({1, 5, 1});
  std::vector<int> counts = group.histogram(100);
  EXPECT_EQ(counts[1], 0);
  EXPECT_EQ(counts[0], 50);
  EXPECT_EQ(counts[2], 50);
}

TEST(BalancerLeastConn, ActiveRequestsFollowWeights) {
  // Requests that never finish: the active counts grow in proportion to weight.
  TestGroup group(Balance::kLeastConn, TestGroup::servers(2, {3, 1}));
  for (int i = 0; i < 400; ++i) ++group->server(group.pick()).active_requests;
  EXPECT_EQ(group->server(0).active_requests, 300u);
  EXPECT_EQ(group->server(1).active_requests, 100u);
}

TEST(BalancerLeastConn, SkipsTriedAndDown) {
  TestGroup group(Balance::kLeastConn, TestGroup::servers(3));
  group.setActive({0, 5, 9});
  EXPECT_EQ(group.pick(triedOf({0})), 1);
  group.markDown(1);
  EXPECT_EQ(group.pick(triedOf({0})), 2);
  EXPECT_EQ(group.pick(triedOf({0, 2})), -1);
}

// ---- random_two --------------------------------------------------------------

TEST(BalancerRandomTwo, EqualServersShareEvenly) {
  TestGroup group(Balance::kRandomTwo, TestGroup::servers(3));
  const int picks = 30'000;
  for (int count : group.histogram(picks)) {
    EXPECT_NEAR(count, picks / 3, picks / 3 * 0.05);
  }
}

TEST(BalancerRandomTwo, DrawsWeightedByWeight) {
  // Two servers are both drawn every time; with equal load the first draw
  // wins, and it is weighted 3:1.
  TestGroup group(Balance::kRandomTwo, TestGroup::servers(2, {3, 1}));
  const int picks = 40'000;
  std::vector<int> counts = group.histogram(picks);
  EXPECT_NEAR(counts[0], picks * 3 / 4, picks * 0.02);
}

TEST(BalancerRandomTwo, PrefersLessLoaded) {
  TestGroup pair(Balance::kRandomTwo, TestGroup::servers(2));
  pair.setActive({10, 0});
  EXPECT_EQ(pair.histogram(1000), (std::vector<int>{0, 1000}));

  // Server 0 wins whenever it is one of the two drawn: 2 times in 3.
  TestGroup group(Balance::kRandomTwo, TestGroup::servers(3));
  group.setActive({0, 5, 5});
  const int picks = 30'000;
  std::vector<int> counts = group.histogram(picks);
  EXPECT_NEAR(counts[0], picks * 2 / 3, picks * 0.03);
  EXPECT_NEAR(counts[1], counts[2], picks * 0.03);
}

TEST(BalancerRandomTwo, KeepsLoadBalanced) {
  // Requests that never finish: the active counts stay close together.
  TestGroup group(Balance::kRandomTwo, TestGroup::servers(5));
  for (int i = 0; i < 1000; ++i) ++group->server(group.pick()).active_requests;
  for (size_t i = 0; i < group->size(); ++i) {
    EXPECT_NEAR(group->server(i).active_requests, 200, 10) << "server " << i;
  }
}

TEST(BalancerRandomTwo, SkipsTriedAndDown) {
  TestGroup group(Balance::kRandomTwo, TestGroup::servers(3));
  group.markDown(2);
  EXPECT_EQ(group.histogram(200, triedOf({0})), (std::vector<int>{0, 200, 0}));
  EXPECT_EQ(group.pick(triedOf({0, 1})), -1);
}

// ---- hash --------------------------------------------------------------------

TEST(BalancerHash, SameKeySameServer) {
  TestGroup group(Balance::kHash, TestGroup::servers(5), "header:X-User");
  for (const std::string& key : randomKeys(200)) {
    int first = group.pickKey(key);
    ASSERT_GE(first, 0);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(group.pickKey(key), first);
  }
}

TEST(BalancerHash, KeysSpreadEvenly) {
  TestGroup group(Balance::kHash, TestGroup::servers(10), "header:X-User");
  std::vector<int> counts(10, 0);
  const std::vector<std::string> keys = randomKeys(100'000);
  for (const std::string& key : keys) ++counts[group.pickKey(key)];
  for (size_t i = 0; i < counts.size(); ++i) {
    EXPECT_NEAR(counts[i], 10'000, 2'500) << "server " << i;
  }
}

TEST(BalancerHash, WeightsGiveMoreKeys) {
  TestGroup group(Balance::kHash, TestGroup::servers(2, {3, 1}), "header:X-User");
  int on_heavy = 0;
  const std::vector<std::string> keys = randomKeys(40'000);
  for (const std::string& key : keys) on_heavy += group.pickKey(key) == 0;
  EXPECT_NEAR(on_heavy, 30'000, 2'000);
}

TEST(BalancerHash, RemovingOneServerMovesOnlyItsKeys) {
  TestGroup all(Balance::kHash, TestGroup::servers(10), "header:X-User");
  std::vector<ServerConfig> fewer = TestGroup::servers(10);
  const std::string removed = addressOf(5);
  fewer.erase(fewer.begin() + 4);
  TestGroup less(Balance::kHash, fewer, "header:X-User");

  const std::vector<std::string> keys = randomKeys(100'000);
  size_t moved = 0;
  for (const std::string& key : keys) {
    std::string before = all.nameForKey(key);
    std::string after = less.nameForKey(key);
    if (before == removed) {
      ++moved;
      EXPECT_NE(after, removed);
    } else {
      ASSERT_EQ(before, after) << key;
    }
  }
  // About 1/10 of the keys were on the removed server.
  EXPECT_NEAR(static_cast<double>(moved) / keys.size(), 0.10, 0.03);
}

TEST(BalancerHash, AddingOneServerMovesAboutOneNth) {
  TestGroup ten(Balance::kHash, TestGroup::servers(10), "header:X-User");
  TestGroup eleven(Balance::kHash, TestGroup::servers(11), "header:X-User");
  const std::string added = addressOf(11);

  const std::vector<std::string> keys = randomKeys(100'000);
  size_t moved = 0;
  for (const std::string& key : keys) {
    std::string before = ten.nameForKey(key);
    std::string after = eleven.nameForKey(key);
    if (before != after) {
      ++moved;
      ASSERT_EQ(after, added) << "a key moved between two old servers: " << key;
    }
  }
  EXPECT_NEAR(static_cast<double>(moved) / keys.size(), 1.0 / 11, 0.03);
}

TEST(BalancerHash, OrderOfServersDoesNotMatter) {
  std::vector<ServerConfig> reversed = TestGroup::servers(6);
  std::reverse(reversed.begin(), reversed.end());
  TestGroup forward(Balance::kHash, TestGroup::servers(6), "header:X-User");
  TestGroup backward(Balance::kHash, reversed, "header:X-User");
  for (const std::string& key : randomKeys(2'000)) {
    EXPECT_EQ(forward.nameForKey(key), backward.nameForKey(key));
  }
}

TEST(BalancerHash, TriedServerFallsToNextOnTheRing) {
  // Skipping a server on the ring must send its keys exactly where they would
  // go if that server were not configured at all.
  TestGroup group(Balance::kHash, TestGroup::servers(6), "header:X-User");
  for (const std::string& key : randomKeys(2'000)) {
    int first = group.pickKey(key);
    ASSERT_GE(first, 0);
    std::vector<ServerConfig> without = TestGroup::servers(6);
    without.erase(without.begin() + first);
    TestGroup smaller(Balance::kHash, without, "header:X-User");

    int next = group.pickKey(key, triedOf({static_cast<size_t>(first)}));
    ASSERT_GE(next, 0);
    EXPECT_NE(next, first);
    EXPECT_EQ(group->server(next).name(), smaller.nameForKey(key)) << key;
    // The same retry path every time.
    EXPECT_EQ(group.pickKey(key, triedOf({static_cast<size_t>(first)})), next);
  }
}

TEST(BalancerHash, DownServerFallsToNextAndAllTriedGivesMinusOne) {
  TestGroup group(Balance::kHash, TestGroup::servers(3), "header:X-User");
  const std::string key = "alice";
  int first = group.pickKey(key);
  int next = group.pickKey(key, triedOf({static_cast<size_t>(first)}));
  group.markDown(static_cast<size_t>(first));
  EXPECT_EQ(group.pickKey(key), next);
  EXPECT_EQ(group.pickKey(key, triedOf({0, 1, 2})), -1);
}

TEST(BalancerHash, HeaderKeyUsesHashValue) {
  TestGroup group(Balance::kHash, TestGroup::servers(8), "header:X-User");
  EXPECT_EQ(group->hashHeader(), "X-User");
  // The client IP plays no part.
  PickContext a{"192.0.2.1", "alice"};
  PickContext b{"192.0.2.2", "alice"};
  int chosen = group.pick(TriedSet{}, a);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(group.pick(TriedSet{}, b), chosen);
}

TEST(BalancerHash, IpKeyUsesClientIp) {
  TestGroup group(Balance::kHash, TestGroup::servers(8), "ip");
  EXPECT_EQ(group->hashHeader(), "");
  std::map<int, int> seen;
  for (int i = 0; i < 256; ++i) {
    std::string ip = "198.51.100." + std::to_string(i);
    PickContext context{ip, "ignored"};
    int chosen = group.pick(TriedSet{}, context);
    ASSERT_GE(chosen, 0);
    EXPECT_EQ(group.pick(TriedSet{}, PickContext{ip, "other"}), chosen);
    ++seen[chosen];
  }
  EXPECT_EQ(seen.size(), 8u);  // 256 addresses reach every server
}

TEST(BalancerHash, MissingKeyFallsBackToRoundRobin) {
  TestGroup group(Balance::kHash, TestGroup::servers(3), "header:X-User");
  EXPECT_EQ(group.histogram(300), (std::vector<int>{100, 100, 100}));
  // The two-argument overload has no context either.
  EXPECT_GE(group->pick(TriedSet{}, kNow), 0);
}

TEST(BalancerHash, HashHeaderOnlyForHashBalance) {
  TestGroup group(Balance::kRoundRobin, TestGroup::servers(2), "header:X-User");
  EXPECT_EQ(group->hashHeader(), "");
}

TEST(BalancerHash, RingHashIsStableAndSpreads) {
  EXPECT_EQ(ringHash("10.0.0.1:80#0"), ringHash("10.0.0.1:80#0"));
  EXPECT_NE(ringHash("10.0.0.1:80#0"), ringHash("10.0.0.1:80#1"));
  EXPECT_NE(ringHash(""), ringHash("a"));
}

}  // namespace
}  // namespace poolgate
