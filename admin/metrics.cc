// /metrics: Prometheus text exposition 0.0.4 (admin_render.h).
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "admin/admin_render.h"
#include "admin/snapshot.h"
#include "admin/text.h"

namespace poolgate {

using namespace render;

namespace {

struct Labels {
  std::string buf;                                // all label sets, back to back
  std::vector<std::pair<size_t, size_t>> worker;  // per Snapshot::workers entry
  std::vector<std::pair<size_t, size_t>> server;  // per Snapshot::servers entry

  std::string_view get(std::pair<size_t, size_t> r) const {
    return std::string_view(buf).substr(r.first, r.second);
  }
};

void buildLabels(const Snapshot& s, Labels& l) {
  l.buf.reserve(s.workers.size() * 48 + s.servers.size() * 128);
  l.worker.resize(s.workers.size());
  l.server.resize(s.servers.size());
  for (size_t i = 0; i < s.workers.size(); ++i) {
    const WorkerSnap& w = s.workers[i];
    const size_t begin = l.buf.size();
    l.buf.append("worker=\"");
    appendUint(l.buf, w.slot);
    l.buf.append("\",pid=\"");
    appendInt(l.buf, w.pid);
    l.buf.append("\",generation=\"");
    appendUint(l.buf, w.generation);
    l.buf.push_back('"');
    const size_t worker_len = l.buf.size() - begin;
    l.worker[i] = {begin, worker_len};

    size_t next_server = w.server_begin;
    for (size_t u = 0; u < w.upstream_count; ++u) {
      const UpstreamSnap& us = s.upstreams[w.upstream_begin + u];
      for (uint32_t k = 0; k < us.servers; ++k, ++next_server) {
        const size_t sb = l.buf.size();
        l.buf.append(l.buf, begin, worker_len);
        l.buf.append(",upstream=\"");
        appendLabelValue(l.buf, us.name.view());
        l.buf.append("\",server=\"");
        appendLabelValue(l.buf, s.servers[next_server].address.view());
        l.buf.push_back('"');
        l.server[next_server] = {sb, l.buf.size() - sb};
      }
    }
  }
}

void family(std::string& out, std::string_view name, std::string_view type,
            std::string_view help) {
  out.append("# HELP ");
  out.append(name);
  out.push_back(' ');
  out.append(help);
  out.append("\n# TYPE ");
  out.append(name);
  out.push_back(' ');
  out.append(type);
  out.push_back('\n');
}

// name{labels[,extra]} value
void sampleStart(std::string& out, std::string_view name, std::string_view labels,
                 std::string_view extra = {}) {
  out.append(name);
  if (!labels.empty() || !extra.empty()) {
    out.push_back('{');
    out.append(labels);
    if (!labels.empty() && !extra.empty()) out.push_back(',');
    out.append(extra);
    out.push_back('}');
  }
  out.push_back(' ');
}

void sample(std::string& out, std::string_view name, std::string_view labels, uint64_t v,
            std::string_view extra = {}) {
  sampleStart(out, name, labels, extra);
  appendUint(out, v);
  out.push_back('\n');
}

template <typename Get>
void workerFamily(std::string& out, const Snapshot& s, const Labels& l, std::string_view name,
                  std::string_view type, std::string_view help, Get get) {
  family(out, name, type, help);
  for (size_t i = 0; i < s.workers.size(); ++i) {
    sample(out, name, l.get(l.worker[i]), get(s.workers[i]));
  }
}

template <typename Get>
void serverFamily(std::string& out, const Snapshot& s, const Labels& l, std::string_view name,
                  std::string_view type, std::string_view help, Get get) {
  family(out, name, type, help);
  for (size_t i = 0; i < s.servers.size(); ++i) {
    sample(out, name, l.get(l.server[i]), get(s.servers[i]));
  }
}

// The instance: build, generation, uptime, workers by state.
void instanceMetrics(std::string& out, const Snapshot& s, const RenderContext& ctx) {
  family(out, "poolgate_info", "gauge", "Build and configuration of this poolgate (always 1).");
  out.append("poolgate_info{version=\"");
  appendLabelValue(out, ctx.version);
  out.append("\",accept_mode=\"");
  appendLabelValue(out, s.accept_mode.view());
  out.append("\"} 1\n");

  family(out, "poolgate_master_generation", "gauge",
         "Current generation of the master (incremented by each reload).");
  sample(out, "poolgate_master_generation", {}, s.generation);

  family(out, "poolgate_uptime_seconds", "gauge", "Seconds since the master started.");
  sampleStart(out, "poolgate_uptime_seconds", {});
  appendMsAsSeconds(out, msSince(s.started_ms, ctx.now_ms));
  out.push_back('\n');

  {
    uint64_t running = 0, draining = 0;
    for (const WorkerSnap& w : s.workers) (w.state == SlotState::kDraining ? draining : running)++;
    family(out, "poolgate_workers", "gauge", "Live worker processes by state.");
    sample(out, "poolgate_workers", {}, running, "state=\"running\"");
    sample(out, "poolgate_workers", {}, draining, "state=\"draining\"");
  }
}

void workerMetrics(std::string& out, const Snapshot& s, const Labels& l) {
  workerFamily(out, s, l, "poolgate_worker_accepted_total", "counter",
               "Client connections accepted by the worker (proxy listeners only).",
               [](const WorkerSnap& w) { return w.accepted; });
  workerFamily(out, s, l, "poolgate_worker_requests_total", "counter",
               "Responses completed by the worker (proxy listeners only).",
               [](const WorkerSnap& w) { return w.requests; });

  family(out, "poolgate_worker_clients", "gauge",
         "Client connections of the worker: active (an exchange in progress) or idle "
         "(keep-alive, between requests).");
  for (size_t i = 0; i < s.workers.size(); ++i) {
    sample(out, "poolgate_worker_clients", l.get(l.worker[i]), s.workers[i].clients_active,
           "state=\"active\"");
    sample(out, "poolgate_worker_clients", l.get(l.worker[i]), s.workers[i].clients_idle,
           "state=\"idle\"");
  }

  // HTTP/2 clients: their connections are among the clients above.
  workerFamily(out, s, l, "poolgate_worker_http2_connections", "gauge",
               "HTTP/2 client connections the worker has open (counted in poolgate_worker_clients too).",
               [](const WorkerSnap& w) { return w.h2.connections; });
  workerFamily(out, s, l, "poolgate_worker_http2_streams", "gauge",
               "HTTP/2 streams open now on the worker's client connections.",
               [](const WorkerSnap& w) { return w.h2.streams_open; });
  workerFamily(out, s, l, "poolgate_worker_http2_streams_total", "counter",
               "HTTP/2 streams that carried a request.",
               [](const WorkerSnap& w) { return w.h2.streams; });
  family(out, "poolgate_worker_http2_resets_total", "counter",
         "HTTP/2 streams reset (RST_STREAM), by direction: sent by the worker or received from "
         "the client.");
  for (size_t i = 0; i < s.workers.size(); ++i) {
    sample(out, "poolgate_worker_http2_resets_total", l.get(l.worker[i]), s.workers[i].h2.resets_sent,
           "direction=\"sent\"");
    sample(out, "poolgate_worker_http2_resets_total", l.get(l.worker[i]),
           s.workers[i].h2.resets_received, "direction=\"received\"");
  }
  workerFamily(out, s, l, "poolgate_worker_http2_goaways_total", "counter",
               "HTTP/2 GOAWAY frames sent to clients (draining, errors).",
               [](const WorkerSnap& w) { return w.h2.goaways_sent; });

  workerFamily(out, s, l, "poolgate_worker_accept_wakeups_total", "counter",
               "Times the worker woke up to accept.",
               [](const WorkerSnap& w) { return w.accept_wakeups; });
  workerFamily(out, s, l, "poolgate_worker_accept_empty_total", "counter",
               "Accept wake-ups that found no connection.",
               [](const WorkerSnap& w) { return w.accept_empty; });
  workerFamily(out, s, l, "poolgate_worker_admin_accepted_total", "counter",
               "Admin listener connections accepted by the worker, denied ones included.",
               [](const WorkerSnap& w) { return w.admin_accepted; });
  workerFamily(out, s, l, "poolgate_worker_admin_connections", "gauge",
               "Admin listener connections the worker has open.",
               [](const WorkerSnap& w) { return w.admin_active; });
  workerFamily(out, s, l, "poolgate_worker_admin_denied_total", "counter",
               "Admin listener connections from clients outside admin.allow (answered 403).",
               [](const WorkerSnap& w) { return w.admin_denied; });
  workerFamily(out, s, l, "poolgate_worker_buffered_responses_total", "counter",
               "Responses read ahead of a slow client into a spool (memory, then a temporary file).",
               [](const WorkerSnap& w) { return w.buffered; });
  workerFamily(out, s, l, "poolgate_worker_buffered_responses_disk_total", "counter",
               "Buffered responses that spilled to a temporary file.",
               [](const WorkerSnap& w) { return w.buffered_disk; });
  workerFamily(out, s, l, "poolgate_worker_buffered_requests_total", "counter",
               "Request bodies received whole before an upstream connection was taken.",
               [](const WorkerSnap& w) { return w.buffered_requests; });
  workerFamily(out, s, l, "poolgate_worker_buffered_requests_disk_total", "counter",
               "Buffered request bodies that spilled to a temporary file.",
               [](const WorkerSnap& w) { return w.buffered_requests_disk; });
  workerFamily(out, s, l, "poolgate_worker_buffered_bytes_total", "counter",
               "Request and response bytes that went through a spool.",
               [](const WorkerSnap& w) { return w.buffered_bytes; });
  workerFamily(out, s, l, "poolgate_worker_buffered_largest_bytes", "gauge",
               "The most one buffered body (request or response) held at once.",
               [](const WorkerSnap& w) { return w.buffered_largest; });
  workerFamily(out, s, l, "poolgate_worker_buffered_memory_bytes", "gauge",
               "Spool memory the worker's buffered bodies hold now.",
               [](const WorkerSnap& w) { return w.buffered_memory; });
  workerFamily(out, s, l, "poolgate_worker_buffer_errors_total", "counter",
               "Temporary file writes or reads that failed (the request refused or the response cut short).",
               [](const WorkerSnap& w) { return w.buffer_errors; });
  workerFamily(out, s, l, "poolgate_worker_upstream_time_saved_seconds_total", "counter",
               "Time upstream connections were back in the pool while clients still read their responses.",
               [](const WorkerSnap& w) { return w.time_saved_ms / 1000; });
  workerFamily(out, s, l, "poolgate_worker_draining", "gauge",
               "1 while the worker drains (old generation or stopping), else 0.",
               [](const WorkerSnap& w) { return w.state == SlotState::kDraining ? 1u : 0u; });

  family(out, "poolgate_worker_start_time_seconds", "gauge",
         "Start time of the worker since the Unix epoch, in seconds.");
  for (size_t i = 0; i < s.workers.size(); ++i) {
    sampleStart(out, "poolgate_worker_start_time_seconds", l.get(l.worker[i]));
    appendMsAsSeconds(out, s.workers[i].started_ms);
    out.push_back('\n');
  }
}

// Per server: connections and what became of them.
void serverConnectionMetrics(std::string& out, const Snapshot& s, const Labels& l) {
  family(out, "poolgate_upstream_connections", "gauge",
         "Upstream connections of the worker to the server: idle (pooled) or active "
         "(carrying a request or connecting).");
  for (size_t i = 0; i < s.servers.size(); ++i) {
    sample(out, "poolgate_upstream_connections", l.get(l.server[i]), s.servers[i].c.idle,
           "state=\"idle\"");
    sample(out, "poolgate_upstream_connections", l.get(l.server[i]), s.servers[i].c.active,
           "state=\"active\"");
  }
  serverFamily(out, s, l, "poolgate_upstream_connections_open", "gauge",
               "Upstream connections the worker holds open to the server.",
               [](const ServerSnap& v) { return v.c.open; });
  serverFamily(out, s, l, "poolgate_upstream_opened_total", "counter",
               "New upstream connections established.",
               [](const ServerSnap& v) { return v.c.opened; });
  serverFamily(out, s, l, "poolgate_upstream_reused_total", "counter",
               "Requests sent on a pooled (reused) upstream connection.",
               [](const ServerSnap& v) { return v.c.reused; });
  serverFamily(out, s, l, "poolgate_upstream_failed_total", "counter",
               "Upstream connect failures, I/O errors and bad responses.",
               [](const ServerSnap& v) { return v.c.failed; });
  serverFamily(out, s, l, "poolgate_upstream_requests_total", "counter",
               "Requests sent to the server.",
               [](const ServerSnap& v) { return v.requests; });
  serverFamily(out, s, l, "poolgate_upstream_closed_idle_total", "counter",
               "Idle pooled connections closed (EOF from the server, idle timeout).",
               [](const ServerSnap& v) { return v.closed_idle; });
  serverFamily(out, s, l, "poolgate_upstream_trimmed_total", "counter",
               "Surplus idle connections closed: beyond max_idle and idle for trim_after.",
               [](const ServerSnap& v) { return v.trimmed; });
  serverFamily(out, s, l, "poolgate_upstream_expired_total", "counter",
               "Idle connections dropped at checkout because the server's Keep-Alive timeout was near.",
               [](const ServerSnap& v) { return v.expired; });
  serverFamily(out, s, l, "poolgate_upstream_direct_total", "counter",
               "Released connections that went straight to a request waiting for the server.",
               [](const ServerSnap& v) { return v.direct; });
  serverFamily(out, s, l, "poolgate_upstream_handed_total", "counter",
               "Connections handed to a request waiting in another worker (pool.max_conns).",
               [](const ServerSnap& v) { return v.handed; });
  serverFamily(out, s, l, "poolgate_upstream_received_total", "counter",
               "Connections received from another worker for a request waiting here.",
               [](const ServerSnap& v) { return v.received; });
}

// Per server: demand, queueing, health, TLS and the reasons for not reusing.
void serverHealthMetrics(std::string& out, const Snapshot& s, const Labels& l) {
  serverFamily(out, s, l, "poolgate_upstream_demand", "gauge",
               "Peak of concurrent requests on the server over the last 10 to 20 s.",
               [](const ServerSnap& v) { return v.demand; });
  serverFamily(out, s, l, "poolgate_upstream_queued", "gauge",
               "Requests of the worker waiting for a connection (pool.max_conns).",
               [](const ServerSnap& v) { return v.queued; });
  serverFamily(out, s, l, "poolgate_upstream_queue_timeouts_total", "counter",
               "Requests answered 503 after waiting queue_timeout for a connection.",
               [](const ServerSnap& v) { return v.queue_timeouts; });
  serverFamily(out, s, l, "poolgate_upstream_fails_total", "counter",
               "Connect failures counted toward health.max_fails.",
               [](const ServerSnap& v) { return v.fails; });
  serverFamily(out, s, l, "poolgate_upstream_retries_total", "counter",
               "Requests moved on to another attempt after a failure on this server.",
               [](const ServerSnap& v) { return v.retries; });
  serverFamily(out, s, l, "poolgate_upstream_tls_handshakes_total", "counter",
               "TLS handshakes completed on new connections to the server (upstreams[].tls).",
               [](const ServerSnap& v) { return v.tls_handshakes; });
  serverFamily(out, s, l, "poolgate_upstream_tls_resumed_total", "counter",
               "Upstream TLS handshakes that resumed a session.",
               [](const ServerSnap& v) { return v.tls_resumed; });
  serverFamily(out, s, l, "poolgate_upstream_server_healthy", "gauge",
               "1 while the server is in rotation (shared by all workers: passive failures, active "
               "check, DNS), else 0.",
               [](const ServerSnap& v) { return v.healthy ? 1u : 0u; });

  std::string reason_labels[kReasons];
  for (size_t r = 1; r < kReasons; ++r) {
    reason_labels[r] = std::string("reason=\"") + toString(static_cast<NoReuse>(r)) + '"';
  }
  family(out, "poolgate_upstream_no_reuse_total", "counter",
         "Finished upstream connections closed instead of pooled, by reason.");
  for (size_t i = 0; i < s.servers.size(); ++i) {
    for (size_t r = 1; r < kReasons; ++r) {
      sample(out, "poolgate_upstream_no_reuse_total", l.get(l.server[i]),
             s.servers[i].no_reuse[r], reason_labels[r]);
    }
  }
}

}  // namespace

void renderMetrics(const StatsSegment& seg, const RenderContext& ctx, std::string& out) {
  Snapshot s;
  takeSnapshot(seg, ctx.monotonic_ms, s);
  Labels l;
  buildLabels(s, l);
  // ~25 worker samples and ~22 server samples (with the no-reuse reasons),
  // each about its label set plus 50 bytes.
  out.reserve(out.size() + 6144 + s.workers.size() * 25 * 120 +
              s.servers.size() * 22 * 200);

  instanceMetrics(out, s, ctx);
  workerMetrics(out, s, l);
  serverConnectionMetrics(out, s, l);
  serverHealthMetrics(out, s, l);

  family(out, "poolgate_upstream_connections_bound", "gauge",
         "Upper bound on pooled upstream connections: sum over live workers and their "
         "upstreams of max_idle x servers.");
  sample(out, "poolgate_upstream_connections_bound", {}, s.bound);
}

}  // namespace poolgate
