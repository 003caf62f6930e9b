#include "proxy/exchange.h"

#include <errno.h>
#include <string.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "core/log.h"
#include "http/request_reader.h"
#include "proxy/client_host.h"

namespace poolgate {

Exchange::Exchange(BufferPool& buffers) : held(buffers), out(buffers) {}

void Exchange::attach(ExchangeOwner& owner, ClientHost& host, const IpAddress& peer, bool over_tls,
                      bool admin_listener) {
  owner_ = &owner;
  host_ = &host;
  client_ip = peer.text();
  tls = over_tls;
  admin = admin_listener;
  record.started_ms = host.loop().now();
}

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

bool Exchange::requestPending() const {
  if (request_complete) return false;
  return reader().bodyPending();
}

void Exchange::start() {
  const RequestReader& request = reader();
  const char* base = request.base();
  const RouteConfig* route = host_->route(hostWithoutPort(request.host()), request.target().path);
  if (route == nullptr) {
    respondError(404, requestPending());
    return;
  }
  group = &host_->upstream(route->upstream_index);
  route_buffers = route->response_buffering;
  // Copied: a retry picks again after the head has left the read buffer.
  hash_value.clear();
  if (!group->hashHeader().empty()) hash_value.assign(findHeader(request.head(), base, group->hashHeader()));
  if (host_->config().buffering.request && route->request_buffering && !upgrade && request.bodyPending()) {
    collectBody();
    return;
  }
  if (!connectUpstream()) return;  // an error response is on its way
  // (Queued for max_conns, the head and body wait in held until a connection comes.)
  Buffer* sink = requestSink();
  Server& server = group->server(static_cast<size_t>(upstream != nullptr ? server_index : queued_server));
  writeForwardedRequestHead(*sink, request.parser(), base, forwardContext(server.name()));
  answerExpectation();  // the body streams when it comes
  // Not sent yet: parseClient() flushes once the reader has taken all it read.
}

ForwardContext Exchange::forwardContext(std::string_view fallback_host) const {
  const RequestReader& request = reader();
  const std::string_view host = request.host();
  return ForwardContext{client_ip.c_str(), tls ? "https" : "http", host.empty() ? fallback_host : host,
                        request.target().forward,
                        upgrade ? findHeader(request.head(), request.base(), "upgrade") : std::string_view()};
}

void Exchange::answerExpectation() {
  if (!expect_continue || reader().versionMinor() < 1) return;
  // We answer the expectation ourselves: the upstream never sees it.
  out.append("HTTP/1.1 100 Continue\r\n\r\n");
  owner_->flushClient();
}

// ---- Request buffering -----------------------------------------------------------

void Exchange::collectBody() {
  body_path = BodyPath::kCollect;
  // The head leaves the read buffer as the body comes: forwarded now, all
  // but its framing, which depends on how much body there will be.
  host_missing = reader().host().empty();
  writeForwardedRequestFields(held, reader().parser(), reader().base(), forwardContext({}));
  answerExpectation();
}

void Exchange::storeBody(std::string_view bytes) {
  if (!body_spool) body_spool = std::make_unique<Spool>(host_->buffers(), host_->spoolBudget(), host_->spoolLimits());
  if (!body_spool->append(bytes)) {
    bodySpoolFailed();
    return;
  }
  ServerCounters::set(host_->stats().buffered_memory, host_->spoolBudget().in_use);
  if (body_path == BodyPath::kSpooled) {
    pumpBody();
  } else if (body_spool->full()) {
    sendCollectedBody();  // larger than memory and max_temp_file allow: the rest streams
  }
}

void Exchange::sendCollectedBody() {
  // Whole, the body goes with a Content-Length, whatever its framing was
  // (what app servers handle best). Not whole, the rest streams, chunked if
  // it came chunked.
  const bool whole = request_complete;
  body_path = BodyPath::kSpooled;
  body_rechunk = !whole && request_chunked;
  const uint64_t length = whole ? (body_spool ? body_spool->size() : 0) : reader().parser().declaredLength();
  if (!connectUpstream()) return;  // an error response is on its way
  if (host_missing) {
    const int index = upstream != nullptr ? server_index : queued_server;
    appendHeader(held, "Host", group->server(static_cast<size_t>(index)).name());
  }
  endForwardedRequestHead(held, body_rechunk, !body_rechunk, length);
  if (upstream == nullptr) return;  // queued: onPoolAvailable() sends held
  upstream->output().append(held.data(), held.size());
  held.clear();
  held.releaseIfEmpty();
  pumpBody();
}

void Exchange::pumpBody() {
  if (pumping) {  // from flush(), through onUpstreamDrained(): the loop below goes on
    pump_again = true;
    return;
  }
  pumping = true;
  do {
    pump_again = false;
    if (upstream == nullptr) break;
    Buffer& sink = upstream->output();
    while (body_spool && !body_spool->empty() && upstream->pendingOutput() < kHighWatermark) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(body_spool->size(), kHighWatermark));
      size_t moved = 0;
      if (body_rechunk) {
        Buffer piece(host_->buffers());
        moved = body_spool->drainInto(piece, want);
        appendBodyPiece(sink, Framing::kChunked, piece.data(), moved);
      } else {
        moved = body_spool->drainInto(sink, want);
      }
      if (moved == 0) {
        pumping = false;
        bodySpoolFailed();
        return;
      }
      body_started = true;
    }
    if (body_rechunk && !body_end_sent && request_complete && (!body_spool || body_spool->empty())) {
      sink.append("0\r\n\r\n");
      body_end_sent = true;
    }
    ServerCounters::set(host_->stats().buffered_memory, host_->spoolBudget().in_use);
    upstream->flush();  // may end in onUpstreamDrained() (another round) or an error
  } while (pump_again && owner_->clientState() == ClientState::kExchange && !requestSent() && body_spool &&
           !body_spool->empty());
  pumping = false;
}

