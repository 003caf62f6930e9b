// Timers on a binary min-heap with lazy re-arming.
//
// A connection re-arms its timeout on every read. Pushing the deadline later
// only stores the new value: the heap entry keeps its older (earlier) key, and
// when that key comes due the timer is re-keyed instead of fired. So the common
// re-arm is O(1); only arming earlier, first arming and expiry touch the heap
// (O(log n)). 100k pending timers cost 100k heap slots and nothing per tick.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace poolgate {

class TimerQueue;

class Timer {
 public:
  // The callback is set once; a lambda capturing `this` fits std::function's
  // small-object buffer, so no allocation happens here or when it fires.
  Timer(TimerQueue& queue, std::function<void()> callback);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Fire `delay_ms` from the queue's current time (replaces any earlier arming).
  void arm(uint64_t delay_ms);
  void armAt(uint64_t deadline_ms);
  void cancel();
  bool armed() const { return armed_; }
  uint64_t deadline() const { return deadline_; }

 private:
  friend class TimerQueue;
  TimerQueue& queue_;
  std::function<void()> callback_;
  uint64_t deadline_ = 0;   // when the owner wants it to fire
  uint64_t heap_key_ = 0;   // the key it has in the heap (<= deadline_ while armed)
  uint32_t heap_index_ = kNotInHeap;  // (a worker never holds 4 billion timers)
  bool armed_ = false;
  static constexpr uint32_t kNotInHeap = UINT32_MAX;
};

class TimerQueue {
 public:
  explicit TimerQueue(uint64_t now_ms) : now_(now_ms) {}
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  uint64_t now() const { return now_; }
  void setNow(uint64_t now_ms) { now_ = now_ms; }

  // Milliseconds until the earliest heap key (which may be a lazy one), or -1.
  int64_t msUntilNext() const;
  // Fires every timer whose deadline is <= now. Returns how many fired.
  size_t runExpired();
  size_t size() const { return heap_.size(); }

 private:
  friend class Timer;
  void push(Timer* timer, uint64_t key);
  void remove(Timer* timer);
  void siftUp(size_t index);
  void siftDown(size_t index);
  void place(size_t index, Timer* timer);

  uint64_t now_;
  bool running_ = false;  // inside runExpired()
  std::vector<Timer*> heap_;
};

}  // namespace poolgate
