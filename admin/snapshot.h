// A snapshot of the shared segment for the admin renderers (admin_render.h):
// every figure a render shows, read once (relaxed loads; the owning workers
// may be writing concurrently), so that within one answer the per-worker
// sums, the totals and the per-server figures agree with each other.
//
// Which workers are shown: slots in state running or draining (free and
// starting slots are skipped), sorted by generation, then slot number.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "shm/stats_segment.h"

namespace poolgate::render {

inline constexpr size_t kReasons = static_cast<size_t>(NoReuse::kCount);

struct Name {
  char bytes[kNameBytes];
  size_t len;
  std::string_view view() const { return {bytes, len}; }
};

struct Conns {  // the figures summed per worker and overall
  uint64_t open = 0, idle = 0, active = 0, opened = 0, reused = 0, failed = 0;
  void add(const Conns& o) {
    open += o.open; idle += o.idle; active += o.active;
    opened += o.opened; reused += o.reused; failed += o.failed;
  }
};

struct H2 {  // HTTP/2 clients, per worker and overall
  uint64_t connections = 0, streams_open = 0;  // open now
  uint64_t streams = 0, resets_sent = 0, resets_received = 0, goaways_sent = 0;  // totals
  void add(const H2& o) {
    connections += o.connections; streams_open += o.streams_open; streams += o.streams;
    resets_sent += o.resets_sent; resets_received += o.resets_received; goaways_sent += o.goaways_sent;
  }
};

struct ServerSnap {
  Name address;
  Name name;  // the configured name it was resolved from ("" for an IP)
  uint32_t upstream;
  bool in_service, healthy;
  CheckState check;
  Conns c;
  uint64_t fails, retries, checks, check_failures;
  uint64_t tls_handshakes, tls_resumed;
  uint64_t requests, closed_idle;
  uint64_t trimmed, direct, expired, demand;
  uint64_t handed, received;
  uint64_t queued, queue_timeouts;
  uint64_t no_reuse[kReasons];
};

struct UpstreamSnap {
  Name name;
  uint32_t max_idle;
  uint32_t servers;  // how many servers of the worker belong to it
};

struct WorkerSnap {
  size_t index;  // in the segment: the last sort key, for a stable order
  SlotState state;
  int32_t pid;
  uint32_t slot;
  uint64_t generation, started_ms;
  uint64_t accepted, requests, clients_active, clients_idle, accept_wakeups, accept_empty;
  uint64_t admin_accepted, admin_active, admin_denied;
  uint64_t buffered, buffered_disk, buffered_requests, buffered_requests_disk, buffered_bytes, buffered_largest, buffered_memory, buffer_errors, time_saved_ms;
  H2 h2;                                  // HTTP/2 clients
  size_t upstream_begin, upstream_count;  // into Snapshot::upstreams
  size_t server_begin, server_count;      // into Snapshot::servers, grouped by upstream
  Conns up;                               // sum over the servers
  uint64_t bound;                         // sum over upstreams of max_idle x servers
};

struct Snapshot {
  int32_t master_pid;
  uint64_t generation, started_ms;
  Name accept_mode;
  std::vector<WorkerSnap> workers;
  std::vector<UpstreamSnap> upstreams;
  std::vector<ServerSnap> servers;
  // totals over the listed workers
  uint64_t accepted = 0, requests = 0, clients_active = 0, clients_idle = 0, bound = 0;
  uint64_t admin_accepted = 0, admin_active = 0, admin_denied = 0;
  H2 h2;
  Conns up;
};

void takeSnapshot(const StatsSegment& seg, uint64_t monotonic_ms, Snapshot& s);

}  // namespace poolgate::render
