#include "proxy/client_connection.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>
#include <string>

#include "core/clock.h"
#include "core/log.h"
#include "http/forwarding.h"
#include "http/request_rules.h"
#include "proxy/tls_server.h"

namespace poolgate {

namespace {

constexpr uint32_t kEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
// Backpressure: stop reading one side while the other side's unsent bytes
// exceed the high mark; start again below the low mark.
constexpr size_t kHighWatermark = 64 * 1024;
constexpr size_t kLowWatermark = 16 * 1024;
constexpr uint64_t kDrainIdleGraceMs = 1000;
constexpr uint64_t kLingerMs = 2000;              // lingeringClose(): how long input is dropped
constexpr size_t kMaxLingerBytes = 256 * 1024;    // ...and how much of it

}  // namespace

ClientConnection::ClientConnection(ClientHost& worker, Fd fd, const SocketAddress& peer, ListenerKind kind,
                                   const TlsServer* tls, bool admin_denied)
    : worker_(worker),
      fd_(std::move(fd)),
      tls_server_(tls),
      peer_(IpAddress::of(peer)),
      kind_(kind),
      admin_denied_(admin_denied),
      timer_(worker.loop().timers(), [this] { onClientTimer(); }) {
}

ClientConnection::~ClientConnection() = default;

void ClientConnection::start() {
  worker_.onClientOpened(*this);
  // Counted at once (close() takes it off again): proxy clients as idle until
  // their first byte, admin connections apart, so that the client figures
  // describe proxy traffic only.
  WorkerSlot& stats = worker_.stats();
  ServerCounters::add(kind_ == ListenerKind::kAdmin ? stats.admin_active : stats.clients_idle);
  if (tls_server_ != nullptr && !tls_.start(tls_server_->context(), fd_.get(), /*server=*/true)) {
    LOG_ERROR("client %s: %s", peer_.text().c_str(), tls_.failure().c_str());
    close();
    return;
  }
  if (!worker_.loop().add(fd_.get(), kEvents, this)) {
    close();
    return;
  }
  armClientTimer();
}

// ---- State and timers ------------------------------------------------------

void ClientConnection::beginExchange() {
  ex_ = worker_.exchanges().take();
  ++exchange_seq_;
  ex_->client_ip = peer_.text();
  ex_->record.started_ms = worker_.loop().now();
}

void ClientConnection::setState(State state) {
  bool active = state == State::kHead || state == State::kExchange || state == State::kTunnel ||
                state == State::kClosing;
  if (kind_ == ListenerKind::kProxy && state_ != State::kClosed && active != counted_active_) {
    WorkerSlot& stats = worker_.stats();
    ServerCounters::sub(active ? stats.clients_idle : stats.clients_active);
    ServerCounters::add(active ? stats.clients_active : stats.clients_idle);
    counted_active_ = active;
  }
  state_ = state;
}

void ClientConnection::armClientTimer() {
  const TimeoutsConfig& t = worker_.config().timeouts;
  if (ex_ && !ex_->out.empty() && !writable_) {
    timer_.arm(secondsToMs(t.client_send));
    return;
  }
  switch (state_) {
    case State::kIdle: {
      if (lingering_) return;  // its own timer runs
      // The TLS handshake has tls.handshake_timeout; the first request's head
      // then has client_header from its first byte, like on a plain connection.
      uint64_t ms = tls_ && !tls_.established() ? tls_server_->handshakeTimeoutMs()
                    : secondsToMs(first_request_ ? t.client_header : t.client_keepalive);
      // Draining: a keep-alive client gets a short grace to send its next
      // request (answered with Connection: close) before we close it. Closing
      // at once would race with a request already on its way.
      if (worker_.draining()) ms = std::min(ms, kDrainIdleGraceMs);
      timer_.arm(ms);
      return;
    }
    case State::kHead:
      // The whole head must arrive within client_header: armed once, at its first byte.
      if (!timer_.armed()) timer_.arm(secondsToMs(t.client_header));
      return;
    case State::kExchange:
      if (ex_->queued_server >= 0) return;  // the queue_timeout armed in waitForConnection() runs
      if (!ex_->request_complete && pendingRequestBytes() < kHighWatermark) {
        timer_.arm(secondsToMs(t.client_body));  // waiting for body bytes
      } else {
        timer_.cancel();  // the upstream side has its own timeouts
      }
      return;
    case State::kTunnel:   // the upstream's read timeout bounds an idle tunnel
    case State::kClosing:
    case State::kClosed:
      timer_.cancel();
      return;
  }
}

void ClientConnection::onClientTimer() {
  if (lingering_) {
    close();
    return;
  }
  if (ex_ && !ex_->out.empty() && !writable_) {
    LOG_DEBUG("client %s: send timeout", peer_.text().c_str());
    close();
    return;
  }
  switch (state_) {
    case State::kIdle:
      close();  // idle keep-alive connection: closed quietly
      return;
    case State::kHead:
      respondError(408, true);
      return;
    case State::kExchange:
      if (ex_->queued_server >= 0) {
        Pool& pool = ex_->group->server(static_cast<size_t>(ex_->queued_server)).pool();
        pool.dequeue(*this);
        pool.noteQueueTimeout();
        ex_->queued_server = -1;
        ex_->record.error = "queue_timeout";
        respondError(503, requestPending());
      } else if (!ex_->response_started || ex_->response_held) {
        respondError(408, true);
      } else {
        close();
      }
      return;
    default:
      return;
  }
}

AccessLog* ClientConnection::accessLog() {
  return kind_ == ListenerKind::kAdmin ? nullptr : worker_.accessLog();
}

// ---- Client I/O ------------------------------------------------------------

void ClientConnection::onIoEvent(uint32_t events) noexcept {
  if (state_ == State::kClosed) return;
  if (lingering_) {
    discardInput();
    return;
  }
  if (tls_) {
    // The TLS layer may wait for the other direction than the one it serves:
    // a read that must first write, a write that must first read.
    if ((events & EPOLLIN) && tls_.writeWantsRead()) events |= EPOLLOUT;
    if ((events & EPOLLOUT) && tls_.readWantsWrite()) events |= EPOLLIN;
    if (!tls_.established()) {
      if (!handshakeClient()) return;
      events |= EPOLLIN;  // the first request may have come with the handshake's last flight
    }
  }
  if ((events & (EPOLLHUP | EPOLLERR)) && state_ == State::kExchange) {
    // Reset (or shut both ways) while its request is upstream: nobody will
    // read the answer, so stop the upstream work now (a half-close, RDHUP
    // alone, is a client that finished sending, and still waits).
    close();
    return;
  }
  if (events & EPOLLOUT) {
    writable_ = true;
    flushClient();
  }
  if (state_ != State::kClosed && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
    readable_ = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) hung_up_ = true;
    readClient();
  }
}

