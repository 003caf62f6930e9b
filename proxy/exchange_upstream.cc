// The exchange's upstream side: server choice, pool checkout or queueing
// (max_conns), retries, and the upstream connection's events, which relay
// the response into the exchange's `out` (proxy/exchange.h).
#include <errno.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "proxy/client_host.h"
#include "proxy/exchange.h"

namespace poolgate {

namespace {
bool startsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && equalsIgnoreCase(text.substr(0, prefix.size()), prefix);
}
}  // namespace

bool Exchange::waitForConnection(int server_index, bool at_front) {
  const PoolConfig& pool_config = group->config().pool;
  if (pool_config.queue_timeout <= 0) {
    group->server(static_cast<size_t>(server_index)).pool().noteQueueTimeout();
    respondError(503, requestPending());
    return false;
  }
  queued_server = server_index;
  group->server(static_cast<size_t>(server_index)).pool().enqueue(*this, at_front);  // its deadline runs there
  return true;
}

void Exchange::onPoolAvailable() noexcept {
  DispatchScope scope(*owner_);
  // The pool has taken us off its queue; put back (at the front), we keep
  // our first deadline.
  queued_server = -1;
  if (!connectUpstream(/*woken=*/true)) return;  // answered with an error
  if (upstream == nullptr) return;               // queued again
  upstream->output().append(held.data(), held.size());
  held.clear();
  held.releaseIfEmpty();
  if (body_path == BodyPath::kSpooled) {
    pumpBody();
  } else {
    upstream->flush();
  }
  if (upstream == nullptr) return;  // it failed at once (answered, or retried and queued)
  if (request_complete) {
    owner_->armClientTimer();
  } else {
    owner_->resumeReading();
  }
}

void Exchange::onQueueTimeout() noexcept {
  DispatchScope scope(*owner_);
  queued_server = -1;  // off the queue, counted in queue_timeouts_total by the pool
  record.error = "queue_timeout";
  respondError(503, requestPending());
}

bool Exchange::connectUpstream(bool woken) {
  const uint64_t now = host_->loop().now();
  TriedSet skipped = tried;  // plus, for this round only, servers at max_conns
  int capped = -1;            // the first of those: where to wait
  for (;;) {
    server_index = group->pick(skipped, now, pickContext());
    if (server_index < 0) {
      if (capped >= 0) return waitForConnection(capped, woken);
      respondError(attempts == 0 ? 503 : 502, requestPending());
      return false;
    }
    Server& server = group->server(static_cast<size_t>(server_index));
    // The warmest pooled connection first.
    if (PoolMember* member = server.pool().checkout()) {
      auto* conn = static_cast<UpstreamConnection*>(member);
      conn->attach(*this);
      use(conn, host_->loop().now());
      return true;
    }
    int error = 0;
    UpstreamConnection* conn = openConnection(server, &error);
    if (conn != nullptr) {
      use(conn, host_->loop().now());
      return true;
    }
    skipped.add(static_cast<size_t>(server_index));
    if (error == UpstreamConnection::kAtCapacity) {
      if (capped < 0) capped = server_index;
      continue;
    }
    if (isLocalResourceError(error)) {
      // Out of descriptors, ports or memory here: not the server's fault, and
      // no other server would fare better. 502 at once, counted for nobody.
      LOG_UPSTREAM_FAILURE(server, strerror(error), "upstream %s: cannot open a connection: %s (a limit of this host)",
                           server.name().c_str(), strerror(error));
      respondError(502, requestPending());
      return false;
    }
    LOG_UPSTREAM_FAILURE(server, strerror(error), "upstream %s: connect: %s", server.name().c_str(), strerror(error));
    server.noteFailure(now, group->inServiceCount() == 1);
    tried.add(static_cast<size_t>(server_index));
    if (++attempts > group->config().retries) {
      respondError(502, requestPending());
      return false;
    }
    ServerCounters::add(server.counters().retries_total);  // on to the next server
  }
}

UpstreamConnection* Exchange::openConnection(Server& server, int* error) {
  return UpstreamConnection::open(host_->loop(), host_->buffers(), &host_->headerStore(), server,
                                  host_->config().timeouts, *this, error);
}

PickContext Exchange::pickContext() const {
  PickContext context;
  context.client_ip = client_ip.c_str();
  context.hash_value = hash_value;
  return context;
}

