// Pool: one worker's cache of keep-alive connections to one upstream server.
//
// Only the owning worker's event loop touches it, so it takes no lock (the
// nginx keepalive module's and proxygen's SessionPool's rule). Idle members
// sit on an intrusive LIFO list: checkout takes the warmest socket, the idle
// timer trims the coldest from the tail. Every connection of the server, idle
// or not, is counted here, so `open == idle + active` holds by construction.
#pragma once

#include <cstdint>

#include "config/config.h"
#include "core/timer.h"
#include "pool/counters.h"

namespace poolgate {

class Pool;

// What a connection must offer to be pooled.
class PoolMember {
 public:
  // Is the idle socket still usable? (no EOF, no stray bytes: recv MSG_PEEK)
  virtual bool probeIdle() noexcept = 0;
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
  uint64_t requests_served = 0;    // on this connection, including this one
  uint64_t age_ms = 0;
};

// The reuse checklist: one reason per early return, in the order an
// operator would look for them. kReusable means "may go back to the pool".
NoReuse reuseVerdict(const ReuseFacts& facts, const PoolConfig& config);

class Pool {
 public:
  Pool(TimerQueue& timers, const PoolConfig& config, ServerCounters& counters);
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

  // Connection lifecycle, for the counters.
  void noteConnecting();          // a new connection is being opened for a request
  void noteConnected();           // it is established
  void noteFailed();              // a request failed on a connection (it will be closed)
  void noteReused();              // a request is sent on a pooled connection
  void noteClosed(PoolMember& member);  // a counted connection is gone

  // Evicts every idle member (worker exit, server removed).
  void closeIdle();

  size_t idleCount() const { return idle_count_; }
  const PoolConfig& config() const { return config_; }
  ServerCounters& counters() { return counters_; }

 private:
  void pushIdle(PoolMember& member);
  void unlink(PoolMember& member);
  void onIdleTimer();
  void armIdleTimer();

  const PoolConfig& config_;
  ServerCounters& counters_;
  TimerQueue& timers_;
  Timer idle_timer_;
  PoolMember* head_ = nullptr;  // most recently idle
  PoolMember* tail_ = nullptr;  // longest idle
  size_t idle_count_ = 0;
};

}  // namespace poolgate