bool ClientConnection::handshakeClient() {
  switch (tls_.handshake()) {
    case TlsResult::kDone:
      LOG_DEBUG("client %s: %s%s, ALPN \"%s\"", peer_.text().c_str(), tls_.version(), tls_.resumed() ? " (resumed)" : "",
                tls_.alpn().c_str());
      armClientTimer();  // client_header from now on
      return true;
    case TlsResult::kWantRead:
    case TlsResult::kWantWrite:
      return false;
    case TlsResult::kFailed:
      break;
  }
  LOG_DEBUG("client %s: TLS handshake failed: %s", peer_.text().c_str(), tls_.failure().c_str());
  lingeringClose();
  return false;
}

void ClientConnection::lingeringClose() {
  if (state_ == State::kClosed || lingering_) return;
  lingering_ = true;
  ::shutdown(fd_.get(), SHUT_WR);
  timer_.arm(kLingerMs);
  discardInput();
}

void ClientConnection::discardInput() {
  char scrap[4096];
  size_t dropped = 0;
  while (dropped < kMaxLingerBytes) {
    ssize_t n = ::recv(fd_.get(), scrap, sizeof scrap, 0);
    if (n > 0) {
      dropped += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // more may come: wait
    break;  // EOF or error: done
  }
  close();
}

ssize_t ClientConnection::receive(void* buffer, size_t size) {
  return tls_ ? tls_.read(buffer, size) : ::recv(fd_.get(), buffer, size, 0);
}

ssize_t ClientConnection::transmit(const void* buffer, size_t size) {
  return tls_ ? tls_.write(buffer, size) : ::send(fd_.get(), buffer, size, MSG_NOSIGNAL);
}

void ClientConnection::readClient() {
  if (state_ == State::kTunnel) {
    relayClientBytes();
    return;
  }
  while (readable_ && (state_ == State::kIdle || state_ == State::kHead || state_ == State::kExchange)) {
    if (state_ == State::kExchange) {
      // One request at a time: after its end, pipelined bytes wait.
      if (ex_->request_complete) return;
      if (pendingRequestBytes() >= kHighWatermark) return;
    }
    // The reader says how much a read may bring (a head has its limits).
    if (!reader_) reader_ = worker_.readers().take();
    const ReadRoom room = reader_->reserve();
    if (room.size == 0) {
      respondError(room.refuse, true);
      return;
    }
    const size_t asked = room.size;
    ssize_t n = receive(room.at, asked);
    if (n > 0) {
      reader_->commit(static_cast<size_t>(n));
      // A short plain read drained the socket: the next bytes bring a new
      // edge, so no recv() is spent just to hear EAGAIN. (Not with TLS,
      // which may hold decrypted bytes, nor once the peer has hung up.)
      if (static_cast<size_t>(n) < asked && !tls_ && !hung_up_) readable_ = false;
      if (state_ == State::kIdle) {
        timer_.cancel();  // keep-alive wait over: client_header runs from this first byte
        setState(State::kHead);
        beginExchange();
      }
      parseClient();
      armClientTimer();
      continue;
    }
    if (n == 0) {
      // The client is done sending. Mid-request that is an abort; between
      // requests it is a normal close.
      readable_ = false;
      if (state_ == State::kExchange && ex_->request_complete && !ex_->response_complete) return;
      close();
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      readable_ = false;
      break;
    }
    close();
    return;
  }
  if (state_ == State::kIdle) reader_.reset();  // nothing buffered: an idle client holds no reader
}

void ClientConnection::relayClientBytes() {
  if (in_relay_) return;  // flush() below calls back through onUpstreamDrained()
  in_relay_ = true;
  relayLoop();
  in_relay_ = false;
}

void ClientConnection::relayLoop() {
  while (readable_ && state_ == State::kTunnel && ex_->upstream != nullptr) {
    if (ex_->upstream->pendingOutput() >= kHighWatermark) return;  // onUpstreamDrained() resumes
    Buffer& sink = ex_->upstream->output();
    if (!sink.ensureWritable(16 * 1024)) {
      close();
      return;
    }
    ssize_t n = receive(sink.writePtr(), sink.writable());
    if (n > 0) {
      sink.commit(static_cast<size_t>(n));
      ex_->upstream->flush();
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      readable_ = false;
      return;
    }
    close();  // the client closed (or failed): the tunnel ends
    return;
  }
}

void ClientConnection::parseClient() {
  while (state_ == State::kHead || (state_ == State::kExchange && !ex_->request_complete)) {
    if (!reader_->hasWork()) return;
    const RequestReader::Event event = reader_->next();
    switch (event) {
      case RequestReader::Event::kNeedMore:
        // Sent only now that the reader has taken all it was given, so that
        // a framing error later in the same bytes (a bad chunk) sends nothing.
        if (ex_->upstream != nullptr) ex_->upstream->flush();
        return;
      case RequestReader::Event::kHead:
        onRequestHead();
        break;
      case RequestReader::Event::kChunkStart:
      case RequestReader::Event::kBody:
      case RequestReader::Event::kChunkEnd:
        onRequestBody(event);
        break;
      case RequestReader::Event::kComplete:
        onRequestComplete();
        return;
      case RequestReader::Event::kError:
        onRequestError();
        return;
    }
  }
}

void ClientConnection::flushClient() {
  if (!ex_) {  // idle: nothing of ours waits to be written
    armClientTimer();
    return;
  }
  if (ex_->response_held) {
    if (!ex_->request_complete && ex_->out.size() < kHighWatermark) {
      armClientTimer();
      return;
    }
    ex_->response_held = false;  // the request has ended, or the response is too big to hold
  }
  for (;;) {
    while (writable_ && !ex_->out.empty()) {
      ssize_t n = transmit(ex_->out.data(), ex_->out.size());
      if (n > 0) {
        ex_->out.consume(static_cast<size_t>(n));
        ex_->record.bytes_sent += static_cast<uint64_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        writable_ = false;
        break;
      }
      close();  // the client went away
      return;
    }
    // Out of out, on to what the spool kept (one high-water mark at a time).
    if (!writable_ || !ex_->out.empty() || !ex_->spool || ex_->spool->empty()) break;
    if (ex_->spool->drainInto(ex_->out, kHighWatermark) == 0) {
      ServerCounters::add(worker_.stats().buffer_errors_total);
      LOG_ERROR("response buffering: cannot read back a temporary file: %s; response cut short", strerror(errno));
      ex_->abandonUpstream(NoReuse::kError);
      close();
      return;
    }
    ServerCounters::set(worker_.stats().buffered_memory, worker_.spoolBudget().in_use);
  }
  const bool spooled = ex_->spool && !ex_->spool->empty();
  if (ex_->out.size() < kLowWatermark && !(spooled && ex_->spool->full())) {
    // Reading on may bring the rest of the response at once, and through
    // onUpstreamComplete() another flushClient() may end the exchange.
    const uint32_t seq = exchange_seq_;
    ex_->releaseHold();
    if (!sameExchange(seq)) return;
  }
  if (ex_->out.empty() && !spooled) {
    ex_->out.releaseIfEmpty();
    if (ex_->response_complete && (state_ == State::kExchange || state_ == State::kClosing)) {
      finishExchange();
      return;
    }
  }
  armClientTimer();
}

// The whole response is produced (its last bytes may still be on their way
// out). It counts in `requests` now, so that /stats, read by a client that
// has just received it, already shows it.
void ClientConnection::completeResponse() {
  if (ex_->response_complete) return;  // a held response replaced by an error answer: counted once
  ex_->response_complete = true;
  if (kind_ == ListenerKind::kProxy) worker_.onRequestDone();
}

void ClientConnection::finishExchange() {
  ex_->log(accessLog());
  ex_->endSpools(worker_);
  // A response sent as keep-alive is honoured even if the worker began to
  // drain meanwhile: the client may already be sending its next request.
  if (!ex_->keep_alive || !ex_->request_complete || state_ == State::kClosing) {
    close();
    return;
  }
  // The next request on this connection gets a fresh exchange; an idle
  // client holds none.
  first_request_ = false;
  ex_.reset();
  timer_.cancel();
  if (reader_->unread().empty()) {
    reader_.reset();  // nothing pipelined: an idle client holds no reader
    setState(State::kIdle);
  } else {
    setState(State::kHead);
    beginExchange();
    reader_->nextMessage();
    parseClient();  // pipelined requests already buffered
  }
  if (state_ == State::kIdle || state_ == State::kHead) {
    armClientTimer();
    readClient();
  }
}

void ClientConnection::drain() {
  // Idle: the timer shortens to the drain grace. Busy: the response now
  // being written says Connection: close.
  if (state_ == State::kIdle) armClientTimer();
}

void ClientConnection::close() {
  if (state_ == State::kClosed) return;
  // The exchange, if any, is kept until the connection is deleted: callers
  // up the stack may still look at it.
  if (ex_) {
    ex_->logClosed(accessLog(), worker_.loop().now());
    ex_->abandonUpstream(NoReuse::kClientGone);  // never pool a connection whose exchange was cut short
    leaveQueue();
    ex_->endSpools(worker_);
  }
  WorkerSlot& stats = worker_.stats();
  if (kind_ == ListenerKind::kAdmin) {
    ServerCounters::sub(stats.admin_active);
  } else {
    ServerCounters::sub(counted_active_ ? stats.clients_active : stats.clients_idle);
  }
  state_ = State::kClosed;
  timer_.cancel();
  worker_.loop().remove(fd_.get());
  if (tls_) {
    tls_.shutdown();  // close_notify, if it can leave at once
    tls_.reset();
  }
  fd_.reset();
  worker_.onClientClosed(*this);
  worker_.loop().deferDelete(static_cast<Deletable*>(this));
}

// ---- The request -------------------------------------------------------------

void ClientConnection::onRequestHead() {
  setState(State::kExchange);
  timer_.cancel();
  ex_->beginRequest(*reader_, accessLog() != nullptr);

  if (admin_denied_) {  // before anything else about the request: 403 and close
    handleAdmin();
    return;
  }
  if (int status = reader_->verdict(); status != 0) {
    respondError(status, true);
    return;
  }
  // A local answer that keeps the connection lets the reader go on to the
  // end of the (bodyless) request; one that closes it stops reading here.
  if (kind_ == ListenerKind::kAdmin) {
    handleAdmin();
  } else {
    startExchange();
  }
}

void ClientConnection::onRequestError() {
  if (reader_->bodyTooLarge()) {
    refuseOversizedBody();
    return;
  }
  if (ex_->response_started && !ex_->response_held) {
    close();
    return;
  }
  if (reader_->errorStatus() == 400) {
    LOG_DEBUG("client %s: bad request: %s (%s)", peer_.text().c_str(), reader_->errorName(), reader_->errorReason());
  }
  respondError(reader_->errorStatus(), true);
}

bool ClientConnection::requestPending() const {
  if (ex_->request_complete) return false;
  return reader_->bodyPending();
}

void ClientConnection::startExchange() {
  const HttpHead& head = reader_->head();
  const char* base = reader_->base();
  const RequestTarget& target = reader_->target();
  const std::string_view host = reader_->host();
  const RouteConfig* route = worker_.route(hostWithoutPort(host), target.path);
  if (route == nullptr) {
    respondError(404, requestPending());
    return;
  }
  ex_->group = &worker_.upstream(route->upstream_index);
  ex_->route_buffers = route->response_buffering;
  // Copied: a retry picks again after the head has left the read buffer.
  ex_->hash_value.clear();
  if (!ex_->group->hashHeader().empty()) ex_->hash_value.assign(findHeader(head, base, ex_->group->hashHeader()));
  if (worker_.config().buffering.request && route->request_buffering && !ex_->upgrade && reader_->bodyPending()) {
    collectBody();
    return;
  }
  if (!connectUpstream()) return;  // an error response is on its way
  // (Queued for max_conns, the head and body wait in ex_->held until a connection comes.)
  Buffer* sink = ex_->requestSink();
  Server& server = ex_->group->server(static_cast<size_t>(ex_->upstream != nullptr ? ex_->server_index : ex_->queued_server));
  writeForwardedRequestHead(*sink, reader_->parser(), base, forwardContext(server.name()));
  answerExpectation();  // the body streams when it comes
  // Not sent yet: parseClient() flushes once the reader has taken all it read.
}

ForwardContext ClientConnection::forwardContext(std::string_view fallback_host) const {
  const std::string_view host = reader_->host();
  return ForwardContext{ex_->client_ip.c_str(), tls_ ? "https" : "http", host.empty() ? fallback_host : host,
                        reader_->target().forward,
                        ex_->upgrade ? findHeader(reader_->head(), reader_->base(), "upgrade") : std::string_view()};
}

void ClientConnection::answerExpectation() {
  if (!ex_->expect_continue || reader_->versionMinor() < 1) return;
  // We answer the expectation ourselves: the upstream never sees it.
  ex_->out.append("HTTP/1.1 100 Continue\r\n\r\n");
  flushClient();
}

// ---- Request buffering -------------------------------------------------------

void ClientConnection::collectBody() {
  ex_->body_path = BodyPath::kCollect;
  // The head leaves the read buffer as the body comes: forwarded now, all
  // but its framing, which depends on how much body there will be.
  ex_->host_missing = reader_->host().empty();
  writeForwardedRequestFields(ex_->held, reader_->parser(), reader_->base(), forwardContext({}));
  answerExpectation();
}

void ClientConnection::storeBody(std::string_view bytes) {
  if (!ex_->body_spool) ex_->body_spool = std::make_unique<Spool>(worker_.buffers(), worker_.spoolBudget(), worker_.spoolLimits());
  if (!ex_->body_spool->append(bytes)) {
    bodySpoolFailed();
    return;
  }
  ServerCounters::set(worker_.stats().buffered_memory, worker_.spoolBudget().in_use);
  if (ex_->body_path == BodyPath::kSpooled) {
    pumpBody();
  } else if (ex_->body_spool->full()) {
    sendCollectedBody();  // larger than memory and max_temp_file allow: the rest streams
  }
}

void ClientConnection::sendCollectedBody() {
  // Whole, the body goes with a Content-Length, whatever its framing was
  // (what app servers handle best). Not whole, the rest streams, chunked if
  // it came chunked.
  const bool whole = ex_->request_complete;
  ex_->body_path = BodyPath::kSpooled;
  ex_->body_rechunk = !whole && ex_->request_chunked;
  const uint64_t length = whole ? (ex_->body_spool ? ex_->body_spool->size() : 0) : reader_->parser().declaredLength();
  if (!connectUpstream()) return;  // an error response is on its way
  if (ex_->host_missing) {
    const int index = ex_->upstream != nullptr ? ex_->server_index : ex_->queued_server;
    appendHeader(ex_->held, "Host", ex_->group->server(static_cast<size_t>(index)).name());
  }
  endForwardedRequestHead(ex_->held, ex_->body_rechunk, !ex_->body_rechunk, length);
  if (ex_->upstream == nullptr) return;  // queued: onPoolAvailable() sends ex_->held
  ex_->upstream->output().append(ex_->held.data(), ex_->held.size());
  ex_->held.clear();
  ex_->held.releaseIfEmpty();
  pumpBody();
}

void ClientConnection::pumpBody() {
  if (ex_->pumping) {  // from flush(), through onUpstreamDrained(): the loop below goes on
    ex_->pump_again = true;
    return;
  }
  ex_->pumping = true;
  const uint32_t seq = exchange_seq_;
  do {
    ex_->pump_again = false;
    if (ex_->upstream == nullptr) break;
    Buffer& sink = ex_->upstream->output();
    while (ex_->body_spool && !ex_->body_spool->empty() && ex_->upstream->pendingOutput() < kHighWatermark) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(ex_->body_spool->size(), kHighWatermark));
      size_t moved = 0;
      if (ex_->body_rechunk) {
        Buffer piece(worker_.buffers());
        moved = ex_->body_spool->drainInto(piece, want);
        appendBodyPiece(sink, Framing::kChunked, piece.data(), moved);
      } else {
        moved = ex_->body_spool->drainInto(sink, want);
      }
      if (moved == 0) {
        ex_->pumping = false;
        bodySpoolFailed();
        return;
      }
      ex_->body_started = true;
    }
    if (ex_->body_rechunk && !ex_->body_end_sent && ex_->request_complete && (!ex_->body_spool || ex_->body_spool->empty())) {
      sink.append("0\r\n\r\n");
      ex_->body_end_sent = true;
    }
    ServerCounters::set(worker_.stats().buffered_memory, worker_.spoolBudget().in_use);
    ex_->upstream->flush();  // may end in onUpstreamDrained() (another round) or an error
    if (!sameExchange(seq)) return;  // it failed, the client was answered: over
  } while (ex_->pump_again && state_ == State::kExchange && !ex_->requestSent() && ex_->body_spool && !ex_->body_spool->empty());
  ex_->pumping = false;
}

