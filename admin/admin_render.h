// Renderers for the admin listener: /stats (JSON), /metrics (Prometheus text
// exposition 0.0.4) and / (the HTML dashboard).
//
// Pure functions: they read a StatsSegment (relaxed loads; the owning workers
// may be writing concurrently), append to `out` and do no I/O. Each render
// takes one snapshot of the segment first (admin/snapshot.h), so within one
// answer the per-worker sums, the totals and the per-server figures agree with
// each other. stats_json.cc, metrics.cc and dashboard.cc write the three.
//
// Which workers are shown: slots in state running or draining (free and
// starting slots are skipped), sorted by generation, then slot number.
#pragma once

#include <cstdint>
#include <string>

#include "shm/stats_segment.h"

namespace poolgate {

struct RenderContext {
  std::string version;  // e.g. POOLGATE_VERSION
  uint64_t now_ms = 0;  // CLOCK_REALTIME, ms (uptime = now_ms - header.started_ms)
  uint64_t monotonic_ms = 0;  // CLOCK_MONOTONIC, ms (health verdicts are kept in it)
};

// One line of compact JSON followed by "\n". Fields as in README "What /stats
// shows", where `accepted`, `requests` and `clients` count proxy traffic only;
// plus: per worker accept_wakeups, accept_empty (proxy listeners only),
// admin {accepted, active, denied} (the admin listener's connections: accepted,
// open now, refused by admin.allow), http2 {connections, streams_open (both
// open now), streams_total, resets_sent_total, resets_received_total,
// goaways_sent_total} (HTTP/2 clients), started_seconds_ago; per
// upstream max_idle; per server requests_total, closed_idle_total,
// tls_handshakes_total, tls_resumed_total (upstream TLS), no_reuse
// {reason: count} (all reasons but "reusable"); in totals
// upstream_opened_total, upstream_reused_total, upstream_failed_total,
// reuse_ratio = reused / (reused + opened) (0 when both are 0), workers (count)
// and upstream_bound = sum over workers and their upstreams of max_idle x
// servers (the "workers x max_idle" bound on pooled connections),
// admin_accepted, admin_active, admin_denied (sums of the workers' admin),
// http2_connections, http2_streams_open, http2_streams_total,
// http2_resets_sent_total, http2_resets_received_total, http2_goaways_sent_total
// (sums of the workers' http2).
void renderStatsJson(const StatsSegment& seg, const RenderContext& ctx, std::string& out);

// Prometheus text exposition format 0.0.4 (Content-Type:
// "text/plain; version=0.0.4; charset=utf-8"). No timestamps.
void renderMetrics(const StatsSegment& seg, const RenderContext& ctx, std::string& out);

// A self-contained HTML page (inline CSS and JS, no external resources) that
// polls /stats every second and draws a chart of the last 5 minutes.
void renderDashboard(const RenderContext& ctx, std::string& out);

// The Content-Security-Policy the dashboard is served with: nothing by
// default, its own inline <script> and <style> by SHA-256 (hashed from the
// page text, so an edit of the page cannot leave a stale hash behind), fetch()
// to its own origin only, no framing. Computes the hashes on each call: the
// admin code keeps the result.
std::string dashboardContentSecurityPolicy();

}  // namespace poolgate
