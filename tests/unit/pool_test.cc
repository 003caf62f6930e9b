// Pool: the reuse checklist, LIFO idle members, limits, timers, counters.
#include "pool/pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace poolgate {
namespace {

constexpr uint64_t kStart = 5'000'000;

// ---- reuseVerdict -----------------------------------------------------------

// Facts of an exchange that may be reused.
ReuseFacts goodFacts() {
  ReuseFacts facts;
  facts.response_complete = true;
  facts.length_delimited = true;
  facts.upstream_keep_alive = true;
  facts.request_sent = true;
  facts.requests_served = 1;
  facts.age_ms = 10;
  return facts;
}

TEST(ReuseVerdict, CleanExchangeIsReusable) {
  EXPECT_EQ(reuseVerdict(goodFacts(), PoolConfig{}), NoReuse::kReusable);
}

TEST(ReuseVerdict, ErrorRefuses) {
  ReuseFacts facts = goodFacts();
  facts.error = true;
  EXPECT_EQ(reuseVerdict(facts, PoolConfig{}), NoReuse::kError);
}

TEST(ReuseVerdict, IncompleteResponseRefuses) {
  ReuseFacts facts = goodFacts();
  facts.response_complete = false;
  EXPECT_EQ(reuseVerdict(facts, PoolConfig{}), NoReuse::kResponseNotDone);
}

TEST(ReuseVerdict, CloseDelimitedResponseRefuses) {
  ReuseFacts facts = goodFacts();
  facts.length_delimited = false;
  EXPECT_EQ(reuseVerdict(facts, PoolConfig{}), NoReuse::kResponseNotDone);
}

TEST(ReuseVerdict, UpstreamCloseRefuses) {
  ReuseFacts facts = goodFacts();
  facts.upstream_keep_alive = false;
  EXPECT_EQ(reuseVerdict(facts, PoolConfig{}), NoReuse::kUpstreamClose);
}

TEST(ReuseVerdict, UnsentRequestRefuses) {
  ReuseFacts facts = goodFacts();
  facts.request_sent = false;
  EXPECT_EQ(reuseVerdict(facts, PoolConfig{}), NoReuse::kRequestNotSent);
}

TEST(ReuseVerdict, UnreadBytesRefuse) {
  ReuseFacts facts = goodFacts();
  facts.unread_bytes = true;
  EXPECT_EQ(reuseVerdict(facts, PoolConfig{}), NoReuse::kUnreadBytes);
}

TEST(ReuseVerdict, ExitingWorkerRefuses) {
  ReuseFacts facts = goodFacts();
  facts.exiting = true;
  EXPECT_EQ(reuseVerdict(facts, PoolConfig{}), NoReuse::kExiting);
}

TEST(ReuseVerdict, MaxRequestsReachedRefuses) {
  PoolConfig config;
  config.max_requests = 3;
  ReuseFacts facts = goodFacts();
  facts.requests_served = 3;
  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kMaxRequests);
}

TEST(ReuseVerdict, UnderMaxRequestsIsReusable) {
  PoolConfig config;
  config.max_requests = 3;
  ReuseFacts facts = goodFacts();
  facts.requests_served = 2;
  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kReusable);
}

TEST(ReuseVerdict, ZeroMaxRequestsMeansUnlimited) {
  PoolConfig config;
  config.max_requests = 0;
  ReuseFacts facts = goodFacts();
  facts.requests_served = 1'000'000;
  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kReusable);
}

TEST(ReuseVerdict, MaxLifetimeReachedRefuses) {
  PoolConfig config;
  config.max_lifetime = 2.5;
  ReuseFacts facts = goodFacts();
  facts.age_ms = 2500;
  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kMaxLifetime);
}

TEST(ReuseVerdict, UnderMaxLifetimeIsReusable) {
  PoolConfig config;
  config.max_lifetime = 2.5;
  ReuseFacts facts = goodFacts();
  facts.age_ms = 2499;
  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kReusable);
}

TEST(ReuseVerdict, UpstreamKeepAliveMaxRefuses) {
  ReuseFacts facts = goodFacts();
  facts.upstream_max_reached = true;
  EXPECT_EQ(reuseVerdict(facts, PoolConfig{}), NoReuse::kUpstreamMax);
}

TEST(ReuseVerdict, ZeroMaxLifetimeMeansUnlimited) {
  PoolConfig config;
  config.max_lifetime = 0;
  ReuseFacts facts = goodFacts();
  facts.age_ms = 1'000'000'000;
  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kReusable);
}

// Everything wrong at once; fixing one fact at a time must reveal the reasons
// in the checklist's order.
TEST(ReuseVerdict, ReasonsFollowTheChecklistOrder) {
  PoolConfig config;
  config.max_requests = 1;
  config.max_lifetime = 1.0;
  ReuseFacts facts;
  facts.error = true;
  facts.response_complete = false;
  facts.length_delimited = false;
  facts.upstream_keep_alive = false;
  facts.request_sent = false;
  facts.unread_bytes = true;
  facts.exiting = true;
  facts.requests_served = 1;
  facts.age_ms = 1000;

  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kError);
  facts.error = false;
  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kResponseNotDone);
  facts.response_complete = true;
  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kResponseNotDone);
  facts.length_delimited = true;
  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kUpstreamClose);
  facts.upstream_keep_alive = true;
  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kRequestNotSent);
  facts.request_sent = true;
  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kUnreadBytes);
  facts.unread_bytes = false;
  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kExiting);
  facts.exiting = false;
  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kMaxRequests);
  facts.requests_served = 0;
  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kMaxLifetime);
  facts.age_ms = 0;
  EXPECT_EQ(reuseVerdict(facts, config), NoReuse::kReusable);
}