void Exchange::onUpstreamConnected() noexcept {
  DispatchScope scope(*owner_);
  if (group != nullptr && server_index >= 0) group->server(static_cast<size_t>(server_index)).noteSuccess();
  upstream->flush();
}

void Exchange::onUpstreamDrained() noexcept {
  DispatchScope scope(*owner_);
  if (owner_->clientState() == ClientState::kTunnel) {
    owner_->relayTunnel();
    return;
  }
  if (owner_->clientState() == ClientState::kExchange && body_path == BodyPath::kSpooled) pumpBody();
  // The upstream took everything: read more of the request body.
  if (owner_->clientState() == ClientState::kExchange && !request_complete) owner_->resumeReading();
}

bool Exchange::retryAfter(UpstreamError error) {
  UpstreamConnection* failed = upstream;
  upstream = nullptr;
  if (response_started || failed == nullptr) return false;
  const bool stale = failed->reused() && !failed->responseStarted() &&
                     (error == UpstreamError::kClosedEarly || error == UpstreamError::kSendFailed);
  const bool connect_failed = error == UpstreamError::kConnectFailed || error == UpstreamError::kConnectTimeout ||
                              error == UpstreamError::kTlsFailed;
  if (!stale && !connect_failed) return false;
  if (stale && !idempotent && body_started) return false;
  Server& server = failed->server();
  if (connect_failed) {
    LOG_UPSTREAM_FAILURE(server, toString(error), "upstream %s: %s", server.name().c_str(), toString(error));
    server.noteFailure(host_->loop().now(), group->inServiceCount() == 1);
    tried.add(static_cast<size_t>(server_index));
    if (++attempts > group->config().retries) return false;
  } else {
    // The keep-alive race: the server closed the pooled connection as we
    // reused it. One more try on a fresh connection to the same server.
    if (stale_retried) return false;
    stale_retried = true;
  }
  ServerCounters::add(server.counters().retries_total);
  Buffer replay(host_->buffers());
  if (!failed->takeReplay(replay)) return false;
  if (stale) {
    int err = 0;
    UpstreamConnection* conn = openConnection(server, &err);
    if (conn == nullptr) return false;
    use(conn, host_->loop().now());
  } else if (!connectUpstream()) {
    return true;  // it answered the client
  }
  Buffer* sink = requestSink();
  sink->append(replay.data(), replay.size());
  if (upstream != nullptr) upstream->flush();
  return true;
}

void Exchange::onUpstreamError(UpstreamError error) noexcept {
  DispatchScope scope(*owner_);
  const ClientState state = owner_->clientState();
  record.upstream_done_ms = host_->loop().now();
  record.error = toString(error);
  if (state == ClientState::kTunnel) {
    // The tunnel's upstream failed, or stayed silent for upstream_read: its
    // connection is closed already. What it sent goes out, then the client
    // is closed too.
    upstream = nullptr;
    upstream_held = false;
    response_complete = true;  // (counted in requests when the tunnel began)
    owner_->setClientState(ClientState::kClosing);
    owner_->flushClient();
    return;
  }
  if (state != ClientState::kExchange && state != ClientState::kClosing) return;
  Server* server = upstream != nullptr ? &upstream->server() : nullptr;
  if (retryAfter(error)) return;
  if (response_started && !response_held) {
    // Part of the response has gone out: the client can only learn of the
    // failure by the connection closing. Flush what we have, then close.
    if (server != nullptr) {
      LOG_UPSTREAM_FAILURE(*server, toString(error), "upstream %s: response cut short: %s", server->name().c_str(),
                           toString(error));
    }
    keep_alive = false;
    completeResponse();
    owner_->setClientState(ClientState::kClosing);
    owner_->flushClient();
    return;
  }
  switch (error) {
    case UpstreamError::kReadTimeout:
    case UpstreamError::kSendTimeout:
      respondError(504, requestPending());
      return;
    default:
      respondError(502, requestPending());
      return;
  }
}

int Exchange::onUpstreamHead(const HttpParser& parser, const char* base) noexcept {
  DispatchScope scope(*owner_);
  int status = parser.statusCode();
  if (status == 101) {
    if (!upgrade || !request_complete) return -1;  // a switch nobody asked for: 502
    owner_->startTunnel(parser, base);
    return 0;
  }
  if (status < 200) {
    writeInterimResponse(parser, base);
    return 0;
  }
  writeResponseHead(parser, base);
  return 0;  // sent with the first body bytes, by onUpstreamInputDone()
}

