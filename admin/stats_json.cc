// /stats: one line of compact JSON (admin_render.h).
#include <string_view>

#include "admin/admin_render.h"
#include "admin/snapshot.h"
#include "admin/text.h"

namespace poolgate {

using namespace render;

namespace {

// `"key":` — keys are literals from this file, no escaping needed.
void key(std::string& out, std::string_view k) {
  out.push_back('"');
  out.append(k);
  out.append("\":");
}

void field(std::string& out, std::string_view k, uint64_t v) {
  key(out, k);
  appendUint(out, v);
  out.push_back(',');
}

void flag(std::string& out, std::string_view k, bool v) {
  key(out, k);
  out.append(v ? "true," : "false,");
}

void textField(std::string& out, std::string_view k, std::string_view v) {
  key(out, k);
  appendJsonString(out, v);
  out.push_back(',');
}

// Replaces the trailing ',' of the last member/element by `close`, or appends
// `close` to an empty object/array.
void close(std::string& out, char closer) {
  if (out.back() == ',') {
    out.back() = closer;
  } else {
    out.push_back(closer);
  }
}

void conns(std::string& out, const Conns& c) {
  field(out, "open", c.open);
  field(out, "idle", c.idle);
  field(out, "active", c.active);
  field(out, "opened_total", c.opened);
  field(out, "reused_total", c.reused);
  field(out, "failed_total", c.failed);
}

void server(std::string& out, const ServerSnap& s) {
  out.push_back('{');
  textField(out, "address", s.address.view());
  if (!s.name.view().empty()) textField(out, "name", s.name.view());
  flag(out, "in_service", s.in_service);
  flag(out, "healthy", s.healthy);
  textField(out, "check", s.check == CheckState::kPassing   ? "passing"
                          : s.check == CheckState::kFailing ? "failing"
                                                            : "none");
  conns(out, s.c);
  field(out, "fails_total", s.fails);
  field(out, "retries_total", s.retries);
  field(out, "checks_total", s.checks);
  field(out, "check_failures_total", s.check_failures);
  field(out, "tls_handshakes_total", s.tls_handshakes);
  field(out, "tls_resumed_total", s.tls_resumed);
  field(out, "requests_total", s.requests);
  field(out, "closed_idle_total", s.closed_idle);
  field(out, "trimmed_total", s.trimmed);
  field(out, "expired_total", s.expired);
  field(out, "direct_total", s.direct);
  field(out, "handed_total", s.handed);
  field(out, "received_total", s.received);
  field(out, "demand", s.demand);
  field(out, "queued", s.queued);
  field(out, "queue_timeouts_total", s.queue_timeouts);
  key(out, "no_reuse");
  out.push_back('{');
  for (size_t r = 1; r < kReasons; ++r) field(out, toString(static_cast<NoReuse>(r)), s.no_reuse[r]);
  close(out, '}');
  out.push_back('}');
}

void worker(std::string& out, const Snapshot& s, const WorkerSnap& w, uint64_t now_ms) {
  out.push_back('{');
  field(out, "slot", w.slot);
  key(out, "pid");
  appendInt(out, w.pid);
  out.push_back(',');
  field(out, "generation", w.generation);
  key(out, "state");
  appendJsonString(out, toString(w.state));
  out.push_back(',');
  field(out, "accepted", w.accepted);
  field(out, "requests", w.requests);
  key(out, "clients");
  out.push_back('{');
  field(out, "active", w.clients_active);
  field(out, "idle", w.clients_idle);
  close(out, '}');
  out.push_back(',');
  key(out, "upstream");
  out.push_back('{');
  conns(out, w.up);
  close(out, '}');
  out.push_back(',');
  field(out, "accept_wakeups", w.accept_wakeups);
  field(out, "accept_empty", w.accept_empty);
  key(out, "admin");
  out.push_back('{');
  field(out, "accepted", w.admin_accepted);
  field(out, "active", w.admin_active);
  field(out, "denied", w.admin_denied);
  close(out, '}');
  out.push_back(',');
  key(out, "buffering");
  out.push_back('{');
  field(out, "responses_total", w.buffered);
  field(out, "responses_disk_total", w.buffered_disk);
  field(out, "requests_total", w.buffered_requests);
  field(out, "requests_disk_total", w.buffered_requests_disk);
  field(out, "bytes_total", w.buffered_bytes);
  field(out, "largest_bytes", w.buffered_largest);
  field(out, "memory_bytes", w.buffered_memory);
  field(out, "errors_total", w.buffer_errors);
  key(out, "upstream_time_saved_seconds");
  appendMsAsSeconds(out, w.time_saved_ms);
  close(out, '}');
  out.push_back(',');
  key(out, "http2");
  out.push_back('{');
  field(out, "connections", w.h2.connections);
  field(out, "streams_open", w.h2.streams_open);
  field(out, "streams_total", w.h2.streams);
  field(out, "resets_sent_total", w.h2.resets_sent);
  field(out, "resets_received_total", w.h2.resets_received);
  field(out, "goaways_sent_total", w.h2.goaways_sent);
  close(out, '}');
  out.push_back(',');
  key(out, "started_seconds_ago");
  appendMsAsSeconds(out, msSince(w.started_ms, now_ms));
  out.push_back(',');

  key(out, "upstreams");
  out.push_back('[');
  size_t next_server = w.server_begin;
  for (size_t u = 0; u < w.upstream_count; ++u) {
    const UpstreamSnap& us = s.upstreams[w.upstream_begin + u];
    out.push_back('{');
    key(out, "name");
    appendJsonString(out, us.name.view());
    out.push_back(',');
    field(out, "max_idle", us.max_idle);
    key(out, "servers");
    out.push_back('[');
    for (uint32_t k = 0; k < us.servers; ++k) {
      server(out, s.servers[next_server++]);
      out.push_back(',');
    }
    close(out, ']');
    out.append("},");
  }
  close(out, ']');
  out.push_back('}');
}

}  // namespace

void renderStatsJson(const StatsSegment& seg, const RenderContext& ctx, std::string& out) {
  Snapshot s;
  takeSnapshot(seg, ctx.monotonic_ms, s);
  out.reserve(out.size() + 768 + s.workers.size() * 640 + s.upstreams.size() * 96 +
              s.servers.size() * 512);

  out.push_back('{');
  key(out, "version");
  appendJsonString(out, ctx.version);
  out.push_back(',');
  key(out, "master_pid");
  appendInt(out, s.master_pid);
  out.push_back(',');
  field(out, "generation", s.generation);
  key(out, "uptime_seconds");
  appendMsAsSeconds(out, msSince(s.started_ms, ctx.now_ms));
  out.push_back(',');
  key(out, "accept_mode");
  appendJsonString(out, s.accept_mode.view());
  out.push_back(',');

  key(out, "workers");
  out.push_back('[');
  for (const WorkerSnap& w : s.workers) {
    worker(out, s, w, ctx.now_ms);
    out.push_back(',');
  }
  close(out, ']');
  out.push_back(',');

  key(out, "totals");
  out.push_back('{');
  field(out, "accepted", s.accepted);
  field(out, "requests", s.requests);
  field(out, "clients_active", s.clients_active);
  field(out, "clients_idle", s.clients_idle);
  field(out, "upstream_open", s.up.open);
  field(out, "upstream_idle", s.up.idle);
  field(out, "upstream_active", s.up.active);
  field(out, "upstream_opened_total", s.up.opened);
  field(out, "upstream_reused_total", s.up.reused);
  field(out, "upstream_failed_total", s.up.failed);
  key(out, "reuse_ratio");
  appendRatio(out, s.up.reused, s.up.reused + s.up.opened);
  out.push_back(',');
  field(out, "workers", s.workers.size());
  field(out, "upstream_bound", s.bound);
  field(out, "admin_accepted", s.admin_accepted);
  field(out, "admin_active", s.admin_active);
  field(out, "admin_denied", s.admin_denied);
  field(out, "http2_connections", s.h2.connections);
  field(out, "http2_streams_open", s.h2.streams_open);
  field(out, "http2_streams_total", s.h2.streams);
  field(out, "http2_resets_sent_total", s.h2.resets_sent);
  field(out, "http2_resets_received_total", s.h2.resets_received);
  field(out, "http2_goaways_sent_total", s.h2.goaways_sent);
  close(out, '}');
  out.append("}\n");
}

}  // namespace poolgate