void Exchange::bodySpoolFailed() {
  const int error = errno;
  ServerCounters::add(host_->stats().buffer_errors_total);
  if (host_->bufferLog().admit(strerror(error))) {
    LOG_ERROR("request buffering: temporary file in %s: %s; request refused", host_->spoolLimits().directory.c_str(),
              strerror(error));
  }
  record.error = "buffer_failed";
  // Collecting, nothing has reached an upstream: 507. Sending, the upstream
  // has part of the request: that connection goes, and the client gets 502.
  const int status = body_path == BodyPath::kCollect ? 507 : 502;
  abandonUpstream(NoReuse::kRequestNotSent);
  respondError(status, true);
}

size_t Exchange::pendingRequestBytes() const {
  if (body_path != BodyPath::kDirect) {
    // The spool takes what comes, up to its caps.
    if (discardingBody()) return 0;
    return body_spool && body_spool->full() ? SIZE_MAX : 0;
  }
  if (upstream != nullptr) return upstream->pendingOutput();
  if (discardingBody()) return 0;  // read and dropped
  if (queued_server >= 0) return held.size();
  return SIZE_MAX;  // nowhere to put request bytes
}

void Exchange::onRequestBody(RequestReader::Event event) {
  // (Counted against max_body_bytes by the reader, also while the body is
  // read and dropped after the app has answered: discardingBody().)
  if (body_path != BodyPath::kDirect) {
    // Decoded bytes only: the framing it goes with is ours (sendCollectedBody()).
    if (event == RequestReader::Event::kBody && !discardingBody()) storeBody(reader().body());
    return;
  }
  Buffer* sink = requestSink();
  if (sink == nullptr) return;  // discarded
  if (event == RequestReader::Event::kBody) body_started = true;
  reader().forward(*sink);  // re-chunked for a chunked request
}

bool Exchange::onRequestEvent(RequestReader::Event event) {
  switch (event) {
    case RequestReader::Event::kNeedMore:
      if (upstream != nullptr) upstream->flush();
      return false;
    case RequestReader::Event::kHead:
      return true;  // the owner's
    case RequestReader::Event::kChunkStart:
    case RequestReader::Event::kBody:
    case RequestReader::Event::kChunkEnd:
      onRequestBody(event);
      return true;
    case RequestReader::Event::kComplete:
      onRequestComplete();
      return false;
    case RequestReader::Event::kError:
      onRequestError();
      return false;
  }
  return false;
}

