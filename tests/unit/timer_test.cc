// TimerQueue + Timer: a binary min-heap with lazy re-arming. Time is driven
// with TimerQueue::setNow(); nothing here sleeps.
#include "core/timer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

namespace poolgate {
namespace {

constexpr uint64_t kStart = 1'000'000;

// A timer that records its id in a shared log when it fires.
struct LoggingTimer {
  LoggingTimer(TimerQueue& queue, int id, std::vector<int>& log)
      : timer(queue, [this] { fired_log.push_back(this->id); }), id(id), fired_log(log) {}
  Timer timer;
  int id;
  std::vector<int>& fired_log;
};

TEST(Timer, NewTimerIsNotArmedAndQueueIsEmpty) {
  TimerQueue queue(kStart);
  Timer timer(queue, [] {});
  EXPECT_FALSE(timer.armed());
  EXPECT_EQ(queue.size(), 0u);
  EXPECT_EQ(queue.msUntilNext(), -1);
  EXPECT_EQ(queue.runExpired(), 0u);
}

TEST(Timer, ArmIsRelativeToQueueNow) {
  TimerQueue queue(kStart);
  Timer timer(queue, [] {});
  timer.arm(250);
  EXPECT_TRUE(timer.armed());
  EXPECT_EQ(timer.deadline(), kStart + 250);
  EXPECT_EQ(queue.size(), 1u);
}

TEST(Timer, DoesNotFireBeforeDeadlineAndFiresAtIt) {
  TimerQueue queue(kStart);
  int fired = 0;
  Timer timer(queue, [&] { ++fired; });
  timer.arm(100);

  queue.setNow(kStart + 99);
  EXPECT_EQ(queue.runExpired(), 0u);
  EXPECT_EQ(fired, 0);

  queue.setNow(kStart + 100);
  EXPECT_EQ(queue.runExpired(), 1u);
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(timer.armed());
  EXPECT_EQ(queue.size(), 0u);

  queue.setNow(kStart + 10'000);
  EXPECT_EQ(queue.runExpired(), 0u);
  EXPECT_EQ(fired, 1);
}

TEST(Timer, FiresInDeadlineOrderRegardlessOfArmingOrder) {
  TimerQueue queue(kStart);
  std::vector<int> log;
  LoggingTimer a(queue, 1, log), b(queue, 2, log), c(queue, 3, log), d(queue, 4, log);
  c.timer.arm(30);
  a.timer.arm(10);
  d.timer.arm(40);
  b.timer.arm(20);

  queue.setNow(kStart + 1000);
  EXPECT_EQ(queue.runExpired(), 4u);
  EXPECT_EQ(log, (std::vector<int>{1, 2, 3, 4}));
}

TEST(Timer, OnlyDueTimersFire) {
  TimerQueue queue(kStart);
  std::vector<int> log;
  LoggingTimer a(queue, 1, log), b(queue, 2, log);
  a.timer.arm(10);
  b.timer.arm(20);

  queue.setNow(kStart + 15);
  EXPECT_EQ(queue.runExpired(), 1u);
  EXPECT_EQ(log, std::vector<int>{1});
  EXPECT_TRUE(b.timer.armed());
  EXPECT_EQ(queue.size(), 1u);
}

TEST(Timer, CancelPreventsFiringAndLeavesTheHeap) {
  TimerQueue queue(kStart);
  int fired = 0;
  Timer timer(queue, [&] { ++fired; });
  timer.arm(10);
  timer.cancel();
  EXPECT_FALSE(timer.armed());
  EXPECT_EQ(queue.size(), 0u);

  queue.setNow(kStart + 100);
  EXPECT_EQ(queue.runExpired(), 0u);
  EXPECT_EQ(fired, 0);
}

TEST(Timer, CancelOfUnarmedTimerIsHarmless) {
  TimerQueue queue(kStart);
  Timer timer(queue, [] {});
  timer.cancel();
  timer.cancel();
  EXPECT_FALSE(timer.armed());
  EXPECT_EQ(queue.size(), 0u);
}

TEST(Timer, CancelInTheMiddleKeepsOthersOrdered) {
  TimerQueue queue(kStart);
  std::vector<int> log;
  std::vector<std::unique_ptr<LoggingTimer>> timers;
  for (int i = 0; i < 9; ++i) {
    timers.push_back(std::make_unique<LoggingTimer>(queue, i, log));
    timers.back()->timer.arm(static_cast<uint64_t>(10 * (9 - i)));  // armed in reverse order
  }
  timers[4]->timer.cancel();
  timers[0]->timer.cancel();
  EXPECT_EQ(queue.size(), 7u);

  queue.setNow(kStart + 1000);
  EXPECT_EQ(queue.runExpired(), 7u);
  EXPECT_EQ(log, (std::vector<int>{8, 7, 6, 5, 3, 2, 1}));
}

TEST(Timer, DestroyingAnArmedTimerCancelsIt) {
  TimerQueue queue(kStart);
  int fired = 0;
  {
    Timer timer(queue, [&] { ++fired; });
    timer.arm(10);
    EXPECT_EQ(queue.size(), 1u);
  }
  EXPECT_EQ(queue.size(), 0u);
  queue.setNow(kStart + 100);
  EXPECT_EQ(queue.runExpired(), 0u);
  EXPECT_EQ(fired, 0);
}

TEST(Timer, RearmLaterFiresAtTheNewDeadlineNotTheOld) {
  TimerQueue queue(kStart);
  int fired = 0;
  Timer timer(queue, [&] { ++fired; });
  timer.arm(100);
  timer.arm(500);  // lazy: heap key stays at +100
  EXPECT_EQ(timer.deadline(), kStart + 500);
  EXPECT_EQ(queue.size(), 1u);

  queue.setNow(kStart + 100);
  EXPECT_EQ(queue.runExpired(), 0u);  // old key came due: re-keyed, not fired
  EXPECT_EQ(fired, 0);
  EXPECT_TRUE(timer.armed());
  EXPECT_EQ(queue.size(), 1u);

  queue.setNow(kStart + 499);
  EXPECT_EQ(queue.runExpired(), 0u);
  EXPECT_EQ(fired, 0);

  queue.setNow(kStart + 500);
  EXPECT_EQ(queue.runExpired(), 1u);
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(queue.size(), 0u);
}

TEST(Timer, RearmLaterWhenTimeJumpsPastBothDeadlinesFiresOnce) {
  TimerQueue queue(kStart);
  int fired = 0;
  Timer timer(queue, [&] { ++fired; });
  timer.arm(100);
  timer.arm(500);
  queue.setNow(kStart + 10'000);
  EXPECT_EQ(queue.runExpired(), 1u);
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(queue.size(), 0u);
}

TEST(Timer, RearmEarlierFiresAtTheNewDeadline) {
  TimerQueue queue(kStart);
  std::vector<int> log;
  LoggingTimer a(queue, 1, log), b(queue, 2, log);
  a.timer.arm(500);
  b.timer.arm(200);
  a.timer.arm(100);  // earlier than its heap key: sifted up
  EXPECT_EQ(queue.size(), 2u);
  EXPECT_EQ(queue.msUntilNext(), 100);

  queue.setNow(kStart + 100);
  EXPECT_EQ(queue.runExpired(), 1u);
  EXPECT_EQ(log, std::vector<int>{1});
  EXPECT_FALSE(a.timer.armed());
}

TEST(Timer, RearmAfterCancelFiresAgain) {
  TimerQueue queue(kStart);
  int fired = 0;
  Timer timer(queue, [&] { ++fired; });
  timer.arm(10);
  timer.cancel();
  timer.arm(20);
  queue.setNow(kStart + 20);
  EXPECT_EQ(queue.runExpired(), 1u);
  EXPECT_EQ(fired, 1);
}

// Two timers, one re-armed lazily past the other, both due by the time the
// queue runs (a stalled loop): they must still fire in deadline order.
TEST(Timer, LazilyRearmedTimerFiresInDeadlineOrderAfterATimeJump) {
  TimerQueue queue(kStart);
  std::vector<int> log;
  LoggingTimer a(queue, 1, log), b(queue, 2, log);
  a.timer.arm(100);
  a.timer.arm(200);  // heap key +100, deadline +200
  b.timer.arm(150);

  queue.setNow(kStart + 300);
  EXPECT_EQ(queue.runExpired(), 2u);
  EXPECT_EQ(log, (std::vector<int>{2, 1}));
}

TEST(Timer, MsUntilNextReportsEarliestKey) {
  TimerQueue queue(kStart);
  Timer a(queue, [] {}), b(queue, [] {});
  a.arm(300);
  b.arm(120);
  EXPECT_EQ(queue.msUntilNext(), 120);
  queue.setNow(kStart + 20);
  EXPECT_EQ(queue.msUntilNext(), 100);
  queue.setNow(kStart + 500);
  EXPECT_EQ(queue.msUntilNext(), 0);  // overdue: never negative
  b.cancel();
  a.cancel();
  EXPECT_EQ(queue.msUntilNext(), -1);
}

TEST(Timer, MsUntilNextMayReportALazyKeyEarly) {
  // Documented: the earliest heap key may be stale (re-armed later); the loop
  // wakes early, re-keys, and asks again.
  TimerQueue queue(kStart);
  Timer timer(queue, [] {});
  timer.arm(100);
  timer.arm(1000);
  EXPECT_EQ(queue.msUntilNext(), 100);
  queue.setNow(kStart + 100);
  EXPECT_EQ(queue.runExpired(), 0u);
  EXPECT_EQ(queue.msUntilNext(), 900);
}

TEST(Timer, CallbackCanRearmItself) {
  TimerQueue queue(kStart);
  int fired = 0;
  std::unique_ptr<Timer> timer;
  timer = std::make_unique<Timer>(queue, [&] {
    ++fired;
    if (fired < 3) timer->arm(10);
  });
  timer->arm(10);

  for (uint64_t t = 10; t <= 50; t += 10) {
    queue.setNow(kStart + t);
    queue.runExpired();
  }
  EXPECT_EQ(fired, 3);
  EXPECT_FALSE(timer->armed());
  EXPECT_EQ(queue.size(), 0u);
}

TEST(Timer, CallbackCanCancelAnotherDueTimer) {
  TimerQueue queue(kStart);
  std::vector<int> log;
  Timer second(queue, [&] { log.push_back(2); });
  Timer first(queue, [&] {
    log.push_back(1);
    second.cancel();
  });
  first.arm(10);
  second.arm(20);

  queue.setNow(kStart + 100);  // both due
  EXPECT_EQ(queue.runExpired(), 1u);
  EXPECT_EQ(log, std::vector<int>{1});
  EXPECT_EQ(queue.size(), 0u);
}

TEST(Timer, CallbackCanPostponeAnotherDueTimer) {
  TimerQueue queue(kStart);
  std::vector<int> log;
  Timer second(queue, [&] { log.push_back(2); });
  Timer first(queue, [&] {
    log.push_back(1);
    second.arm(1000);  // from now = +100: deadline +1100
  });
  first.arm(10);
  second.arm(20);

  queue.setNow(kStart + 100);
  EXPECT_EQ(queue.runExpired(), 1u);
  EXPECT_EQ(log, std::vector<int>{1});
  EXPECT_TRUE(second.armed());
  EXPECT_EQ(second.deadline(), kStart + 1100);

  queue.setNow(kStart + 1100);
  EXPECT_EQ(queue.runExpired(), 1u);
  EXPECT_EQ(log, (std::vector<int>{1, 2}));
}

TEST(Timer, CallbackCanArmAnotherTimerThatIsAlreadyDue) {
  TimerQueue queue(kStart);
  std::vector<int> log;
  Timer second(queue, [&] { log.push_back(2); });
  Timer first(queue, [&] {
    log.push_back(1);
    second.armAt(kStart + 50);  // already in the past: fires on the next round
  });
  first.arm(10);

  queue.setNow(kStart + 100);
  EXPECT_EQ(queue.runExpired(), 1u);
  EXPECT_EQ(log, (std::vector<int>{1}));
  EXPECT_EQ(queue.msUntilNext(), 1);
  queue.setNow(kStart + 101);
  EXPECT_EQ(queue.runExpired(), 1u);
  EXPECT_EQ(log, (std::vector<int>{1, 2}));
}

// The owner of the timer is destroyed by the timer's own callback (a
// connection closing itself on timeout).
TEST(Timer, CallbackCanDestroyItsOwner) {
  struct Owner {
    Owner(TimerQueue& queue, std::unique_ptr<Owner>& slot, int& destroyed)
        : timer(queue, [this] { slot_.reset(); }), slot_(slot), destroyed_(destroyed) {}
    ~Owner() { ++destroyed_; }
    Timer timer;
    std::unique_ptr<Owner>& slot_;
    int& destroyed_;
  };

  TimerQueue queue(kStart);
  int destroyed = 0;
  std::vector<int> log;
  LoggingTimer later(queue, 7, log);
  std::unique_ptr<Owner> owner;
  owner = std::make_unique<Owner>(queue, owner, destroyed);
  owner->timer.arm(10);
  later.timer.arm(20);

  queue.setNow(kStart + 100);
  EXPECT_EQ(queue.runExpired(), 2u);
  EXPECT_EQ(owner, nullptr);
  EXPECT_EQ(destroyed, 1);
  EXPECT_EQ(log, std::vector<int>{7});  // the queue went on after the owner died
  EXPECT_EQ(queue.size(), 0u);
}

TEST(Timer, CallbackCanDestroyTheOwnerOfAnotherDueTimer) {
  TimerQueue queue(kStart);
  std::vector<int> log;
  auto victim = std::make_unique<LoggingTimer>(queue, 2, log);
  Timer killer(queue, [&] {
    log.push_back(1);
    victim.reset();
  });
  killer.arm(10);
  victim->timer.arm(20);

  queue.setNow(kStart + 100);
  EXPECT_EQ(queue.runExpired(), 1u);
  EXPECT_EQ(log, std::vector<int>{1});
  EXPECT_EQ(queue.size(), 0u);
}

TEST(Timer, HundredThousandRandomTimersFireOnceInDeadlineOrder) {
  constexpr int kCount = 100'000;
  TimerQueue queue(kStart);
  std::vector<uint64_t> fired_deadlines;
  fired_deadlines.reserve(kCount);
  std::vector<int> fire_count(kCount, 0);
  std::vector<std::unique_ptr<Timer>> timers;
  timers.reserve(kCount);

  std::mt19937_64 rng(12345);
  std::uniform_int_distribution<uint64_t> delay(0, 60'000);
  for (int i = 0; i < kCount; ++i) {
    timers.push_back(std::make_unique<Timer>(queue, [&, i] {
      ++fire_count[i];
      fired_deadlines.push_back(timers[i]->deadline());
    }));
    timers.back()->arm(delay(rng));
  }
  EXPECT_EQ(queue.size(), static_cast<size_t>(kCount));

  // Advance in uneven steps; check order inside and across steps.
  size_t total = 0;
  size_t checked = 0;
  for (uint64_t t = 0; t <= 60'000; t += 777) {
    queue.setNow(kStart + t);
    total += queue.runExpired();
    for (; checked < fired_deadlines.size(); ++checked) {
      ASSERT_LE(fired_deadlines[checked], kStart + t) << "fired before its deadline";
    }
  }
  queue.setNow(kStart + 60'000);
  total += queue.runExpired();

  EXPECT_EQ(total, static_cast<size_t>(kCount));
  EXPECT_EQ(queue.size(), 0u);
  ASSERT_EQ(fired_deadlines.size(), static_cast<size_t>(kCount));
  for (size_t k = 1; k < fired_deadlines.size(); ++k) {
    ASSERT_LE(fired_deadlines[k - 1], fired_deadlines[k]) << "at position " << k;
  }
  for (int i = 0; i < kCount; ++i) ASSERT_EQ(fire_count[i], 1) << "timer " << i;
}

TEST(Timer, RearmingLaterManyTimesAddsNoHeapEntries) {
  constexpr int kCount = 100'000;
  constexpr int kRearms = 10;
  TimerQueue queue(kStart);
  std::vector<uint64_t> fired_deadlines;
  fired_deadlines.reserve(kCount);
  std::vector<int> fire_count(kCount, 0);
  std::vector<std::unique_ptr<Timer>> timers;
  timers.reserve(kCount);

  std::mt19937_64 rng(777);
  std::uniform_int_distribution<uint64_t> delay(1, 1000);
  for (int i = 0; i < kCount; ++i) {
    timers.push_back(std::make_unique<Timer>(queue, [&, i] {
      ++fire_count[i];
      fired_deadlines.push_back(timers[i]->deadline());
    }));
    timers.back()->arm(delay(rng));
  }
  for (int round = 1; round <= kRearms; ++round) {
    for (auto& timer : timers) timer->armAt(timer->deadline() + delay(rng));  // always later
    ASSERT_EQ(queue.size(), static_cast<size_t>(kCount)) << "after round " << round;
  }

  uint64_t latest = 0;
  for (auto& timer : timers) latest = std::max(latest, timer->deadline());
  for (uint64_t t = kStart; t <= latest; t += 500) {
    queue.setNow(t);
    queue.runExpired();
    ASSERT_LE(queue.size(), static_cast<size_t>(kCount));
  }
  queue.setNow(latest);
  queue.runExpired();

  EXPECT_EQ(queue.size(), 0u);
  ASSERT_EQ(fired_deadlines.size(), static_cast<size_t>(kCount));
  for (size_t k = 1; k < fired_deadlines.size(); ++k) {
    ASSERT_LE(fired_deadlines[k - 1], fired_deadlines[k]) << "at position " << k;
  }
  for (int i = 0; i < kCount; ++i) ASSERT_EQ(fire_count[i], 1) << "timer " << i;
}

}  // namespace
}  // namespace poolgate

namespace poolgate {
namespace {

TEST(Timer, CallbackRearmingItselfForNowFiresOnTheNextRound) {
  TimerQueue queue(1000);
  int fired = 0;
  Timer* self = nullptr;
  Timer timer(queue, [&] {
    ++fired;
    self->arm(0);  // again "now": must not make runExpired() spin
  });
  self = &timer;
  timer.arm(0);
  EXPECT_EQ(queue.runExpired(), 1u);
  EXPECT_EQ(fired, 1);
  queue.setNow(1001);
  EXPECT_EQ(queue.runExpired(), 1u);
  EXPECT_EQ(fired, 2);
}

}  // namespace
}  // namespace poolgate