void Exchange::writeInterimResponse(const HttpParser& parser, const char* base) {
  // We answered Expect ourselves; HTTP/1.0 clients get no 1xx at all.
  if (!interimGoesToClient(parser.statusCode(), reader().versionMinor() >= 1)) return;
  writeInterimResponseHead(out, parser, base);
  owner_->flushClient();
}

void Exchange::writeResponseHead(const HttpParser& parser, const char* base) {
  const bool client_http11 = reader().versionMinor() >= 1;
  // Held only when nothing else waits in out (a 1xx or our 100 Continue),
  // so that dropping it drops nothing that was partly sent.
  const bool hold = holdsResponse() && out.empty();
  framing = chooseResponseFraming(parser, head_request, client_http11);
  // Read ahead of a slow client, unless the route or the response asks for
  // a stream: server-sent events, or the app's own X-Accel-Buffering: no.
  buffer_response = host_->config().buffering.response && route_buffers && framing != Framing::kNone &&
                     !startsWithIgnoreCase(findHeader(parser.head(), base, "content-type"), "text/event-stream") &&
                     !equalsIgnoreCase(findHeader(parser.head(), base, "x-accel-buffering"), "no");
  // Keep the client only if its request has fully arrived and nothing else
  // forbids it.
  if (framing == Framing::kClose || !request_complete || host_->draining()) keep_alive = false;
  response_started = true;
  response_held = hold;
  record.status = parser.statusCode();
  if (!hold && out.empty() && owner_->takeResponseHead(parser, base, framing)) {
    if (framing != Framing::kNone) framing = Framing::kBare;
    return;
  }
  writeClientResponseHead(out, parser, base, framing, keep_alive, client_http11);
}

void Exchange::onUpstreamBody(const char* at, size_t length) noexcept {
  DispatchScope scope(*owner_);
  if (length == 0) return;
  if (spooling && (out.size() >= kHighWatermark || (spool && !spool->empty()))) {
    if (!spoolResponseBody(at, length)) {
      abandonUpstream(NoReuse::kError);
      owner_->closeClient();  // the head is out: the client sees a truncated response
      return;
    }
    if (spool->full()) holdUpstream();  // past its caps: backpressure
    return;
  }
  appendBodyPiece(out, framing, at, length);
  if (out.size() >= kHighWatermark) {
    // Buffering: the next pieces go to the spool (memory first). Streaming:
    // the upstream waits for the client.
    if (buffer_response) {
      spooling = true;
    } else {
      holdUpstream();
    }
    owner_->flushClient();
  }
}

void Exchange::onUpstreamInputDone() noexcept {
  DispatchScope scope(*owner_);
  if (!out.empty()) owner_->flushClient();
}

void Exchange::onUpstreamComplete() noexcept {
  DispatchScope scope(*owner_);
  record.upstream_done_ms = host_->loop().now();
  if (owner_->clientState() == ClientState::kTunnel) {
    // The upstream closed the tunnel: flush what it sent, then close.
    abandonUpstream(NoReuse::kUpstreamClose);
    response_complete = true;  // (counted in requests when the tunnel began)
    owner_->setClientState(ClientState::kClosing);
    owner_->flushClient();
    return;
  }
  // A chunked body ends with the upstream's trailers (readable until its next read).
  const ResponseReader& response = upstream->response();
  if (framing == Framing::kBare) owner_->endResponseBody(response.parser(), response.base());
  if (spool && !spool->empty()) {
    // The client is still behind: the end of the body queues after the spool.
    if (framing == Framing::kChunked) {
      Buffer end(host_->buffers());
      appendLastChunk(end, response.parser(), response.base());
      if (!spool->append(end.data(), end.size())) {
        abandonUpstream(NoReuse::kError);
        owner_->closeClient();
        return;
      }
    }
  } else {
    appendBodyEnd(out, framing, response.parser(), response.base());
  }
  completeResponse();
  if (!request_complete) keep_alive = false;
  if (spool && !spool->empty()) released_ms = host_->loop().now();  // the client still reads: time the app got back
  releaseUpstream(host_->draining());
  if (response_held && !request_complete) {
    // The app answered before the body ended. Its answer waits until the
    // rest of the body has been read (and dropped) within max_body_bytes;
    // past it, the client gets 413 instead.
    owner_->resumeReading();
    return;
  }
  if (!keep_alive) owner_->setClientState(ClientState::kClosing);
  owner_->flushClient();
}

}  // namespace poolgate