void Exchange::onRequestComplete() {
  request_complete = true;
  if (body_path == BodyPath::kCollect) {
    sendCollectedBody();
    return;
  }
  if (body_path == BodyPath::kSpooled) {
    pumpBody();  // the last chunk, after the spool, where one is due
  } else if (Buffer* sink = requestSink(); sink != nullptr) {
    reader().forward(*sink);  // the last chunk
  }
  // The rest (pipelined requests) waits for its turn.
  if (upstream != nullptr) {
    upstream->flush();
    // The request's end releases a response held until then (holdsResponse()).
    if (response_held && owner_->clientState() == ClientState::kExchange) owner_->flushClient();
  } else if (response_complete) {
    owner_->flushClient();  // a local answer (or a held response) waited for the request's end
  }
}

void Exchange::onRequestError() {
  const RequestReader& request = reader();
  if (request.bodyTooLarge()) {
    refuseOversizedBody();
    return;
  }
  if (response_started && !response_held) {
    owner_->closeClient();
    return;
  }
  if (request.errorStatus() == 400) {
    LOG_DEBUG("client %s: bad request: %s (%s)", client_ip.c_str(), request.errorName(), request.errorReason());
  }
  respondError(request.errorStatus(), true);
}

void Exchange::refuseOversizedBody() {
  // What was queued for the upstream and not sent yet goes with the
  // connection, which can never carry another request: its body is cut.
  abandonUpstream(NoReuse::kRequestNotSent);
  record.error = "body_too_large";
  if (response_started && !response_held) {
    owner_->closeClient();  // response bytes went out: cut it, never let it pass as complete
    return;
  }
  respondError(413, true);  // replaces a held response
}

bool Exchange::holdsResponse() const {
  return request_chunked && !request_complete && host_->config().limits.max_body_bytes != 0;
}

bool Exchange::discardingBody() const {
  return response_held && upstream == nullptr && !request_complete && owner_->clientState() == ClientState::kExchange;
}

void Exchange::dropHeldResponse() {
  if (!response_held) return;
  out.clear();  // none of it was sent (nothing was before it: see writeResponseHead)
  response_held = false;
  response_started = false;
  framing = Framing::kNone;
}

// ---- Answers made here -----------------------------------------------------------

void Exchange::respond(int status, std::string_view content_type, std::string_view body, bool close_after,
                       std::string_view headers) {
  beginAnswer(status, close_after);
  writeLocalResponse(out, status, content_type, body, keep_alive, head_request, headers);
  sendAnswer();
}

void Exchange::beginAnswer(int status, bool close_after) {
  abandonUpstream(NoReuse::kError);  // an error answer replaces the exchange
  if (close_after || host_->draining()) keep_alive = false;
  response_started = true;
  record.status = status;
  completeResponse();
}

void Exchange::sendAnswer() {
  if (!keep_alive) owner_->setClientState(ClientState::kClosing);
  // With keep-alive, the rest of the request (if any) must be read first.
  if (keep_alive && !request_complete) return;
  owner_->flushClient();
}

void Exchange::respondError(int status, bool close_after) {
  dropHeldResponse();  // none of it went out: the error answer takes its place
  if (response_started) {
    owner_->closeClient();
    return;
  }
  const ClientState state = owner_->clientState();
  if (state == ClientState::kHead || state == ClientState::kIdle) owner_->setClientState(ClientState::kExchange);
  beginAnswer(status, close_after);
  writeErrorResponse(out, status, keep_alive, head_request,
                     admin ? kAdminHeaders : std::string_view());
  sendAnswer();
}

// The whole response is produced (its last bytes may still be on their way
// out). It counts in `requests` now, so that /stats, read by a client that
// has just received it, already shows it.
void Exchange::completeResponse() {
  if (response_complete) return;  // a held response replaced by an error answer: counted once
  response_complete = true;
  if (!admin) host_->onRequestDone();
}

// ---- The upstream connection ----------------------------------------------------

void Exchange::use(UpstreamConnection* conn, uint64_t now) {
  upstream = conn;
  conn->beginRequest(head_request);
  record.upstream = conn->server().name();
  record.upstream_started_ms = now;
  record.upstream_reused = conn->reused();
}

void Exchange::leaveQueue() {
  if (queued_server < 0) return;
  group->server(static_cast<size_t>(queued_server)).pool().dequeue(*this);
  queued_server = -1;
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

bool Exchange::spoolResponseBody(const char* at, size_t length) {
  ClientHost& host = *host_;
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
  if (spool.peak() > ServerCounters::get(stats.buffered_largest)) {
    ServerCounters::set(stats.buffered_largest, spool.peak());
  }
}
}  // namespace

void Exchange::endSpools() {
  ClientHost& host = *host_;
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
