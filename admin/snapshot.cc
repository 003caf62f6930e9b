#include "admin/snapshot.h"

#include <algorithm>
#include <cstring>

namespace poolgate::render {

namespace {

// Copies a NUL-terminated (or full-length) name out of shared memory.
template <size_t N>
void copyName(Name& to, const char (&from)[N]) {
  static_assert(N <= kNameBytes);
  std::memcpy(to.bytes, from, N);
  to.len = strnlen(to.bytes, N);
}

uint64_t load(const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); }

// The worker's own figures (not its upstreams and servers).
void readWorker(const WorkerSlot& w, size_t index, SlotState state, WorkerSnap& ws) {
  ws.index = index;
  ws.state = state;
  ws.pid = w.pid.load(std::memory_order_relaxed);
  ws.slot = w.slot.load(std::memory_order_relaxed);
  ws.generation = load(w.generation);
  ws.started_ms = load(w.started_ms);
  ws.accepted = load(w.accepted);
  ws.requests = load(w.requests);
  ws.clients_active = load(w.clients_active);
  ws.clients_idle = load(w.clients_idle);
  ws.accept_wakeups = load(w.accept_wakeups);
  ws.accept_empty = load(w.accept_empty);
  ws.admin_accepted = load(w.admin_accepted);
  ws.admin_active = load(w.admin_active);
  ws.admin_denied = load(w.admin_denied);
  ws.buffered = load(w.buffered_total);
  ws.buffered_disk = load(w.buffered_disk_total);
  ws.buffered_requests = load(w.buffered_requests_total);
  ws.buffered_requests_disk = load(w.buffered_requests_disk_total);
  ws.buffered_bytes = load(w.buffered_bytes_total);
  ws.buffered_largest = load(w.buffered_largest);
  ws.buffered_memory = load(w.buffered_memory);
  ws.buffer_errors = load(w.buffer_errors_total);
  ws.time_saved_ms = load(w.upstream_time_saved_ms_total);
  ws.h2.connections = load(w.h2_connections);
  ws.h2.streams_open = load(w.h2_streams_open);
  ws.h2.streams = load(w.h2_streams_total);
  ws.h2.resets_sent = load(w.h2_resets_sent_total);
  ws.h2.resets_received = load(w.h2_resets_received_total);
  ws.h2.goaways_sent = load(w.h2_goaways_sent_total);
}

void readServer(const StatsSegment& seg, const ServerSlot& src, uint32_t u, uint64_t monotonic_ms,
                ServerSnap& ss) {
  copyName(ss.address, src.address);
  ss.upstream = u;
  copyName(ss.name, src.name);
  ss.in_service = src.in_service.load(std::memory_order_relaxed) != 0;
  // Health is shared by all workers: the verdict lives in the address's shared entry.
  const SharedServer* shared =
      src.shared_index >= 0 && static_cast<size_t>(src.shared_index) < kMaxSharedServers
          ? &seg.shared[src.shared_index]
          : nullptr;
  ss.healthy = ss.in_service && (shared == nullptr || shared->health.healthy(monotonic_ms));
  ss.check = shared != nullptr ? static_cast<CheckState>(shared->health.check.load(std::memory_order_relaxed))
                               : CheckState::kNone;
  ss.checks = shared != nullptr ? load(shared->health.checks_total) : 0;
  ss.check_failures = shared != nullptr ? load(shared->health.check_failures_total) : 0;
  const ServerCounters& c = src.counters;
  ss.fails = load(c.fails_total);
  ss.retries = load(c.retries_total);
  ss.tls_handshakes = load(c.tls_handshakes_total);
  ss.tls_resumed = load(c.tls_resumed_total);
  ss.c.idle = load(c.idle);
  ss.c.active = load(c.active);
  ss.c.open = ss.c.idle + ss.c.active;  // derived: the invariant holds in every snapshot
  ss.c.opened = load(c.opened_total);
  ss.c.reused = load(c.reused_total);
  ss.c.failed = load(c.failed_total);
  ss.requests = load(c.requests_total);
  ss.closed_idle = load(c.closed_idle_total);
  ss.trimmed = load(c.trimmed_total);
  ss.direct = load(c.direct_total);
  ss.expired = load(c.expired_total);
  ss.handed = load(c.handed_total);
  ss.received = load(c.received_total);
  ss.demand = demandAt(c, monotonic_ms);
  ss.queued = load(c.queued);
  ss.queue_timeouts = load(c.queue_timeouts_total);
  for (size_t r = 0; r < kReasons; ++r) ss.no_reuse[r] = load(c.no_reuse_total[r]);
}

// The worker's upstreams, then its servers grouped by upstream.
void readUpstreams(const StatsSegment& seg, const WorkerSlot& w, uint64_t monotonic_ms, Snapshot& s,
                   WorkerSnap& ws) {
  const uint32_t n_up =
      std::min<uint32_t>(w.upstream_count.load(std::memory_order_relaxed), kMaxUpstreams);
  const uint32_t n_srv =
      std::min<uint32_t>(w.server_count.load(std::memory_order_relaxed), kMaxServers);

  ws.upstream_begin = s.upstreams.size();
  ws.upstream_count = n_up;
  for (uint32_t u = 0; u < n_up; ++u) {
    UpstreamSnap& us = s.upstreams.emplace_back();
    copyName(us.name, w.upstreams[u].name);
    us.max_idle = w.upstreams[u].max_idle;
    us.servers = 0;
  }

  // Servers grouped by upstream, each group in server order. A server that
  // names no valid upstream is not published and not counted.
  ws.server_begin = s.servers.size();
  for (uint32_t u = 0; u < n_up; ++u) {
    UpstreamSnap& us = s.upstreams[ws.upstream_begin + u];
    for (uint32_t k = 0; k < n_srv; ++k) {
      const ServerSlot& src = w.servers[k];
      if (src.upstream != u) continue;
      ServerSnap& ss = s.servers.emplace_back();
      readServer(seg, src, u, monotonic_ms, ss);
      ws.up.add(ss.c);
      ++us.servers;
    }
    ws.bound += uint64_t{us.max_idle} * us.servers;
  }
  ws.server_count = s.servers.size() - ws.server_begin;
}

void addToTotals(const WorkerSnap& ws, Snapshot& s) {
  s.accepted += ws.accepted;
  s.requests += ws.requests;
  s.clients_active += ws.clients_active;
  s.clients_idle += ws.clients_idle;
  s.admin_accepted += ws.admin_accepted;
  s.admin_active += ws.admin_active;
  s.admin_denied += ws.admin_denied;
  s.h2.add(ws.h2);
  s.bound += ws.bound;
  s.up.add(ws.up);
}

}  // namespace