void ClientConnection::bodySpoolFailed() {
  const int error = errno;
  ServerCounters::add(worker_.stats().buffer_errors_total);
  if (worker_.bufferLog().admit(strerror(error))) {
    LOG_ERROR("request buffering: temporary file in %s: %s; request refused", worker_.spoolLimits().directory.c_str(),
              strerror(error));
  }
  ex_->record.error = "buffer_failed";
  // Collecting, nothing has reached an upstream: 507. Sending, the upstream
  // has part of the request: that connection goes, and the client gets 502.
  const int status = ex_->body_path == BodyPath::kCollect ? 507 : 502;
  ex_->abandonUpstream(NoReuse::kRequestNotSent);
  respondError(status, true);
}

size_t ClientConnection::pendingRequestBytes() const {
  if (ex_->body_path != BodyPath::kDirect) {
    // The spool takes what comes, up to its caps.
    if (discardingBody()) return 0;
    return ex_->body_spool && ex_->body_spool->full() ? SIZE_MAX : 0;
  }
  if (ex_->upstream != nullptr) return ex_->upstream->pendingOutput();
  if (discardingBody()) return 0;  // read and dropped
  if (ex_->queued_server >= 0) return ex_->held.size();
  return SIZE_MAX;  // nowhere to put request bytes
}

