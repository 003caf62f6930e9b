// Per-server connection counters of one worker's pool.
//
// They live in the shared-memory stats segment (one copy per worker slot and
// server): the owning worker is the only writer, the admin endpoint of any
// worker reads them. Relaxed atomics: each value is read on its own, and a
// snapshot that is a few increments apart across fields is fine for stats.
#pragma once

#include <atomic>
#include <cstdint>

namespace poolgate {

// Why a finished upstream connection was not put back in the pool.
// One reason per early return of Pool::reuseVerdict(); stable names for stats.
enum class NoReuse : uint8_t {
  kReusable = 0,       // not a refusal: the connection went back to the pool
  kResponseNotDone,    // response not fully read or framing unknown/close-delimited
  kUpstreamClose,      // upstream said Connection: close (or HTTP/1.0 without keep-alive)
  kRequestNotSent,     // request body not fully sent
  kError,              // parse error, I/O error or timeout on the exchange
  kMaxRequests,        // pool.max_requests reached
  kMaxLifetime,        // pool.max_lifetime reached
  kExiting,            // worker is draining or stopping
  kUnreadBytes,        // bytes arrived after the response
  kPoolFull,           // max_idle idle connections already pooled
  kYielded,            // at max_conns, and requests of other workers wait for a place
  kClientGone,         // the client went away mid-exchange
  kRetired,            // the address left the server's DNS answer
  kUpstreamMax,        // the upstream's Keep-Alive header said max=0 or 1: no further request
  kCount
};
const char* toString(NoReuse reason);

struct ServerCounters {
  // (open = idle + active: derived when read, never stored, so that a reader
  // between two of the owner's updates still sees open == idle + active)
  std::atomic<uint64_t> idle{0};    // in the pool, waiting for a request
  std::atomic<uint64_t> active{0};  // carrying a request (or connecting for one)
  std::atomic<uint64_t> opened_total{0};  // new connections established
  std::atomic<uint64_t> reused_total{0};  // requests sent on a pooled connection
  std::atomic<uint64_t> failed_total{0};  // connect failures, I/O errors, bad responses
  std::atomic<uint64_t> closed_idle_total{0};  // idle pooled connections closed (EOF, timeout)
  std::atomic<uint64_t> requests_total{0};     // requests sent to this server
  std::atomic<uint64_t> queued{0};             // requests waiting for a connection (max_conns)
  std::atomic<uint64_t> queue_timeouts_total{0};  // waits that ended in 503
  std::atomic<uint64_t> fails_total{0};        // connect failures counted by passive health
  std::atomic<uint64_t> retries_total{0};      // requests moved on to another attempt
  std::atomic<uint64_t> tls_handshakes_total{0};  // upstream TLS handshakes completed
  std::atomic<uint64_t> tls_resumed_total{0};     // ...of which resumed a session
  std::atomic<uint64_t> trimmed_total{0};   // surplus idle connections closed (beyond max_idle, idle trim_after)
  std::atomic<uint64_t> direct_total{0};    // releases that went straight to a request waiting here
  std::atomic<uint64_t> expired_total{0};   // idle connections dropped at the upstream's Keep-Alive timeout
  std::atomic<uint64_t> handed_total{0};    // idle connections sent to a request waiting in another worker
  std::atomic<uint64_t> received_total{0};  // ...and received from another worker
  // Demand: the peak of `active` per window of kDemandWindowMs, rolled by
  // the owner when a connection becomes active; read with demandAt().
  std::atomic<uint64_t> demand_current{0};    // peak in the window that started at demand_window_ms
  std::atomic<uint64_t> demand_previous{0};   // peak in the window before it
  std::atomic<uint64_t> demand_window_ms{0};  // CLOCK_MONOTONIC ms
  std::atomic<uint64_t> no_reuse_total[static_cast<int>(NoReuse::kCount)]{};

  static void add(std::atomic<uint64_t>& c, uint64_t n = 1) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  static void set(std::atomic<uint64_t>& c, uint64_t value) { c.store(value, std::memory_order_relaxed); }
  static void sub(std::atomic<uint64_t>& c, uint64_t n = 1) {
    c.store(c.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  static uint64_t get(const std::atomic<uint64_t>& c) {
    return c.load(std::memory_order_relaxed);
  }
};

inline constexpr uint64_t kDemandWindowMs = 10000;

// The peak of concurrent requests on a server over the last one or two
// demand windows, as of `now_ms` (CLOCK_MONOTONIC): 0 once two windows have
// passed without a request.
inline uint64_t demandAt(const ServerCounters& c, uint64_t now_ms) {
  const uint64_t start = ServerCounters::get(c.demand_window_ms);
  const uint64_t current = ServerCounters::get(c.demand_current);
  if (now_ms >= start + 2 * kDemandWindowMs) return 0;
  if (now_ms >= start + kDemandWindowMs) return current;
  const uint64_t previous = ServerCounters::get(c.demand_previous);
  return current > previous ? current : previous;
}

}  // namespace poolgate