// ---- Pool -----------------------------------------------------------------

class FakeMember : public PoolMember {
 public:
  FakeMember(Pool& pool, uint64_t created_ms, int id) : PoolMember(created_ms), pool_(pool), id(id) {}

  bool probeIdle(uint64_t) noexcept override {
    ++probes;
    return probe_ok;
  }
  void evictFromPool() noexcept override {
    ++evictions;
    pool_.noteClosed(*this);
  }
  int detachSocket(HandOverNote& note) noexcept override {
    note.created_ms = createdMs();
    note.requests_served = requestsServed();
    detached = true;
    return id;  // stands for the descriptor
  }

  Pool& pool_;
  int id;
  bool probe_ok = true;
  int probes = 0;
  int evictions = 0;
  bool detached = false;
};

class PoolTest : public ::testing::Test {
 protected:
  PoolTest() {
    config.max_idle = 8;
    config.idle_timeout = 0;  // tests that want idle expiry set it
  }

  // A new connection, established and carrying its first request.
  FakeMember& open(int id) {
    pool.noteConnecting();
    pool.noteConnected();
    members.push_back(std::make_unique<FakeMember>(pool, timers.now(), id));
    return *members.back();
  }

  uint64_t get(const std::atomic<uint64_t>& counter) const { return ServerCounters::get(counter); }
  uint64_t refused(NoReuse reason) const {
    return get(counters.no_reuse_total[static_cast<int>(reason)]);
  }
  void expectConsistent() const {
    EXPECT_EQ((get(counters.idle) + get(counters.active)), get(counters.idle) + get(counters.active));
    EXPECT_EQ(get(counters.idle), pool.idleCount());
  }
  int checkoutId() {
    PoolMember* member = pool.checkout();
    return member == nullptr ? -1 : static_cast<FakeMember*>(member)->id;
  }

  TimerQueue timers{kStart};
  PoolConfig config;
  ServerCounters counters;
  // Declared before the pool: the pool's destructor evicts idle members.
  std::vector<std::unique_ptr<FakeMember>> members;
  Pool pool{timers, config, counters};
};

TEST_F(PoolTest, EmptyPoolChecksOutNothing) {
  EXPECT_EQ(pool.checkout(), nullptr);
  EXPECT_EQ(pool.idleCount(), 0u);
}

TEST_F(PoolTest, CheckinKeepsAReusableConnection) {
  FakeMember& a = open(1);
  EXPECT_EQ(pool.checkin(a, NoReuse::kReusable), Checkin::kPooled);
  EXPECT_TRUE(a.isIdle());
  EXPECT_EQ(pool.idleCount(), 1u);
  EXPECT_EQ(get(counters.idle), 1u);
  EXPECT_EQ(get(counters.active), 0u);
}

TEST_F(PoolTest, CheckoutIsLastInFirstOut) {
  FakeMember& a = open(1);
  FakeMember& b = open(2);
  FakeMember& c = open(3);
  pool.checkin(a, NoReuse::kReusable);
  pool.checkin(b, NoReuse::kReusable);
  pool.checkin(c, NoReuse::kReusable);

  EXPECT_EQ(checkoutId(), 3);
  EXPECT_EQ(checkoutId(), 2);
  EXPECT_EQ(checkoutId(), 1);
  EXPECT_EQ(checkoutId(), -1);
}

TEST_F(PoolTest, CheckedOutMemberIsActiveAndProbed) {
  FakeMember& a = open(1);
  pool.checkin(a, NoReuse::kReusable);
  EXPECT_EQ(pool.checkout(), &a);
  EXPECT_FALSE(a.isIdle());
  EXPECT_EQ(a.probes, 1);
  EXPECT_EQ(get(counters.active), 1u);
  EXPECT_EQ(get(counters.idle), 0u);
}