bool ClientConnection::waitForConnection(int server_index, bool at_front) {
  const PoolConfig& pool_config = ex_->group->config().pool;
  if (pool_config.queue_timeout <= 0) {
    ex_->group->server(static_cast<size_t>(server_index)).pool().noteQueueTimeout();
    respondError(503, requestPending());
    return false;
  }
  ex_->queued_server = server_index;
  ex_->group->server(static_cast<size_t>(server_index)).pool().enqueue(*this, at_front);
  if (!at_front) timer_.arm(secondsToMs(pool_config.queue_timeout));
  return true;
}

void ClientConnection::leaveQueue() {
  if (ex_->queued_server < 0) return;
  ex_->group->server(static_cast<size_t>(ex_->queued_server)).pool().dequeue(*this);
  ex_->queued_server = -1;
}

void ClientConnection::onPoolAvailable() noexcept {
  // The pool has taken us off its queue; the queue_timeout timer still runs.
  ex_->queued_server = -1;
  if (!connectUpstream(/*woken=*/true)) return;  // answered with an error
  if (ex_->upstream == nullptr) return;           // queued again
  timer_.cancel();
  ex_->upstream->output().append(ex_->held.data(), ex_->held.size());
  ex_->held.clear();
  ex_->held.releaseIfEmpty();
  const uint32_t seq = exchange_seq_;
  if (ex_->body_path == BodyPath::kSpooled) {
    pumpBody();
  } else {
    ex_->upstream->flush();
  }
  if (sameExchange(seq) && ex_->upstream != nullptr) {
    armClientTimer();
    if (readable_ && !ex_->request_complete) readClient();
  }
}

