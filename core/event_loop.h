// EventLoop: one epoll instance, its timers, and deferred deletion.
//
// Connections register once, edge-triggered, for both directions and keep
// their own "readable"/"writable" flags, so steady-state traffic costs no
// epoll_ctl calls. An object that an event of the current batch may still
// point at is never freed during the batch: owners hand it to deferDelete()
// and the loop frees it after dispatching (h2o's run_pending, Envoy's
// DeferredDeletable).
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "core/fd.h"
#include "core/timer.h"

namespace poolgate {

class IoHandler {
 public:
  virtual void onIoEvent(uint32_t events) noexcept = 0;

 protected:
  ~IoHandler() = default;
};

// Told around each epoll_wait: before it (may cap its timeout, in ms; -1 =
// no cap) and after the batch is dispatched. The accept mutex lives here.
class LoopObserver {
 public:
  virtual int64_t beforePoll() noexcept = 0;
  virtual void afterDispatch() noexcept = 0;

 protected:
  ~LoopObserver() = default;
};

class Deletable {
 public:
  virtual ~Deletable() = default;
};

// Work put off to the end of the loop's turn: once every event of the batch
// (or every expired timer) has been handled. An HTTP/2 connection writes
// there, so that the responses of several upstream events leave in one send.
class TurnEndHandler {
 public:
  virtual void onTurnEnd() noexcept = 0;

 protected:
  ~TurnEndHandler() = default;
};

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  bool valid() const { return static_cast<bool>(epoll_); }
  // In a forked child that will not use this loop: drop the inherited epoll
  // descriptor (the instance is shared with the parent).
  void closeAfterFork() { epoll_.reset(); }

  bool add(int fd, uint32_t events, IoHandler* handler);
  bool modify(int fd, uint32_t events, IoHandler* handler);
  void remove(int fd);

  // Runs until stop(); returns after the batch in which stop() was called.
  void run();
  // One epoll_wait (at most timeout_ms, -1 = until an event or timer) and its
  // dispatch. Used by run() and by tests.
  void runOnce(int timeout_ms);
  void stop() { running_ = false; }
  void setObserver(LoopObserver* observer) { observer_ = observer; }

  uint64_t now() const { return timers_.now(); }
  TimerQueue& timers() { return timers_; }

  // Takes ownership; the object is destroyed after the current batch.
  void deferDelete(Deletable* object);
  template <typename T>
  void deferDelete(std::unique_ptr<T> object) {
    deferDelete(static_cast<Deletable*>(object.release()));
  }
  // Destroys the deferred objects now (the loop does it after each batch; an
  // owner shutting down calls it while what those objects use still exists).
  void runDeferred();

  // `handler` is called once at the end of this turn (after the events, or
  // after the timers when a timer asked), before deferred deletions; it may
  // ask again. cancelTurnEnd(): a handler going away before then.
  void atTurnEnd(TurnEndHandler* handler) { turn_end_.push_back(handler); }
  void cancelTurnEnd(TurnEndHandler* handler);
  void runTurnEnd();

 private:
  void updateNow();

  Fd epoll_;
  TimerQueue timers_;
  bool running_ = false;
  LoopObserver* observer_ = nullptr;
  std::vector<epoll_event> events_;
  std::vector<Deletable*> deferred_;
  std::vector<Deletable*> deleting_;
  std::vector<TurnEndHandler*> turn_end_;
  std::vector<TurnEndHandler*> turn_ending_;
};

}  // namespace poolgate
