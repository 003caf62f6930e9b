// The shared-memory segment: the master maps it before forking, every worker
// writes only its own slot, and any worker's admin endpoint renders all slots.
// Beside the stats it holds the state the processes share to work together:
// the accept lock (accept_mode "mutex"), the per-address health verdicts and
// max_conns counts with their waiter tickets (SharedServer), and the DNS
// answers the master publishes (SharedName). Fixed-size, no pointers (each
// process may map it elsewhere).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pool/counters.h"
#include "pool/handover.h"
#include "upstream/health.h"

namespace poolgate {

inline constexpr size_t kMaxWorkerSlots = kMaxPoolSlots;  // live + draining workers
inline constexpr size_t kMaxUpstreams = 32;      // per slot
inline constexpr size_t kMaxServers = 128;       // per slot, all upstreams
inline constexpr size_t kNameBytes = 64;

enum class SlotState : uint32_t {
  kFree = 0,      // not in use
  kStarting = 1,  // forked, not yet serving
  kRunning = 2,
  kDraining = 3,  // old generation or stopping: no new connections
};
const char* toString(SlotState state);

struct ServerSlot {
  char address[kNameBytes];     // "127.0.0.1:5000", NUL-terminated
  char name[kNameBytes];        // the configured name it was resolved from, "" for an IP
  uint32_t upstream;            // index into WorkerSlot::upstreams
  int32_t shared_index;         // its SharedServer entry (health, max_conns), or -1
  std::atomic<uint32_t> in_service{1};  // 0: retired (its address left the DNS answer)
  ServerCounters counters;
};

struct UpstreamSlot {
  char name[kNameBytes];
  uint32_t max_idle;            // pool.max_idle, to draw workers x max_idle
};

struct WorkerSlot {
  std::atomic<uint32_t> state{0};    // SlotState
  std::atomic<int32_t> pid{0};
  std::atomic<uint32_t> slot{0};     // worker number within its generation
  std::atomic<uint64_t> generation{0};
  std::atomic<uint64_t> started_ms{0};  // CLOCK_REALTIME, ms

  // Proxy traffic only: the admin listener's connections count below.
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> clients_active{0};  // an exchange in progress
  std::atomic<uint64_t> clients_idle{0};    // keep-alive, between requests
  std::atomic<uint64_t> accept_wakeups{0};
  std::atomic<uint64_t> accept_empty{0};

  // The admin listener (/stats, /metrics, /health, the dashboard).
  std::atomic<uint64_t> admin_accepted{0};  // connections accepted, denied ones included
  std::atomic<uint64_t> admin_active{0};    // connections open now
  std::atomic<uint64_t> admin_denied{0};    // connections from outside admin.allow (answered 403)

  // Response buffering (core/spool.h): responses read ahead of a slow client.
  std::atomic<uint64_t> buffered_total{0};          // responses that used a spool
  std::atomic<uint64_t> buffered_disk_total{0};     // ...of which spilled to a temporary file
  std::atomic<uint64_t> buffered_requests_total{0}; // request bodies collected in a spool
  std::atomic<uint64_t> buffered_requests_disk_total{0};  // ...of which spilled to a temporary file
  std::atomic<uint64_t> buffered_bytes_total{0};    // bytes that went through a spool (both ways)
  std::atomic<uint64_t> buffered_largest{0};        // the most one body held at once, bytes
  std::atomic<uint64_t> buffered_memory{0};         // in spool memory now, bytes (all bodies)
  std::atomic<uint64_t> buffer_errors_total{0};     // temporary file writes or reads that failed
  std::atomic<uint64_t> upstream_time_saved_ms_total{0};  // upstream released before the client finished

  // HTTP/2 clients (proxy/http2_connection.h): connections that speak it
  // (counted in clients_active / clients_idle as well), their streams, and
  // the resets and GOAWAYs either side sent.
  std::atomic<uint64_t> h2_connections{0};      // open now
  std::atomic<uint64_t> h2_streams_open{0};     // open now, all connections
  std::atomic<uint64_t> h2_streams_total{0};    // streams that carried a request
  std::atomic<uint64_t> h2_resets_sent_total{0};      // RST_STREAM sent
  std::atomic<uint64_t> h2_resets_received_total{0};  // RST_STREAM received
  std::atomic<uint64_t> h2_goaways_sent_total{0};     // GOAWAY sent (drain, errors)

  // Upstream connections handed over: the sequence number of the last
  // message from the master this worker has taken (see process/handover.h).
  std::atomic<uint64_t> handover_taken{0};

  // Written by the worker before it sets state = running; server_count grows
  // (release) after a new entry is filled in, when DNS adds an address.
  std::atomic<uint32_t> upstream_count{0};
  std::atomic<uint32_t> server_count{0};
  UpstreamSlot upstreams[kMaxUpstreams];
  ServerSlot servers[kMaxServers];
};

struct StatsHeader {
  std::atomic<int32_t> master_pid{0};
  std::atomic<uint64_t> generation{0};
  std::atomic<uint64_t> started_ms{0};  // master start, CLOCK_REALTIME, ms
  char accept_mode[16];
  // accept_mode "mutex": the pid of the worker allowed to accept, 0 = free.
  std::atomic<int32_t> accept_lock{0};
};

// One upstream address as ALL workers share it: its health verdict, and its
// connection count for pool.max_conns. The master adds the entries (the one
// writer of the table, before forking or before publishing a DNS answer);
// workers only look them up, then count with compare-and-swap.
inline constexpr size_t kMaxSharedServers = 512;
struct SharedServer {
  std::atomic<uint32_t> used{0};
  char key[2 * kNameBytes];  // "upstream name" NUL "address"
  std::atomic<int32_t> conns{0};
  std::atomic<int32_t> waiters{0};  // requests queued for a place, all workers
  WaiterTickets tickets;            // ...and their order of arrival
  SharedHealth health;
};

// The addresses one configured server name resolves to, written by the
// master's resolver, read by the workers. A sequence lock: `version` is odd
// while the master writes; a reader copies, then checks it did not move.
inline constexpr size_t kMaxSharedNames = 128;
inline constexpr size_t kMaxNameAddresses = 16;
struct SharedName {
  std::atomic<uint32_t> used{0};
  char key[2 * kNameBytes];  // "upstream name" NUL "name:port" as configured
  std::atomic<uint64_t> version{0};
  uint32_t count;                                // addresses valid below
  char addresses[kMaxNameAddresses][kNameBytes];  // "10.0.0.1:5000"
};

struct StatsSegment {
  StatsHeader header;
  SharedServer shared[kMaxSharedServers];
  SharedName names[kMaxSharedNames];
  WorkerSlot workers[kMaxWorkerSlots];
};

// The entry for (upstream, address), or -1. addSharedServer() creates it if
// missing (master only) and returns -1 when the table is full.
int findSharedServer(const StatsSegment& segment, std::string_view upstream, std::string_view address);
int addSharedServer(StatsSegment& segment, std::string_view upstream, std::string_view address);

// The same for configured names (master adds, workers find).
int findSharedName(const StatsSegment& segment, std::string_view upstream, std::string_view name);
int addSharedName(StatsSegment& segment, std::string_view upstream, std::string_view name);

// Sequence-locked access to a SharedName's address list.
void publishAddresses(SharedName& entry, const std::vector<std::string>& addresses);
// Copies a consistent list; returns the version it read (even).
uint64_t readAddresses(const SharedName& entry, std::vector<std::string>* addresses);

}  // namespace poolgate
