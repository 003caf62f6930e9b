// Idle upstream connections moving between workers.
//
// Under pool.max_conns the requests of all workers queue for the same few
// connections. A connection that one worker releases while the oldest
// waiting request is another worker's is not closed (which would only free a
// place for a new connection: a handshake on both sides, a TIME_WAIT here,
// CPU on the app server); the socket itself goes to that worker, SCM_RIGHTS
// through the master (process/handover.h). These are the pieces the pool needs
// for it; the transport is the proxy's.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace poolgate {

// Worker slots an instance has (live and draining workers); the stats
// segment's table of workers has as many.
inline constexpr size_t kMaxPoolSlots = 128;

// The requests waiting for one server, across all workers, in order of
// arrival: a request takes the next ticket when it queues, and each worker
// publishes the ticket of its oldest waiting request (0: none, or already
// claimed by a connection on its way). The smallest ticket is the oldest
// request of the instance. Lives in shared memory, one per server.
struct WaiterTickets {
  std::atomic<uint64_t> next{1};
  std::atomic<uint64_t> first[kMaxPoolSlots]{};
};

// What travels with a handed socket: enough for the receiving worker to pool
// it as if it had opened it itself.
struct HandOverNote {
  int32_t server = -1;        // the server's shared entry: both workers know it by this
  uint32_t target = 0;        // the receiving worker's slot
  uint64_t sequence = 0;      // set by the master: its count of messages to the target
  uint64_t created_ms = 0;    // CLOCK_MONOTONIC, the same in every process (max_lifetime)
  uint64_t idle_ms = 0;        // how long it had been idle when it left
  uint64_t requests_served = 0;            // pool.max_requests goes on counting
  uint64_t idle_limit_ms = UINT64_MAX;     // from the upstream's Keep-Alive timeout
};

// Carries a socket to another worker.
class PoolCourier {
 public:
  // Sends `fd` with `note` to the worker in note.target. The descriptor is
  // closed here in every case (in flight, the kernel holds its own
  // reference). false: it could not leave; the connection is gone.
  virtual bool send(int fd, const HandOverNote& note) noexcept = 0;

 protected:
  ~PoolCourier() = default;
};

}  // namespace poolgate
