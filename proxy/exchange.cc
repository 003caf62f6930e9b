#include "proxy/exchange.h"

#include <errno.h>
#include <string.h>

#include <cstdio>
#include <memory>

#include "core/log.h"
#include "http/request_reader.h"
#include "proxy/client_host.h"

namespace poolgate {

// ---- The request and its record ----------------------------------------------

void Exchange::beginRequest(const RequestReader& reader, bool log_text) {
  const HttpHead& head = reader.head();
  const char* base = reader.base();
  head_request = reader.headRequest();
  idempotent = reader.idempotent();
  request_chunked = reader.chunked();
  keep_alive = reader.keepAlive();
  upgrade = reader.upgrade();
  expect_continue = equalsIgnoreCase(findHeader(head, base, "expect"), "100-continue");
  record_pending = true;
  record.http_minor = reader.versionMinor();
  if (!log_text) return;
  if (!record.text) record.text = std::make_unique<AccessText>();  // kept by the cache (keep())
  AccessText& text = *record.text;
  text.method.assign(head.method.view(base));
  text.target.assign(head.target.view(base));
  text.referer.assign(findHeader(head, base, "referer"));
  text.user_agent.assign(findHeader(head, base, "user-agent"));
}

void Exchange::log(AccessLog* access_log) {
  if (!record_pending) return;
  record_pending = false;
  if (access_log != nullptr) access_log->write(record, client_ip.c_str());
}

void Exchange::logClosed(AccessLog* access_log, uint64_t now) {
  if (!record_pending) return;
  if (record.status == 0) record.status = 499;  // nginx's "client closed request"
  if (record.error == nullptr) record.error = "client_closed";
  if (record.upstream_done_ms == 0) record.upstream_done_ms = now;
  log(access_log);
}

// ---- The upstream connection ----------------------------------------------------

void Exchange::use(UpstreamConnection* conn, uint64_t now) {
  upstream = conn;
  conn->beginRequest(head_request);
  record.upstream = conn->server().name();
  record.upstream_started_ms = now;
  record.upstream_reused = conn->reused();
}

void Exchange::releaseUpstream(bool draining) {
  if (upstream == nullptr) return;
  UpstreamConnection* conn = upstream;
  upstream = nullptr;
  upstream_held = false;  // nothing left to hold back
  conn->release(requestSent(), draining);
}

void Exchange::abandonUpstream(NoReuse reason) {
  if (upstream == nullptr) return;
  UpstreamConnection* conn = upstream;
  upstream = nullptr;
  upstream_held = false;
  ServerCounters& counters = conn->server().counters();
  ServerCounters::add(counters.no_reuse_total[static_cast<int>(reason)]);
  conn->close();
}

void Exchange::holdUpstream() {
  if (upstream == nullptr || upstream_held) return;
  upstream_held = true;
  upstream->pauseReading(true);
}

void Exchange::releaseHold() {
  if (!upstream_held) return;
  upstream_held = false;
  if (upstream != nullptr) upstream->pauseReading(false);
}

bool Exchange::requestSent() const {
  if (!request_complete) return false;
  if (body_spool && !body_spool->empty()) return false;
  return !body_rechunk || body_end_sent;
}

Buffer* Exchange::requestSink() {
  if (upstream != nullptr) return &upstream->output();
  if (queued_server >= 0) return &held;
  return nullptr;
}

// ---- Spools -------------------------------------------------------------------------

bool Exchange::spoolResponseBody(ClientHost& host, const char* at, size_t length) {
  if (!spool) spool = std::make_unique<Spool>(host.buffers(), host.spoolBudget(), host.spoolLimits());
  bool ok = true;
  if (framing == Framing::kChunked) {
    char line[24];
    const int n = snprintf(line, sizeof line, "%zx\r\n", length);
    ok = spool->append(line, static_cast<size_t>(n)) && spool->append(at, length) && spool->append("\r\n");
  } else {
    ok = spool->append(at, length);
  }
  WorkerSlot& stats = host.stats();
  ServerCounters::set(stats.buffered_memory, host.spoolBudget().in_use);
  if (!ok) {
    ServerCounters::add(stats.buffer_errors_total);
    if (host.bufferLog().admit(strerror(errno))) {
      LOG_ERROR("response buffering: cannot write a temporary file in %s: %s; response cut short",
                host.spoolLimits().directory.c_str(), strerror(errno));
    }
  }
  return ok;
}

namespace {
// A spool's figures, counted when it goes.
void countSpool(WorkerSlot& stats, const Spool& spool, std::atomic<uint64_t>& total, std::atomic<uint64_t>& disk) {
  if (spool.peak() == 0) return;
  ServerCounters::add(total);
  if (spool.usedFile()) ServerCounters::add(disk);
  ServerCounters::add(stats.buffered_bytes_total, spool.appended());
  if (spool.peak() > ServerCounters::get(stats.buffered_largest)) ServerCounters::set(stats.buffered_largest, spool.peak());
}
}  // namespace

void Exchange::endSpools(ClientHost& host) {
  WorkerSlot& stats = host.stats();
  if (released_ms != 0) {
    ServerCounters::add(stats.upstream_time_saved_ms_total, host.loop().now() - released_ms);
    released_ms = 0;
  }
  if (!spool && !body_spool) return;
  if (spool) countSpool(stats, *spool, stats.buffered_total, stats.buffered_disk_total);
  if (body_spool) countSpool(stats, *body_spool, stats.buffered_requests_total, stats.buffered_requests_disk_total);
  spool.reset();  // memory and temporary file go now, not when the cache reuses the exchange
  body_spool.reset();
  ServerCounters::set(stats.buffered_memory, host.spoolBudget().in_use);
}

}  // namespace poolgate