void ClientConnection::onRequestBody(RequestReader::Event event) {
  // (Counted against max_body_bytes by the reader, also while the body is
  // read and dropped after the app has answered: discardingBody().)
  if (ex_->body_path != BodyPath::kDirect) {
    // Decoded bytes only: the framing it goes with is ours (sendCollectedBody()).
    if (event == RequestReader::Event::kBody && !discardingBody()) storeBody(reader_->body());
    return;
  }
  Buffer* sink = ex_->requestSink();
  if (sink == nullptr) return;  // discarded
  if (event == RequestReader::Event::kBody) ex_->body_started = true;
  reader_->forward(*sink);  // re-chunked for a chunked request
}

void ClientConnection::onRequestComplete() {
  ex_->request_complete = true;
  if (ex_->body_path == BodyPath::kCollect) {
    sendCollectedBody();
    return;
  }
  const uint32_t seq = exchange_seq_;
  if (ex_->body_path == BodyPath::kSpooled) {
    pumpBody();  // the last chunk, after the spool, where one is due
    if (!sameExchange(seq)) return;
  } else if (Buffer* sink = ex_->requestSink(); sink != nullptr) {
    reader_->forward(*sink);  // the last chunk
  }
  // The rest (pipelined requests) waits for its turn.
  if (ex_->upstream != nullptr) {
    ex_->upstream->flush();
    // The request's end releases a response held until then (holdsResponse()).
    if (sameExchange(seq) && ex_->response_held && state_ == State::kExchange) flushClient();
  } else if (ex_->response_complete) {
    flushClient();  // a local answer (or a held response) waited for the request's end
  }
}