// Demand-aware pooling: a release past max_idle is kept (the next request
// needs it a moment later); the coldest surplus goes once idle trim_after.
TEST_F(PoolTest, MaxIdleKeepsTheSurplusUntilItIdlesTrimAfter) {
  config.max_idle = 2;
  config.trim_after = 1.0;
  FakeMember& a = open(1);
  FakeMember& b = open(2);
  FakeMember& c = open(3);
  EXPECT_EQ(pool.checkin(a, NoReuse::kReusable), Checkin::kPooled);
  timers.setNow(kStart + 100);
  EXPECT_EQ(pool.checkin(b, NoReuse::kReusable), Checkin::kPooled);
  timers.setNow(kStart + 200);
  EXPECT_EQ(pool.checkin(c, NoReuse::kReusable), Checkin::kPooled);
  EXPECT_EQ(pool.idleCount(), 3u);
  EXPECT_EQ(refused(NoReuse::kPoolFull), 0u);

  timers.setNow(kStart + 999);
  timers.runExpired();
  EXPECT_EQ(pool.idleCount(), 3u);  // not idle for a second yet
  timers.setNow(kStart + 1000);
  timers.runExpired();
  EXPECT_EQ(a.evictions, 1);  // the coldest
  EXPECT_EQ(b.evictions + c.evictions, 0);
  EXPECT_EQ(pool.idleCount(), 2u);
  EXPECT_EQ(get(counters.trimmed_total), 1u);
  EXPECT_EQ(get(counters.closed_idle_total), 0u);
  expectConsistent();

  // At max_idle the rest stays (idle_timeout is off here).
  timers.setNow(kStart + 100'000);
  timers.runExpired();
  EXPECT_EQ(pool.idleCount(), 2u);
}

// Under steady load the surplus cycles (LIFO takes the warmest), so only what
// really sits idle is trimmed.
TEST_F(PoolTest, SurplusInUseIsNotTrimmed) {
  config.max_idle = 1;
  config.trim_after = 1.0;
  FakeMember& a = open(1);
  FakeMember& b = open(2);
  pool.checkin(a, NoReuse::kReusable);
  pool.checkin(b, NoReuse::kReusable);
  for (uint64_t t = 500; t <= 5000; t += 500) {  // both taken and given back twice a second
    timers.setNow(kStart + t);
    timers.runExpired();
    PoolMember* first = pool.checkout();
    PoolMember* second = pool.checkout();
    ASSERT_NE(first, nullptr);
    ASSERT_NE(second, nullptr);
    pool.checkin(*second, NoReuse::kReusable);
    pool.checkin(*first, NoReuse::kReusable);
  }
  EXPECT_EQ(get(counters.trimmed_total), 0u);
  EXPECT_EQ(pool.idleCount(), 2u);
  // Load stops: back to max_idle after trim_after.
  timers.setNow(kStart + 6000);
  timers.runExpired();
  EXPECT_EQ(pool.idleCount(), 1u);
  EXPECT_EQ(get(counters.trimmed_total), 1u);
}

TEST_F(PoolTest, IdleTimeoutStillAppliesBelowMaxIdle) {
  config.max_idle = 4;
  config.trim_after = 1.0;
  config.idle_timeout = 3.0;
  FakeMember& a = open(1);
  pool.checkin(a, NoReuse::kReusable);
  timers.setNow(kStart + 2999);
  timers.runExpired();
  EXPECT_EQ(a.evictions, 0);
  timers.setNow(kStart + 3000);
  timers.runExpired();
  EXPECT_EQ(a.evictions, 1);
  EXPECT_EQ(get(counters.closed_idle_total), 1u);
  EXPECT_EQ(get(counters.trimmed_total), 0u);
}

// demand: the peak of active connections over the last one or two windows.
TEST_F(PoolTest, DemandIsThePeakOfActiveOverRecentWindows) {
  std::vector<FakeMember*> open_now;
  for (int i = 0; i < 5; ++i) open_now.push_back(&open(i));
  EXPECT_EQ(pool.demand(), 5u);
  for (FakeMember* m : open_now) pool.checkin(*m, NoReuse::kReusable);
  EXPECT_EQ(pool.demand(), 5u);  // a peak is remembered
  timers.setNow(kStart + kDemandWindowMs + 1);
  ASSERT_NE(pool.checkout(), nullptr);  // a new window: 1 active now
  EXPECT_EQ(pool.demand(), 5u);  // the previous window still counts
  timers.setNow(kStart + 2 * kDemandWindowMs + 2);
  EXPECT_EQ(pool.demand(), 1u);  // only the current window's peak
  timers.setNow(kStart + 3 * kDemandWindowMs + 2);
  EXPECT_EQ(pool.demand(), 0u);  // two windows without a request
}

TEST_F(PoolTest, ZeroMaxIdleRefusesWithPoolFull) {
  config.max_idle = 0;
  FakeMember& a = open(1);
  EXPECT_EQ(pool.checkin(a, NoReuse::kReusable), Checkin::kRefused);
  EXPECT_FALSE(a.isIdle());
  EXPECT_EQ(refused(NoReuse::kPoolFull), 1u);
  pool.noteClosed(a);  // the caller closes what the pool refused
  expectConsistent();
  EXPECT_EQ((get(counters.idle) + get(counters.active)), 0u);
}

TEST_F(PoolTest, ZeroMaxIdleKeepsNothing) {
  config.max_idle = 0;
  FakeMember& a = open(1);
  EXPECT_EQ(pool.checkin(a, NoReuse::kReusable), Checkin::kRefused);
  EXPECT_EQ(refused(NoReuse::kPoolFull), 1u);
}

TEST_F(PoolTest, NonReusableVerdictIsRefusedAndCounted) {
  FakeMember& a = open(1);
  EXPECT_EQ(pool.checkin(a, NoReuse::kUpstreamClose), Checkin::kRefused);
  EXPECT_EQ(refused(NoReuse::kUpstreamClose), 1u);
  EXPECT_EQ(refused(NoReuse::kPoolFull), 0u);
  EXPECT_EQ(pool.idleCount(), 0u);
  EXPECT_EQ(get(counters.active), 1u);  // still the caller's until noteClosed()
}

TEST_F(PoolTest, FullPoolStillCountsTheOriginalReason) {
  config.max_idle = 0;
  FakeMember& a = open(1);
  EXPECT_EQ(pool.checkin(a, NoReuse::kError), Checkin::kRefused);
  EXPECT_EQ(refused(NoReuse::kError), 1u);
  EXPECT_EQ(refused(NoReuse::kPoolFull), 0u);
}

TEST_F(PoolTest, FailedProbeEvictsAndMovesOnToTheNextIdle) {
  FakeMember& a = open(1);
  FakeMember& b = open(2);
  pool.checkin(a, NoReuse::kReusable);
  pool.checkin(b, NoReuse::kReusable);
  b.probe_ok = false;  // the warmest one went stale (EOF while idle)

  EXPECT_EQ(pool.checkout(), &a);
  EXPECT_EQ(b.evictions, 1);
  EXPECT_EQ(a.evictions, 0);
  EXPECT_EQ(get(counters.closed_idle_total), 1u);
  EXPECT_EQ((get(counters.idle) + get(counters.active)), 1u);
  expectConsistent();
}

TEST_F(PoolTest, AllProbesFailingChecksOutNothing) {
  FakeMember& a = open(1);
  FakeMember& b = open(2);
  pool.checkin(a, NoReuse::kReusable);
  pool.checkin(b, NoReuse::kReusable);
  a.probe_ok = b.probe_ok = false;

  EXPECT_EQ(pool.checkout(), nullptr);
  EXPECT_EQ(a.evictions, 1);
  EXPECT_EQ(b.evictions, 1);
  EXPECT_EQ(pool.idleCount(), 0u);
  EXPECT_EQ((get(counters.idle) + get(counters.active)), 0u);
  EXPECT_EQ(get(counters.closed_idle_total), 2u);
  expectConsistent();
}

TEST_F(PoolTest, IdleTimeoutEvictsOnlyExpiredMembers) {
  config.idle_timeout = 1.0;
  FakeMember& a = open(1);
  pool.checkin(a, NoReuse::kReusable);  // idle since kStart
  timers.setNow(kStart + 500);
  FakeMember& b = open(2);
  pool.checkin(b, NoReuse::kReusable);  // idle since kStart + 500

  timers.setNow(kStart + 999);
  timers.runExpired();
  EXPECT_EQ(a.evictions, 0);

  timers.setNow(kStart + 1000);
  timers.runExpired();
  EXPECT_EQ(a.evictions, 1);
  EXPECT_EQ(b.evictions, 0);
  EXPECT_EQ(pool.idleCount(), 1u);

  timers.setNow(kStart + 1500);
  timers.runExpired();
  EXPECT_EQ(b.evictions, 1);
  EXPECT_EQ(pool.idleCount(), 0u);
  EXPECT_EQ(get(counters.closed_idle_total), 2u);
  EXPECT_EQ((get(counters.idle) + get(counters.active)), 0u);
  expectConsistent();
}

TEST_F(PoolTest, IdleTimerStopsWhenThePoolEmpties) {
  config.idle_timeout = 1.0;
  FakeMember& a = open(1);
  pool.checkin(a, NoReuse::kReusable);
  timers.setNow(kStart + 1000);
  timers.runExpired();
  EXPECT_EQ(timers.size(), 0u);
  EXPECT_EQ(timers.msUntilNext(), -1);
}

TEST_F(PoolTest, CheckedOutMemberIsNotEvictedByTheIdleTimer) {
  config.idle_timeout = 1.0;
  FakeMember& a = open(1);
  pool.checkin(a, NoReuse::kReusable);
  ASSERT_EQ(pool.checkout(), &a);

  timers.setNow(kStart + 5000);
  timers.runExpired();
  EXPECT_EQ(a.evictions, 0);
  EXPECT_EQ(get(counters.active), 1u);
}

TEST_F(PoolTest, IdleTimeoutRestartsOnEachCheckin) {
  config.idle_timeout = 1.0;
  FakeMember& a = open(1);
  pool.checkin(a, NoReuse::kReusable);
  timers.setNow(kStart + 900);
  ASSERT_EQ(pool.checkout(), &a);
  pool.checkin(a, NoReuse::kReusable);  // idle since kStart + 900

  timers.setNow(kStart + 1000);
  timers.runExpired();
  EXPECT_EQ(a.evictions, 0);

  timers.setNow(kStart + 1900);
  timers.runExpired();
  EXPECT_EQ(a.evictions, 1);
}

TEST_F(PoolTest, ZeroIdleTimeoutNeverExpires) {
  config.idle_timeout = 0;
  FakeMember& a = open(1);
  pool.checkin(a, NoReuse::kReusable);
  EXPECT_EQ(timers.size(), 0u);
  timers.setNow(kStart + 1'000'000'000);
  timers.runExpired();
  EXPECT_EQ(a.evictions, 0);
  EXPECT_EQ(pool.idleCount(), 1u);
}

TEST_F(PoolTest, MaxLifetimeEvictsAtCheckoutWithoutProbing) {
  config.max_lifetime = 10.0;
  FakeMember& a = open(1);  // created at kStart
  pool.checkin(a, NoReuse::kReusable);
  timers.setNow(kStart + 10'000);

  EXPECT_EQ(pool.checkout(), nullptr);
  EXPECT_EQ(a.evictions, 1);
  EXPECT_EQ(a.probes, 0);
  EXPECT_EQ((get(counters.idle) + get(counters.active)), 0u);
  expectConsistent();
}

TEST_F(PoolTest, MaxLifetimeSkipsOldMemberForAYoungerOne) {
  config.max_lifetime = 10.0;
  FakeMember& old_member = open(1);  // created at kStart
  timers.setNow(kStart + 5000);
  FakeMember& young = open(2);
  pool.checkin(young, NoReuse::kReusable);
  pool.checkin(old_member, NoReuse::kReusable);  // the most recent: checked out first
  timers.setNow(kStart + 10'000);

  EXPECT_EQ(pool.checkout(), &young);
  EXPECT_EQ(old_member.evictions, 1);
}

TEST_F(PoolTest, UnderMaxLifetimeChecksOut) {
  config.max_lifetime = 10.0;
  FakeMember& a = open(1);
  pool.checkin(a, NoReuse::kReusable);
  timers.setNow(kStart + 9'999);
  EXPECT_EQ(pool.checkout(), &a);
}

TEST_F(PoolTest, IdleMemberClosedByItsOwnerLeavesThePool) {
  FakeMember& a = open(1);
  FakeMember& b = open(2);
  pool.checkin(a, NoReuse::kReusable);
  pool.checkin(b, NoReuse::kReusable);
  pool.noteClosed(b);  // e.g. the upstream closed an idle socket
  EXPECT_EQ(pool.idleCount(), 1u);
  EXPECT_EQ((get(counters.idle) + get(counters.active)), 1u);
  expectConsistent();
  EXPECT_EQ(checkoutId(), 1);
  EXPECT_EQ(checkoutId(), -1);
}

TEST_F(PoolTest, CloseIdleEvictsEveryIdleMember) {
  FakeMember& a = open(1);
  FakeMember& b = open(2);
  FakeMember& c = open(3);
  pool.checkin(a, NoReuse::kReusable);
  pool.checkin(b, NoReuse::kReusable);
  // c stays active
  pool.closeIdle();
  EXPECT_EQ(a.evictions, 1);
  EXPECT_EQ(b.evictions, 1);
  EXPECT_EQ(c.evictions, 0);
  EXPECT_EQ(pool.idleCount(), 0u);
  EXPECT_EQ((get(counters.idle) + get(counters.active)), 1u);
  expectConsistent();
}

TEST(PoolLifetime, DestructorEvictsIdleMembers) {
  TimerQueue timers(kStart);
  PoolConfig config;
  ServerCounters counters;
  std::unique_ptr<FakeMember> member;
  {
    Pool pool(timers, config, counters);
    pool.noteConnecting();
    pool.noteConnected();
    member = std::make_unique<FakeMember>(pool, kStart, 1);
    pool.checkin(*member, NoReuse::kReusable);
  }
  EXPECT_EQ(member->evictions, 1);
  EXPECT_EQ((ServerCounters::get(counters.idle) + ServerCounters::get(counters.active)), 0u);
  EXPECT_EQ(ServerCounters::get(counters.idle), 0u);
  EXPECT_EQ(timers.size(), 0u);
}

// A scripted life of three connections; after every step the counters must
// add up and match the script.
TEST_F(PoolTest, CountersStayConsistentThroughAScriptedSequence) {
  auto expect = [&](uint64_t open_count, uint64_t idle, uint64_t active, uint64_t opened,
                    uint64_t reused, uint64_t closed_idle) {
    EXPECT_EQ((get(counters.idle) + get(counters.active)), open_count);
    EXPECT_EQ(get(counters.idle), idle);
    EXPECT_EQ(get(counters.active), active);
    EXPECT_EQ(get(counters.opened_total), opened);
    EXPECT_EQ(get(counters.reused_total), reused);
    EXPECT_EQ(get(counters.closed_idle_total), closed_idle);
    expectConsistent();
  };

  // A connect in flight counts as open and active, not yet opened.
  pool.noteConnecting();
  expect(1, 0, 1, 0, 0, 0);
  pool.noteConnected();
  members.push_back(std::make_unique<FakeMember>(pool, timers.now(), 1));
  FakeMember& a = *members.back();
  expect(1, 0, 1, 1, 0, 0);

  // Request done: back to the pool.
  ASSERT_EQ(pool.checkin(a, NoReuse::kReusable), Checkin::kPooled);
  expect(1, 1, 0, 1, 0, 0);

  // Next request reuses it.
  ASSERT_EQ(pool.checkout(), &a);
  pool.noteReused();
  expect(1, 0, 1, 1, 1, 0);

  // A second request meanwhile needs a new connection.
  FakeMember& b = open(2);
  expect(2, 0, 2, 2, 1, 0);

  // Both finish; b is pooled, a said Connection: close.
  ASSERT_EQ(pool.checkin(b, NoReuse::kReusable), Checkin::kPooled);
  ASSERT_EQ(pool.checkin(a, NoReuse::kUpstreamClose), Checkin::kRefused);
  pool.noteClosed(a);
  expect(1, 1, 0, 2, 1, 0);

  // b goes stale while idle; the next checkout evicts it and finds nothing.
  b.probe_ok = false;
  ASSERT_EQ(pool.checkout(), nullptr);
  expect(0, 0, 0, 2, 1, 1);

  // A third connection is opened, pooled, and times out idle.
  config.idle_timeout = 2.0;
  FakeMember& c = open(3);
  ASSERT_EQ(pool.checkin(c, NoReuse::kReusable), Checkin::kPooled);
  expect(1, 1, 0, 3, 1, 1);
  timers.setNow(timers.now() + 2000);
  timers.runExpired();
  expect(0, 0, 0, 3, 1, 2);
  EXPECT_EQ(c.evictions, 1);
}

}  // namespace
}  // namespace poolgate

namespace poolgate {
namespace {

// max_conns across workers: the counts other workers share in memory are
// played here by two atomics. A worker holding more than its share of the
// waiting requests gives connections up, but at most one per 50 ms, so that
// small swings of the queues do not close and reopen a connection each time.
class SharedPoolTest : public ::testing::Test {
 protected:
  struct Waiter : PoolWaiter {
    void onPoolAvailable() noexcept override { ++woken; }
    void onQueueTimeout() noexcept override { ++timed_out; }
    int woken = 0;
    int timed_out = 0;
  };
  static PoolConfig sharedConfig() {  // before the pool is built: it reads max_conns then
    PoolConfig config;
    config.max_idle = 8;
    config.max_conns = 2;
    config.idle_timeout = 0;
    return config;
  }
  FakeMember& open(int id) {
    EXPECT_TRUE(pool.reserve());
    pool.noteConnecting();
    pool.noteConnected();
    members.push_back(std::make_unique<FakeMember>(pool, timers.now(), id));
    return *members.back();
  }
  uint64_t yielded() const {
    return ServerCounters::get(counters.no_reuse_total[static_cast<int>(NoReuse::kYielded)]);
  }

  TimerQueue timers{kStart};
  PoolConfig config = sharedConfig();
  ServerCounters counters;
  std::atomic<int32_t> conns{0};
  std::atomic<int32_t> waiters{0};
  std::vector<std::unique_ptr<FakeMember>> members;
  Pool pool{timers, config, counters, PoolShared{&conns, &waiters}};
};

TEST_F(SharedPoolTest, OverItsShareAWorkerYieldsAtMostOncePerSpacing) {
  FakeMember& a = open(1);
  FakeMember& b = open(2);
  EXPECT_TRUE(pool.atCap());
  Waiter mine;
  pool.enqueue(mine);           // 1 of ours waits...
  waiters.fetch_add(3);         // ...and 3 of other workers': our share is 2 x 1/4
  EXPECT_EQ(pool.checkin(a, NoReuse::kReusable), Checkin::kRefused);  // over the share: yielded
  EXPECT_EQ(yielded(), 1u);
  pool.noteClosed(a);
  timers.setNow(kStart + 40);   // nobody else took the place: ours again
  FakeMember& c = open(3);
  timers.setNow(kStart + 49);
  EXPECT_EQ(pool.checkin(c, NoReuse::kReusable), Checkin::kPooled);  // too soon after the last yield: kept
  EXPECT_EQ(yielded(), 1u);
  ASSERT_NE(pool.checkout(), nullptr);
  timers.setNow(kStart + 50);
  EXPECT_EQ(pool.checkin(b, NoReuse::kReusable), Checkin::kRefused);  // the spacing has passed
  EXPECT_EQ(yielded(), 2u);
  pool.noteClosed(b);
  pool.dequeue(mine);
}

// The place a worker gives up goes to the others: its own queue may not
// take it straight back while they wait (for 40 ms: two of their looks).
TEST_F(SharedPoolTest, AYieldedPlaceIsLeftToTheOtherWorkers) {
  FakeMember& a = open(1);
  open(2);
  Waiter mine;
  pool.enqueue(mine);
  waiters.fetch_add(3);
  ASSERT_EQ(pool.checkin(a, NoReuse::kReusable), Checkin::kRefused);  // yielded
  pool.noteClosed(a);
  EXPECT_FALSE(pool.atCap());
  EXPECT_FALSE(pool.reserve()) << "our queue took back the place it gave up";
  timers.setNow(kStart + 39);
  EXPECT_FALSE(pool.reserve());
  timers.setNow(kStart + 40);
  EXPECT_TRUE(pool.reserve());  // nobody else took it: ours again
  pool.unreserve();
  pool.dequeue(mine);
  waiters.fetch_sub(3);
}

// queue_timeout (5 s here): one timer for the whole queue, not one per waiter, tells each
// waiter when its own deadline comes, in order; a waiter served before its deadline is
// not told, and one put back at the front keeps its first deadline.
TEST_F(SharedPoolTest, WaitersAreToldAtTheirQueueTimeoutByOneTimer) {
  open(1);
  open(2);
  Waiter first, second, served, put_back;
  pool.enqueue(first);
  const size_t timers_with_one = timers.size();
  timers.setNow(kStart + 1000);
  pool.enqueue(second);
  pool.enqueue(served);
  pool.enqueue(put_back);
  EXPECT_EQ(timers.size(), timers_with_one) << "a timer per waiter";
  pool.dequeue(served);  // it got a connection
  pool.dequeue(put_back);
  timers.setNow(kStart + 3000);
  pool.enqueue(put_back, /*at_front=*/true);  // lost its turn: keeps its place and its deadline

  timers.setNow(kStart + 4999);
  timers.runExpired();
  EXPECT_EQ(first.timed_out, 0);
  timers.setNow(kStart + 5000);
  timers.runExpired();
  EXPECT_EQ(first.timed_out, 1);
  EXPECT_EQ(second.timed_out, 0);
  EXPECT_EQ(ServerCounters::get(counters.queue_timeouts_total), 1u);
  EXPECT_EQ(ServerCounters::get(counters.queued), 3u - 1u) << "the timed-out waiter is still queued";

  timers.setNow(kStart + 6000);
  timers.runExpired();
  EXPECT_EQ(second.timed_out, 1);
  EXPECT_EQ(put_back.timed_out, 1) << "put back at the front, it keeps its first deadline (1000 + 5000)";
  EXPECT_EQ(served.timed_out, 0);
  EXPECT_EQ(ServerCounters::get(counters.queue_timeouts_total), 3u);
  EXPECT_EQ(ServerCounters::get(counters.queued), 0u);
  EXPECT_EQ(waiters.load(), 0);
}

TEST_F(SharedPoolTest, WithinItsShareAWorkerKeepsItsConnections) {
  FakeMember& a = open(1);
  Waiter one, two;
  pool.enqueue(one);
  pool.enqueue(two);
  waiters.fetch_add(2);  // half of the waiting requests are ours: a share of 1 of 2
  EXPECT_EQ(pool.checkin(a, NoReuse::kReusable), Checkin::kPooled);
  EXPECT_EQ(yielded(), 0u);
  pool.dequeue(one);
  pool.dequeue(two);
}

}  // namespace
}  // namespace poolgate

namespace poolgate {
namespace {

// Hand-over between workers (pool/handover.h): two pools play two workers'
// pools of the same server, sharing its count, its waiters and their tickets
// as the shared segment would; the courier delivers straight to the other
// pool, as the master would after a turn of the loops.
class HandOverTest : public ::testing::Test {
 protected:
  struct Waiter : PoolWaiter {
    explicit Waiter(Pool& pool) : pool(pool) {}
    void onPoolAvailable() noexcept override {  // as a request does: reuse, else open, else wait on
      got = pool.checkout();
      if (got == nullptr) reserved = pool.reserve();
      if (got == nullptr && !reserved) pool.enqueue(*this, /*at_front=*/true);
    }
    void onQueueTimeout() noexcept override { timed_out = true; }
    Pool& pool;
    bool timed_out = false;
    PoolMember* got = nullptr;
    bool reserved = false;
  };
  struct Courier : PoolCourier {
    bool send(int fd, const HandOverNote& note) noexcept override {
      sent.push_back({fd, note});
      return works;
    }
    std::vector<std::pair<int, HandOverNote>> sent;
    bool works = true;
  };
  static PoolConfig sharedConfig() {
    PoolConfig config;
    config.max_idle = 8;
    config.max_conns = 2;
    config.idle_timeout = 0;
    return config;
  }
  PoolShared shared(uint32_t slot) {
    PoolShared s;
    s.conns = &conns;
    s.waiters = &waiters;
    s.tickets = &tickets;
    s.slot = slot;
    s.server = 7;
    s.courier = &courier;
    return s;
  }
  FakeMember& open(Pool& pool, int id) {
    EXPECT_TRUE(pool.reserve());
    pool.noteConnecting();
    pool.noteConnected();
    members.push_back(std::make_unique<FakeMember>(pool, timers.now(), id));
    return *members.back();
  }
  // The master's part: the last socket sent arrives in `to`.
  FakeMember& deliver(Pool& to) {
    const auto& [fd, note] = courier.sent.back();
    members.push_back(std::make_unique<FakeMember>(to, note.created_ms, fd));
    to.adopt(*members.back());
    return *members.back();
  }
  static uint64_t get(const std::atomic<uint64_t>& c) { return ServerCounters::get(c); }
  static uint64_t open(const ServerCounters& c) { return get(c.idle) + get(c.active); }

  TimerQueue timers{kStart};
  PoolConfig config = sharedConfig();
  std::atomic<int32_t> conns{0};
  std::atomic<int32_t> waiters{0};
  WaiterTickets tickets;
  Courier courier;
  ServerCounters counters_a, counters_b;
  std::vector<std::unique_ptr<FakeMember>> members;
  Pool a{timers, config, counters_a, shared(0)};
  Pool b{timers, config, counters_b, shared(1)};
};

TEST_F(HandOverTest, AReleaseGoesToTheOlderRequestOfAnotherWorker) {
  FakeMember& one = open(a, 1);
  open(a, 2);
  Waiter there(b);
  b.enqueue(there);  // at the cap: B's request waits
  EXPECT_FALSE(b.reserve());

  EXPECT_EQ(a.checkin(one, NoReuse::kReusable), Checkin::kHandedOver);
  EXPECT_TRUE(one.detached);
  ASSERT_EQ(courier.sent.size(), 1u);
  EXPECT_EQ(courier.sent[0].first, 1);  // the member's socket
  EXPECT_EQ(courier.sent[0].second.server, 7);
  EXPECT_EQ(courier.sent[0].second.target, 1u);
  EXPECT_EQ(get(counters_a.handed_total), 1u);
  EXPECT_EQ(open(counters_a), 1u);  // counted nowhere while in flight...
  EXPECT_EQ(conns.load(), 2);       // ...but its place under max_conns travels with it

  FakeMember& arrived = deliver(b);
  EXPECT_EQ(get(counters_b.received_total), 1u);
  EXPECT_EQ(get(counters_b.idle), 1u);
  timers.runExpired();  // the next turn of B's loop
  EXPECT_EQ(there.got, &arrived);
  EXPECT_EQ(get(counters_b.active), 1u);
  EXPECT_EQ(conns.load(), 2);
  EXPECT_EQ(waiters.load(), 0);
}

TEST_F(HandOverTest, WaitersAreServedInOrderOfArrivalAcrossWorkers) {
  FakeMember& one = open(a, 1);
  FakeMember& two = open(a, 2);
  Waiter first(b), second(a), third(b);
  b.enqueue(first);
  a.enqueue(second);
  b.enqueue(third);

  // B's request came first: A's release goes there, though A has one waiting.
  EXPECT_EQ(a.checkin(one, NoReuse::kReusable), Checkin::kHandedOver);
  deliver(b);
  timers.runExpired();
  EXPECT_NE(first.got, nullptr);
  // Now A's own request is the oldest: the next release stays.
  EXPECT_EQ(a.checkin(two, NoReuse::kReusable), Checkin::kPooled);
  EXPECT_EQ(get(counters_a.direct_total), 1u);
  timers.runExpired();
  EXPECT_EQ(second.got, &two);
  EXPECT_EQ(third.got, nullptr);
  EXPECT_EQ(courier.sent.size(), 1u);
  b.dequeue(third);
}

TEST_F(HandOverTest, AClaimedRequestIsNotSentASecondConnection) {
  FakeMember& one = open(a, 1);
  FakeMember& two = open(a, 2);
  Waiter there(b);
  b.enqueue(there);
  EXPECT_EQ(a.checkin(one, NoReuse::kReusable), Checkin::kHandedOver);
  // Before B has taken it, a second release finds B's request already claimed.
  EXPECT_EQ(a.checkin(two, NoReuse::kReusable), Checkin::kPooled);
  EXPECT_EQ(courier.sent.size(), 1u);
  deliver(b);
  timers.runExpired();
  EXPECT_NE(there.got, nullptr);
}

TEST_F(HandOverTest, AFreePlaceBelongsToTheOldestRequest) {
  FakeMember& one = open(a, 1);
  open(a, 2);
  Waiter there(b);
  b.enqueue(there);
  // A's connection closes (say the upstream said Connection: close): its
  // place is free, and B's request is older than any new one of A's.
  ASSERT_EQ(a.checkin(one, NoReuse::kUpstreamClose), Checkin::kRefused);
  a.noteClosed(one);
  EXPECT_FALSE(a.atCap());
  EXPECT_FALSE(a.reserve()) << "a new request of A jumped B's queue";
  Waiter later(a);
  a.enqueue(later);
  timers.setNow(kStart + 20);
  timers.runExpired();  // both workers' periodic looks: B's request takes the place
  EXPECT_TRUE(there.reserved);
  EXPECT_FALSE(later.reserved);
  EXPECT_EQ(conns.load(), 2);
  a.dequeue(later);
}

TEST_F(HandOverTest, AnIdleConnectionMovesToAWorkerWhoseRequestsWait) {
  FakeMember& one = open(a, 1);
  open(a, 2);
  ASSERT_EQ(a.checkin(one, NoReuse::kReusable), Checkin::kPooled);  // nobody waits yet
  Waiter there(b);
  b.enqueue(there);
  timers.setNow(kStart + 30);
  timers.runExpired();  // A's look at the others' queues
  ASSERT_EQ(courier.sent.size(), 1u);
  EXPECT_EQ(courier.sent[0].second.idle_ms, 30u);
  EXPECT_EQ(get(counters_a.idle), 0u);
  EXPECT_EQ(get(counters_a.handed_total), 1u);
  deliver(b);
  timers.runExpired();
  EXPECT_NE(there.got, nullptr);
}

TEST_F(HandOverTest, ASocketThatCannotLeaveIsClosedAndItsPlaceFreed) {
  courier.works = false;
  FakeMember& one = open(a, 1);
  open(a, 2);
  Waiter there(b);
  b.enqueue(there);
  EXPECT_EQ(a.checkin(one, NoReuse::kReusable), Checkin::kHandedOver);
  EXPECT_EQ(get(counters_a.handed_total), 0u);
  EXPECT_EQ(get(counters_a.no_reuse_total[static_cast<int>(NoReuse::kYielded)]), 1u);
  EXPECT_EQ(conns.load(), 1);  // free for B's request to open a new one
  b.dequeue(there);
}

}  // namespace
}  // namespace poolgate