void takeSnapshot(const StatsSegment& seg, uint64_t monotonic_ms, Snapshot& s) {
  s.workers.reserve(16);
  s.upstreams.reserve(64);
  s.servers.reserve(64);
  s.master_pid = seg.header.master_pid.load(std::memory_order_relaxed);
  s.generation = load(seg.header.generation);
  s.started_ms = load(seg.header.started_ms);
  copyName(s.accept_mode, seg.header.accept_mode);

  for (size_t i = 0; i < kMaxWorkerSlots; ++i) {
    const WorkerSlot& w = seg.workers[i];
    // Acquire: the worker fills its upstream and server tables before it
    // publishes state = running.
    const auto state = static_cast<SlotState>(w.state.load(std::memory_order_acquire));
    if (state != SlotState::kRunning && state != SlotState::kDraining) continue;

    WorkerSnap ws{};
    readWorker(w, i, state, ws);
    readUpstreams(seg, w, monotonic_ms, s, ws);
    addToTotals(ws, s);
    s.workers.push_back(ws);
  }

  std::sort(s.workers.begin(), s.workers.end(), [](const WorkerSnap& a, const WorkerSnap& b) {
    if (a.generation != b.generation) return a.generation < b.generation;
    if (a.slot != b.slot) return a.slot < b.slot;
    return a.index < b.index;
  });
}

}  // namespace poolgate::render