void ClientConnection::refuseOversizedBody() {
  // What was queued for the upstream and not sent yet goes with the
  // connection, which can never carry another request: its body is cut.
  ex_->abandonUpstream(NoReuse::kRequestNotSent);
  ex_->record.error = "body_too_large";
  if (ex_->response_started && !ex_->response_held) {
    close();  // response bytes went out: cut it, never let it pass as complete
    return;
  }
  respondError(413, true);  // replaces a held response
}

bool ClientConnection::holdsResponse() const {
  return ex_->request_chunked && !ex_->request_complete && worker_.config().limits.max_body_bytes != 0;
}

bool ClientConnection::discardingBody() const {
  return ex_->response_held && ex_->upstream == nullptr && !ex_->request_complete && state_ == State::kExchange;
}

void ClientConnection::dropHeldResponse() {
  if (!ex_->response_held) return;
  ex_->out.clear();  // none of it was sent (nothing was before it: see writeResponseHead)
  ex_->response_held = false;
  ex_->response_started = false;
  ex_->framing = Framing::kNone;
}

// ---- Upstream selection ------------------------------------------------------

bool ClientConnection::connectUpstream(bool woken) {
  const uint64_t now = worker_.loop().now();
  TriedSet skipped = ex_->tried;  // plus, for this round only, servers at max_conns
  int capped = -1;            // the first of those: where to wait
  for (;;) {
    ex_->server_index = ex_->group->pick(skipped, now, pickContext());
    if (ex_->server_index < 0) {
      if (capped >= 0) return waitForConnection(capped, woken);
      respondError(ex_->attempts == 0 ? 503 : 502, requestPending());
      return false;
    }
    Server& server = ex_->group->server(static_cast<size_t>(ex_->server_index));
    // The warmest pooled connection first.
    if (PoolMember* member = server.pool().checkout()) {
      auto* conn = static_cast<UpstreamConnection*>(member);
      conn->attach(*this);
      ex_->use(conn, worker_.loop().now());
      return true;
    }
    int error = 0;
    UpstreamConnection* conn =
        UpstreamConnection::open(worker_.loop(), worker_.buffers(), &worker_.headerStore(), server, worker_.config().timeouts, *this, &error);
    if (conn != nullptr) {
      ex_->use(conn, worker_.loop().now());
      return true;
    }
    skipped.add(static_cast<size_t>(ex_->server_index));
    if (error == UpstreamConnection::kAtCapacity) {
      if (capped < 0) capped = ex_->server_index;
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
    server.noteFailure(now, ex_->group->inServiceCount() == 1);
    ex_->tried.add(static_cast<size_t>(ex_->server_index));
    if (++ex_->attempts > ex_->group->config().retries) {
      respondError(502, requestPending());
      return false;
    }
    ServerCounters::add(server.counters().retries_total);  // on to the next server
  }
}

PickContext ClientConnection::pickContext() const {
  PickContext context;
  context.client_ip = ex_->client_ip.c_str();
  context.hash_value = ex_->hash_value;
  return context;
}

void ClientConnection::onUpstreamConnected() noexcept {
  if (ex_->group != nullptr && ex_->server_index >= 0) ex_->group->server(static_cast<size_t>(ex_->server_index)).noteSuccess();
  ex_->upstream->flush();
}

void ClientConnection::onUpstreamDrained() noexcept {
  if (state_ == State::kTunnel) {
    if (readable_) relayClientBytes();
    return;
  }
  if (state_ == State::kExchange && ex_->body_path == BodyPath::kSpooled) pumpBody();
  // The upstream took everything: read more of the request body.
  if (state_ == State::kExchange && !ex_->request_complete) {
    armClientTimer();
    if (readable_) readClient();
  }
}

bool ClientConnection::retryAfter(UpstreamError error) {
  UpstreamConnection* failed = ex_->upstream;
  ex_->upstream = nullptr;
  if (ex_->response_started || failed == nullptr) return false;
  const bool stale = failed->reused() && !failed->responseStarted() &&
                     (error == UpstreamError::kClosedEarly || error == UpstreamError::kSendFailed);
  const bool connect_failed = error == UpstreamError::kConnectFailed || error == UpstreamError::kConnectTimeout ||
                              error == UpstreamError::kTlsFailed;
  if (!stale && !connect_failed) return false;
  if (stale && !ex_->idempotent && ex_->body_started) return false;
  Server& server = failed->server();
  if (connect_failed) {
    LOG_UPSTREAM_FAILURE(server, toString(error), "upstream %s: %s", server.name().c_str(), toString(error));
    server.noteFailure(worker_.loop().now(), ex_->group->inServiceCount() == 1);
    ex_->tried.add(static_cast<size_t>(ex_->server_index));
    if (++ex_->attempts > ex_->group->config().retries) return false;
  } else {
    // The keep-alive race: the server closed the pooled connection as we
    // reused it. One more try on a fresh connection to the same server.
    if (ex_->stale_retried) return false;
    ex_->stale_retried = true;
  }
  ServerCounters::add(server.counters().retries_total);
  Buffer replay(worker_.buffers());
  if (!failed->takeReplay(replay)) return false;
  if (stale) {
    int err = 0;
    UpstreamConnection* conn =
        UpstreamConnection::open(worker_.loop(), worker_.buffers(), &worker_.headerStore(), server, worker_.config().timeouts, *this, &err);
    if (conn == nullptr) return false;
    ex_->use(conn, worker_.loop().now());
  } else if (!connectUpstream()) {
    return true;  // it answered the client
  }
  Buffer* sink = ex_->requestSink();
  sink->append(replay.data(), replay.size());
  if (ex_->upstream != nullptr) ex_->upstream->flush();
  return true;
}

void ClientConnection::onUpstreamError(UpstreamError error) noexcept {
  if (state_ != State::kExchange && state_ != State::kClosing) return;
  ex_->record.upstream_done_ms = worker_.loop().now();
  ex_->record.error = toString(error);
  Server* server = ex_->upstream != nullptr ? &ex_->upstream->server() : nullptr;
  if (retryAfter(error)) return;
  if (ex_->response_started && !ex_->response_held) {
    // Part of the response has gone out: the client can only learn of the
    // failure by the connection closing. Flush what we have, then close.
    if (server != nullptr) {
      LOG_UPSTREAM_FAILURE(*server, toString(error), "upstream %s: response cut short: %s", server->name().c_str(),
                           toString(error));
    }
    ex_->keep_alive = false;
    completeResponse();
    setState(State::kClosing);
    flushClient();
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

// ---- The response ------------------------------------------------------------

int ClientConnection::onUpstreamHead(const HttpParser& parser, const char* base) noexcept {
  int status = parser.statusCode();
  if (status == 101) {
    if (!ex_->upgrade || !ex_->request_complete) return -1;  // a switch nobody asked for: 502
    startTunnel(parser, base);
    return 0;
  }
  if (status < 200) {
    writeInterimResponse(parser, base);
    return 0;
  }
  writeResponseHead(parser, base);
  return 0;  // sent with the first body bytes, by onUpstreamInputDone()
}

void ClientConnection::startTunnel(const HttpParser& response, const char* base) {
  writeSwitchingProtocolsHead(ex_->out, response, base);
  ex_->record.status = 101;
  ex_->response_started = true;
  ex_->keep_alive = false;
  ex_->framing = Framing::kClose;  // raw bytes from here on
  if (kind_ == ListenerKind::kProxy) worker_.onRequestDone();  // counted now: a tunnel may last hours
  setState(State::kTunnel);
  timer_.cancel();
  // Bytes the client sent after its request already belong to the new protocol.
  if (!reader_->unread().empty()) {
    ex_->upstream->output().append(reader_->unread());
    reader_->dropUnread();
    ex_->upstream->flush();
  }
  flushClient();
  if (state_ == State::kTunnel && readable_) relayClientBytes();
}

void ClientConnection::writeInterimResponse(const HttpParser& parser, const char* base) {
  // We answered Expect ourselves; HTTP/1.0 clients get no 1xx at all.
  if (!interimGoesToClient(parser.statusCode(), reader_->versionMinor() >= 1)) return;
  writeInterimResponseHead(ex_->out, parser, base);
  flushClient();
}

namespace {
bool startsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && equalsIgnoreCase(text.substr(0, prefix.size()), prefix);
}
}  // namespace

void ClientConnection::writeResponseHead(const HttpParser& parser, const char* base) {
  const bool client_http11 = reader_->versionMinor() >= 1;
  // Held only when nothing else waits in out (a 1xx or our 100 Continue),
  // so that dropping it drops nothing that was partly sent.
  const bool hold = holdsResponse() && ex_->out.empty();
  ex_->framing = chooseResponseFraming(parser, ex_->head_request, client_http11);
  // Read ahead of a slow client, unless the route or the response asks for
  // a stream: server-sent events, or the app's own X-Accel-Buffering: no.
  ex_->buffer_response = worker_.config().buffering.response && ex_->route_buffers && ex_->framing != Framing::kNone &&
                     !startsWithIgnoreCase(findHeader(parser.head(), base, "content-type"), "text/event-stream") &&
                     !equalsIgnoreCase(findHeader(parser.head(), base, "x-accel-buffering"), "no");
  // Keep the client only if its request has fully arrived and nothing else
  // forbids it.
  if (ex_->framing == Framing::kClose || !ex_->request_complete || worker_.draining()) ex_->keep_alive = false;
  ex_->response_started = true;
  ex_->response_held = hold;
  writeClientResponseHead(ex_->out, parser, base, ex_->framing, ex_->keep_alive, client_http11);
  ex_->record.status = parser.statusCode();
}

void ClientConnection::onUpstreamBody(const char* at, size_t length) noexcept {
  if (length == 0) return;
  if (ex_->spooling && (ex_->out.size() >= kHighWatermark || (ex_->spool && !ex_->spool->empty()))) {
    if (!ex_->spoolResponseBody(worker_, at, length)) {
      ex_->abandonUpstream(NoReuse::kError);
      close();  // the head is out: the client sees a truncated response
      return;
    }
    if (ex_->spool->full()) ex_->holdUpstream();  // past its caps: backpressure
    return;
  }
  appendBodyPiece(ex_->out, ex_->framing, at, length);
  if (ex_->out.size() >= kHighWatermark) {
    // Buffering: the next pieces go to the spool (memory first). Streaming:
    // the upstream waits for the client.
    if (ex_->buffer_response) {
      ex_->spooling = true;
    } else {
      ex_->holdUpstream();
    }
    flushClient();
  }
}

void ClientConnection::onUpstreamInputDone() noexcept {
  if (!ex_->out.empty()) flushClient();
}

void ClientConnection::onUpstreamComplete() noexcept {
  ex_->record.upstream_done_ms = worker_.loop().now();
  if (state_ == State::kTunnel) {  // the upstream closed the tunnel: flush what it sent, then close
    ex_->abandonUpstream(NoReuse::kUpstreamClose);
    ex_->response_complete = true;  // (counted in requests when the tunnel began)
    setState(State::kClosing);
    flushClient();
    return;
  }
  if (ex_->spool && !ex_->spool->empty()) {
    // The client is still behind: the end of the body queues after the spool.
    if (ex_->framing == Framing::kChunked && !ex_->spool->append("0\r\n\r\n")) {
      ex_->abandonUpstream(NoReuse::kError);
      close();
      return;
    }
  } else {
    appendBodyEnd(ex_->out, ex_->framing);
  }
  completeResponse();
  if (!ex_->request_complete) ex_->keep_alive = false;
  if (ex_->spool && !ex_->spool->empty()) ex_->released_ms = worker_.loop().now();  // the client still reads: time the app got back
  ex_->releaseUpstream(worker_.draining());
  if (ex_->response_held && !ex_->request_complete) {
    // The app answered before the body ended. Its answer waits until the
    // rest of the body has been read (and dropped) within max_body_bytes;
    // past it, the client gets 413 instead.
    armClientTimer();
    if (readable_) readClient();
    return;
  }
  if (!ex_->keep_alive) setState(State::kClosing);
  flushClient();
}

// ---- Answers made here ---------------------------------------------------------

void ClientConnection::respond(int status, std::string_view content_type, std::string_view body,
                               bool close_after, std::string_view headers) {
  beginAnswer(status, close_after);
  writeLocalResponse(ex_->out, status, content_type, body, ex_->keep_alive, ex_->head_request, headers);
  sendAnswer();
}

void ClientConnection::beginAnswer(int status, bool close_after) {
  ex_->abandonUpstream(NoReuse::kError);  // an error answer replaces the exchange
  if (close_after || worker_.draining()) ex_->keep_alive = false;
  ex_->response_started = true;
  ex_->record.status = status;
  completeResponse();
}

void ClientConnection::sendAnswer() {
  if (!ex_->keep_alive) setState(State::kClosing);
  // With keep-alive, the rest of the request (if any) must be read first.
  if (ex_->keep_alive && !ex_->request_complete) return;
  flushClient();
}

void ClientConnection::respondError(int status, bool close_after) {
  if (!ex_) beginExchange();  // refused before a request began
  dropHeldResponse();  // none of it went out: the error answer takes its place
  if (ex_->response_started) {
    close();
    return;
  }
  if (state_ == State::kHead || state_ == State::kIdle) setState(State::kExchange);
  beginAnswer(status, close_after);
  writeErrorResponse(ex_->out, status, ex_->keep_alive, ex_->head_request,
                     kind_ == ListenerKind::kAdmin ? kAdminHeaders : std::string_view());
  sendAnswer();
}

void ClientConnection::handleAdmin() {
  if (admin_denied_) {  // outside admin.allow: one short answer, then close
    LOG_DEBUG("admin: client %s is not in admin.allow: 403", peer_.text().c_str());
    respondError(403, true);
    return;
  }
  std::string_view path = reader_->target().path;
  if (!reader_->getOrHead()) {
    respondError(405, requestPending());
    return;
  }
  AdminAnswer answer = worker_.answerAdmin(path);
  respond(answer.status, answer.content_type, answer.body, requestPending(), answer.headers);
}

}  // namespace poolgate
