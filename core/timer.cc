#include "core/timer.h"

#include <utility>

namespace poolgate {

Timer::Timer(TimerQueue& queue, std::function<void()> callback)
    : queue_(queue), callback_(std::move(callback)) {}

Timer::~Timer() { cancel(); }

void Timer::arm(uint64_t delay_ms) { armAt(queue_.now() + delay_ms); }

void Timer::armAt(uint64_t deadline_ms) {
  // Armed from a timer callback for "now": fire on the next round, so that a
  // callback re-arming itself with 0 cannot keep runExpired() going forever.
  if (queue_.running_ && deadline_ms <= queue_.now_) deadline_ms = queue_.now_ + 1;
  deadline_ = deadline_ms;
  armed_ = true;
  if (heap_index_ == kNotInHeap) {
    queue_.push(this, deadline_ms);
  } else if (deadline_ms < heap_key_) {
    heap_key_ = deadline_ms;
    queue_.siftUp(heap_index_);
  }
  // else: later than the heap key; re-keyed lazily when the key comes due.
}

void Timer::cancel() {
  armed_ = false;
  if (heap_index_ != kNotInHeap) queue_.remove(this);
}

int64_t TimerQueue::msUntilNext() const {
  if (heap_.empty()) return -1;
  uint64_t key = heap_.front()->heap_key_;
  return key <= now_ ? 0 : static_cast<int64_t>(key - now_);
}

size_t TimerQueue::runExpired() {
  size_t fired = 0;
  running_ = true;
  while (!heap_.empty() && heap_.front()->heap_key_ <= now_) {
    Timer* timer = heap_.front();
    // Re-armed later since it was keyed: re-key it, even when the new deadline
    // is already due, so that a late loop still fires in deadline order.
    if (timer->deadline_ > timer->heap_key_) {
      timer->heap_key_ = timer->deadline_;
      siftDown(0);
      continue;
    }
    remove(timer);
    timer->armed_ = false;
    ++fired;
    timer->callback_();  // may re-arm or destroy the timer's owner
  }
  running_ = false;
  return fired;
}

void TimerQueue::push(Timer* timer, uint64_t key) {
  timer->heap_key_ = key;
  heap_.push_back(timer);
  timer->heap_index_ = static_cast<uint32_t>(heap_.size() - 1);
  siftUp(heap_.size() - 1);
}

void TimerQueue::remove(Timer* timer) {
  size_t index = timer->heap_index_;
  timer->heap_index_ = Timer::kNotInHeap;
  Timer* last = heap_.back();
  heap_.pop_back();
  if (index == heap_.size()) return;  // it was the last one
  place(index, last);
  siftDown(index);
  siftUp(last->heap_index_);
}

void TimerQueue::place(size_t index, Timer* timer) {
  heap_[index] = timer;
  timer->heap_index_ = static_cast<uint32_t>(index);
}

void TimerQueue::siftUp(size_t index) {
  Timer* timer = heap_[index];
  while (index > 0) {
    size_t parent = (index - 1) / 2;
    if (heap_[parent]->heap_key_ <= timer->heap_key_) break;
    place(index, heap_[parent]);
    index = parent;
  }
  place(index, timer);
}

void TimerQueue::siftDown(size_t index) {
  Timer* timer = heap_[index];
  size_t n = heap_.size();
  for (;;) {
    size_t child = 2 * index + 1;
    if (child >= n) break;
    if (child + 1 < n && heap_[child + 1]->heap_key_ < heap_[child]->heap_key_) ++child;
    if (timer->heap_key_ <= heap_[child]->heap_key_) break;
    place(index, heap_[child]);
    index = child;
  }
  place(index, timer);
}

}  // namespace poolgate
