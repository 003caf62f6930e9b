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
#include "pool/handover.h"

namespace poolgate {

class Pool;

// A request waiting for a connection while the server is at pool.max_conns.
class PoolWaiter {
 public:
  // A connection may be had now (an idle one, or room to open one).
  virtual void onPoolAvailable() noexcept = 0;
  // It has waited pool.queue_timeout (put back at the front, it keeps its
  // first deadline); the pool has taken it off its queue already.
  virtual void onQueueTimeout() noexcept = 0;

 protected:
  ~PoolWaiter() = default;

 private:
  friend class Pool;
  PoolWaiter* prev_ = nullptr;
  PoolWaiter* next_ = nullptr;
  uint64_t ticket_ = 0;       // its place in the instance-wide order (WaiterTickets)
  uint64_t deadline_ms_ = 0;  // queue_timeout from its first enqueue()
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
  // The pool hands this member's socket to another worker: stop watching it,
  // fill in the note's created_ms, requests_served and idle_limit_ms, schedule
  // own deletion, and return the descriptor (now the caller's). No
  // Pool::noteClosed(): the connection lives on, elsewhere.
  virtual int detachSocket(HandOverNote& note) noexcept = 0;

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

// This server's entry in shared memory, as its pool uses it; all null when
// the server has none (unit tests, a full table).
struct PoolShared {
  std::atomic<int32_t>* conns = nullptr;    // connections of all workers, against pool.max_conns
  std::atomic<int32_t>* waiters = nullptr;  // requests of all workers queued for a place
  WaiterTickets* tickets = nullptr;         // ...and their order of arrival
  uint32_t slot = 0;                        // this worker's index in tickets->first
  int32_t server = -1;                      // the entry's index, the key of a hand-over
  // Passes idle sockets to other workers; null: connections never move
  // (a TLS session cannot leave the process that holds it).
  PoolCourier* courier = nullptr;
};

// What became of a connection given back to its pool.
enum class Checkin : uint8_t {
  kPooled,      // idle in this worker's pool
  kHandedOver,  // gone to a request waiting in another worker (the member is deleted)
  kRefused,     // the caller closes it (then calls noteClosed())
};

// The reuse checklist: one reason per early return, in the order an
// operator would look for them. kReusable means "may go back to the pool".
NoReuse reuseVerdict(const ReuseFacts& facts, const PoolConfig& config);

class Pool {
 public:
  // `shared`: the server's entry in shared memory (max_conns is enforced on
  // its count of connections across all workers; without one, per worker).
  Pool(TimerQueue& timers, const PoolConfig& config, ServerCounters& counters, const PoolShared& shared = {});
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Takes the most recently used idle member that passes probeIdle(), or
  // nullptr. Members that fail the probe are evicted on the way.
  PoolMember* checkout();

  // A finished exchange hands its connection back. A reusable one goes to
  // the oldest request waiting for this server: another worker's (kHandedOver)
  // or this one's (kPooled, served on the next loop turn); with none waiting
  // it is pooled. kRefused: the caller closes it (and then calls
  // noteClosed()); the verdict, when not kReusable, is counted.
  Checkin checkin(PoolMember& member, NoReuse verdict);

  // A connection another worker handed over (see pool/handover.h): counted
  // as received, pooled idle, and offered to the first waiter. (The member
  // adds the note's idle_ms to what it is told in probeIdle().)
  void adopt(PoolMember& member);
  int32_t sharedKey() const { return shared_key_; }

  // max_conns: takes a place for a new connection across all workers (no
  // lock: a compare-and-swap on the shared count). false = at the cap.
  bool reserve();
  void unreserve();  // the connection was never opened
  bool atCap() const;

  // Waiters queue in FIFO order while the server is at max_conns. They are
  // told (from a timer, never from inside checkin()/noteClosed()) when a
  // connection of this worker frees, and re-checked every few ms for places
  // freed by other workers. One timer for the whole queue, not one per
  // waiter, tells those that wait pool.queue_timeout (onQueueTimeout()).
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
  void onDeadlineTimer();
  bool othersWait() const;
  bool shouldYield() const;
  // The worker slot whose oldest waiting request came before ours (before
  // any, when none of ours waits), claimed for a connection about to be
  // sent; false when ours is the oldest or nobody else waits.
  bool claimOlderWaiter(uint32_t* slot);
  bool olderWaiterElsewhere(uint64_t ticket) const;
  void publishFirstTicket();
  void renewStaleClaim();
  void handOver(PoolMember& member, uint32_t slot, uint64_t idle_ms);
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
  // At the earliest deadline of a waiter, or earlier (a waiter served since:
  // the timer is only pushed later when it fires, without a heap operation
  // per request).
  Timer deadline_timer_;
  Timer yield_timer_;  // at max_conns: give idle connections up to other workers' waiters
  WaiterTickets* tickets_;
  uint32_t slot_;
  int32_t shared_key_;
  PoolCourier* courier_;
  uint64_t local_tickets_ = 0;   // the order of arrival without shared tickets
  uint64_t serving_ticket_ = 0;  // the waiter onWakeTimer() is serving, for reserve()
  uint64_t claim_seen_ms_ = 0;   // when our first waiter was seen claimed with nothing come yet
  size_t waiter_count_ = 0;
  uint64_t last_yield_ms_ = 0;     // when checkin() last gave up a connection to other workers
  uint64_t yielded_until_ms_ = 0;  // ...and until when its place is left to them
  PoolWaiter* first_waiter_ = nullptr;
  PoolWaiter* last_waiter_ = nullptr;
};

}  // namespace poolgate
