#include "core/event_loop.h"

#include <errno.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"

namespace poolgate {

namespace {
constexpr size_t kMaxEvents = 256;
}

EventLoop::EventLoop() : epoll_(epoll_create1(EPOLL_CLOEXEC)), timers_(monotonicMs()) {
  events_.resize(kMaxEvents);
  if (!epoll_) LOG_ERROR("epoll_create1: %s", strerror(errno));
}

EventLoop::~EventLoop() {
  runDeferred();
}

bool EventLoop::add(int fd, uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) == 0) return true;
  LOG_ERROR("epoll_ctl(ADD, %d): %s", fd, strerror(errno));
  return false;
}

bool EventLoop::modify(int fd, uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) == 0) return true;
  LOG_ERROR("epoll_ctl(MOD, %d): %s", fd, strerror(errno));
  return false;
}

void EventLoop::remove(int fd) {
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

void EventLoop::run() {
  running_ = true;
  while (running_) {
    int64_t next = timers_.msUntilNext();
    if (observer_ != nullptr) {
      int64_t cap = observer_->beforePoll();
      if (cap >= 0 && (next < 0 || cap < next)) next = cap;
    }
    runOnce(next < 0 ? -1 : static_cast<int>(next > 60000 ? 60000 : next));
  }
}

void EventLoop::runOnce(int timeout_ms) {
  int n = epoll_wait(epoll_.get(), events_.data(), static_cast<int>(events_.size()), timeout_ms);
  updateNow();
  if (n < 0 && errno != EINTR) LOG_ERROR("epoll_wait: %s", strerror(errno));
  for (int i = 0; i < n; ++i) {
    static_cast<IoHandler*>(events_[i].data.ptr)->onIoEvent(events_[i].events);
  }
  runTurnEnd();
  if (observer_ != nullptr) observer_->afterDispatch();
  runDeferred();
  timers_.runExpired();
  runTurnEnd();
  runDeferred();
}

void EventLoop::runTurnEnd() {
  // A handler may ask again (more to write): loop until nobody does.
  while (!turn_end_.empty()) {
    turn_ending_.swap(turn_end_);
    for (TurnEndHandler*& handler : turn_ending_) {
      if (handler != nullptr) handler->onTurnEnd();
    }
    turn_ending_.clear();
  }
}

void EventLoop::cancelTurnEnd(TurnEndHandler* handler) {
  for (auto* list : {&turn_end_, &turn_ending_}) {
    for (TurnEndHandler*& h : *list) {
      if (h == handler) h = nullptr;
    }
  }
}

void EventLoop::deferDelete(Deletable* object) { deferred_.push_back(object); }

void EventLoop::updateNow() { timers_.setNow(monotonicMs()); }

void EventLoop::runDeferred() {
  // Destructors may defer more objects: loop until nothing is left.
  while (!deferred_.empty()) {
    deleting_.swap(deferred_);
    for (Deletable* object : deleting_) delete object;
    deleting_.clear();
  }
}

}  // namespace poolgate
