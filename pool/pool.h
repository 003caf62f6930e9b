// Pool: one worker's cache of keep-alive connections to one upstream server.
//
// Only the owning worker's event loop touches it, so it takes no lock (the
// nginx keepalive module's and proxygen's SessionPool's rule). Idle members
// sit on an intrusive LIFO list: checkout takes the warmest socket, the idle
// timer trims the coldest from the tail. Every connection of the server, idle
// or not, is counted here, so `open == idle + active` holds by construction.
//
// The pool follows demand. A connection that finishes its exchange is always
// kept (when reusable), even past max_idle: under a load larger than max_idle
// the surplus is what the next requests need a moment later, and closing it
// would only make them open new ones (a handshake each side, a TIME_WAIT here,
// CPU on the app server). max_idle bounds what stays idle *for a while*: the
// coldest idle connections beyond max_idle are closed once they have been idle
// `trim_after` (1 s by default), so when load drops the pool shrinks back to
// max_idle within about that time, and then by idle_timeout.
#pragma once

#include <atomic>
#include <cstdint>

#include "config/config.h"
#include "core/timer.h"
#include "pool/counters.h"

namespace poolgate {

class Pool;

// A request waiting for a connection while the server is at pool.max_conns.
class PoolWaiter {
 public:
  // A connection may be had now (an idle one, or room to open one).
  virtual void onPoolAvailable() noexcept = 0;

 protected:
  ~PoolWaiter() = default;

 private:
  friend class Pool;
  PoolWaiter* prev_ = nullptr;
  PoolWaiter* next_ = nullptr;
  bool queued_ = false;
};

// What a connection must offer to be pooled.
class PoolMember {
 public:
  // Is the idle socket still usable? (no EOF, no stray bytes). `idle_ms`:
  // how long it sat in the pool, so that a member may skip a costly check
  // (a recv(MSG_PEEK)) when it was idle only a moment.
  virtual bool probeIdle(uint64_t idle_ms) noexcept = 0;
  // The pool drops this idle member (timeout, failed probe, pool shutdown):
  // close the socket, call Pool::noteClosed(), schedule own deletion.
  virtual void evictFromPool() noexcept = 0;

  uint64_t createdMs() const { return created_ms_; }
  uint64_t requestsServed() const { return requests_served_; }
  bool isIdle() const { return idle_; }

 protected:
  explicit PoolMember(uint64_t created_ms) : created_ms_(created_ms) {}
  ~PoolMember() = default;

  uint64_t requests_served_ = 0;

 private:
  friend class Pool;
  PoolMember* prev_ = nullptr;
  PoolMember* next_ = nullptr;
  uint64_t created_ms_;
  uint64_t idle_since_ms_ = 0;
  bool idle_ = false;
};

// The facts of one finished exchange that decide whether its upstream
// connection may carry another request.
struct ReuseFacts {
  bool error = false;              // I/O error, parse error or timeout
  bool response_complete = false;  // the whole response was read
  bool length_delimited = false;   // framed by Content-Length or chunked (or no body)
  bool upstream_keep_alive = false;
  bool request_sent = false;       // the whole request, body included, was written
  bool unread_bytes = false;       // bytes arrived after the response
  bool exiting = false;            // this worker drains or stops
  bool retired = false;            // the server's address left its DNS answer
  bool upstream_max_reached = false;  // its Keep-Alive header allows no further request
  uint64_t requests_served = 0;    // on this connection, including this one
  uint64_t age_ms = 0;
};

// The reuse checklist: one reason per early return, in the order an
// operator would look for them. kReusable means "may go back to the pool".
NoReuse reuseVerdict(const ReuseFacts& facts, const PoolConfig& config);

class Pool {
 public:
  // `shared_conns`: this server's connection count across all workers (in
  // shared memory), enforced against pool.max_conns; may be null when no cap.
  // `shared_waiters`: requests of all workers queued for this server.
  Pool(TimerQueue& timers, const PoolConfig& config, ServerCounters& counters,
       std::atomic<int32_t>* shared_conns = nullptr, std::atomic<int32_t>* shared_waiters = nullptr);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Takes the most recently used idle member that passes probeIdle(), or
  // nullptr. Members that fail the probe are evicted on the way.
  PoolMember* checkout();

  // A finished exchange hands its connection back. Returns true if the pool
  // kept it (it is now idle); false if the caller must close it (and then call
  // noteClosed()). The verdict, when not kReusable, is counted.
  bool checkin(PoolMember& member, NoReuse verdict);

  // max_conns: takes a place for a new connection across all workers (no
  // lock: a compare-and-swap on the shared count). false = at the cap.
  bool reserve();
  void unreserve();  // the connection was never opened
  bool atCap() const;

  // Waiters queue in FIFO order while the server is at max_conns. They are
  // told (from a timer, never from inside checkin()/noteClosed()) when a
  // connection of this worker frees, and re-checked every few ms for places
  // freed by other workers.
  void enqueue(PoolWaiter& waiter, bool at_front = false);
  void dequeue(PoolWaiter& waiter);
  void noteQueueTimeout();

  // Connection lifecycle, for the counters.
  void noteConnecting();          // a new connection is being opened for a request
  void noteConnected();           // it is established
  void noteFailed();              // a request failed on a connection (it will be closed)
  void noteReused();              // a request is sent on a pooled connection
  void noteClosed(PoolMember& member);  // a counted connection is gone

  // Evicts every idle member (worker exit, server removed).
  void closeIdle();

  // The peak of concurrent requests on this server (active connections)
  // over the last one or two demand windows (see demandAt()).
  uint64_t demand() const { return demandAt(counters_, timers_.now()); }

  size_t idleCount() const { return idle_count_; }
  const PoolConfig& config() const { return config_; }
  ServerCounters& counters() { return counters_; }

 private:
  void pushIdle(PoolMember& member);
  void unlink(PoolMember& member);
  void onIdleTimer();
  void armIdleTimer();
  void noteActive();  // one more connection carries (or opens for) a request
  void onWakeTimer();
  void scheduleWake(uint64_t delay_ms);
  bool othersWait() const;
  bool shouldYield() const;
  void onYieldTimer();
  void armYieldTimer();

  const PoolConfig& config_;
  ServerCounters& counters_;
  TimerQueue& timers_;
  Timer idle_timer_;
  PoolMember* head_ = nullptr;  // most recently idle
  PoolMember* tail_ = nullptr;  // longest idle
  size_t idle_count_ = 0;
  std::atomic<int32_t>* shared_conns_;
  std::atomic<int32_t>* shared_waiters_;
  Timer wake_timer_;
  Timer yield_timer_;  // at max_conns: give idle connections up to other workers' waiters
  size_t waiter_count_ = 0;
  uint64_t last_yield_ms_ = 0;     // when checkin() last gave up a connection to other workers
  uint64_t yielded_until_ms_ = 0;  // ...and until when its place is left to them
  PoolWaiter* first_waiter_ = nullptr;
  PoolWaiter* last_waiter_ = nullptr;
};

}  // namespace poolgate
