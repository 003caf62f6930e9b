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
// Response buffering: a client that falls behind gets the spool's memory at
// once; its temporary file only once the client has kept the upstream waiting
// this long in all over one response, so that only slow clients pay for file
// writes.
constexpr uint64_t kDrainIdleGraceMs = 1000;
constexpr uint64_t kLingerMs = 2000;              // lingeringClose(): how long input is dropped
constexpr size_t kMaxLingerBytes = 256 * 1024;    // ...and how much of it

}  // namespace

ClientConnection::ClientConnection(ClientHost& worker, Fd fd, const SocketAddress& peer, ListenerKind kind,
                                   const TlsServer* tls, bool admin_denied)
    : worker_(worker),
      config_(worker.config()),
      fd_(std::move(fd)),
      tls_server_(tls),
      kind_(kind),
      admin_denied_(admin_denied),
      timer_(worker.loop().timers(), [this] { onClientTimer(); }),
      reader_(worker.buffers(), worker.config().limits, &worker.headerStore()),
      out_(worker.buffers()),
      held_(worker.buffers()) {
  peer.ipString(peer_ip_, sizeof peer_ip_);
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
    LOG_ERROR("client %s: %s", peer_ip_, tls_.failure().c_str());
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
  const TimeoutsConfig& t = config_.timeouts;
  if (!out_.empty() && !writable_) {
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
      if (queued_server_ >= 0) return;  // the queue_timeout armed in waitForConnection() runs
      if (!request_complete_ && pendingRequestBytes() < kHighWatermark) {
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
  if (!out_.empty() && !writable_) {
    LOG_DEBUG("client %s: send timeout", peer_ip_);
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
      if (queued_server_ >= 0) {
        Pool& pool = group_->server(static_cast<size_t>(queued_server_)).pool();
        pool.dequeue(*this);
        pool.noteQueueTimeout();
        queued_server_ = -1;
        record_.error = "queue_timeout";
        respondError(503, requestPending());
      } else if (!response_started_ || response_held_) {
        respondError(408, true);
      } else {
        close();
      }
      return;
    default:
      return;
  }
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
      LOG_DEBUG("client %s: %s%s, ALPN \"%s\"", peer_ip_, tls_.version(), tls_.resumed() ? " (resumed)" : "",
                tls_.alpn().c_str());
      armClientTimer();  // client_header from now on
      return true;
    case TlsResult::kWantRead:
    case TlsResult::kWantWrite:
      return false;
    case TlsResult::kFailed:
      break;
  }
  LOG_DEBUG("client %s: TLS handshake failed: %s", peer_ip_, tls_.failure().c_str());
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
      if (request_complete_) return;
      if (pendingRequestBytes() >= kHighWatermark) return;
    }
    // The reader says how much a read may bring (a head has its limits).
    const ReadRoom room = reader_.reserve();
    if (room.size == 0) {
      respondError(room.refuse, true);
      return;
    }
    const size_t asked = room.size;
    ssize_t n = receive(room.at, asked);
    if (n > 0) {
      reader_.commit(static_cast<size_t>(n));
      // A short plain read drained the socket: the next bytes bring a new
      // edge, so no recv() is spent just to hear EAGAIN. (Not with TLS,
      // which may hold decrypted bytes, nor once the peer has hung up.)
      if (static_cast<size_t>(n) < asked && !tls_ && !hung_up_) readable_ = false;
      if (state_ == State::kIdle) {
        timer_.cancel();  // keep-alive wait over: client_header runs from this first byte
        setState(State::kHead);
        record_.started_ms = worker_.loop().now();
      }
      parseClient();
      armClientTimer();
      continue;
    }
    if (n == 0) {
      // The client is done sending. Mid-request that is an abort; between
      // requests it is a normal close.
      readable_ = false;
      if (state_ == State::kExchange && request_complete_ && !response_complete_) return;
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
  if (state_ == State::kIdle) reader_.releaseBuffer();  // if empty
}

void ClientConnection::relayClientBytes() {
  if (in_relay_) return;  // flush() below calls back through onUpstreamDrained()
  in_relay_ = true;
  relayLoop();
  in_relay_ = false;
}

void ClientConnection::relayLoop() {
  while (readable_ && state_ == State::kTunnel && upstream_ != nullptr) {
    if (upstream_->pendingOutput() >= kHighWatermark) return;  // onUpstreamDrained() resumes
    Buffer& sink = upstream_->output();
    if (!sink.ensureWritable(16 * 1024)) {
      close();
      return;
    }
    ssize_t n = receive(sink.writePtr(), sink.writable());
    if (n > 0) {
      sink.commit(static_cast<size_t>(n));
      upstream_->flush();
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
  while (state_ == State::kHead || (state_ == State::kExchange && !request_complete_)) {
    if (!reader_.hasWork()) return;
    const RequestReader::Event event = reader_.next();
    switch (event) {
      case RequestReader::Event::kNeedMore:
        // Sent only now that the reader has taken all it was given, so that
        // a framing error later in the same bytes (a bad chunk) sends nothing.
        if (upstream_ != nullptr) upstream_->flush();
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
  if (response_held_) {
    if (!request_complete_ && out_.size() < kHighWatermark) {
      armClientTimer();
      return;
    }
    response_held_ = false;  // the request has ended, or the response is too big to hold
  }
  for (;;) {
    while (writable_ && !out_.empty()) {
      ssize_t n = transmit(out_.data(), out_.size());
      if (n > 0) {
        out_.consume(static_cast<size_t>(n));
        record_.bytes_sent += static_cast<uint64_t>(n);
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
    // Out of out_, on to what the spool kept (one high-water mark at a time).
    if (!writable_ || !out_.empty() || !spool_ || spool_->empty()) break;
    if (spool_->drainInto(out_, kHighWatermark) == 0) {
      ServerCounters::add(worker_.stats().buffer_errors_total);
      LOG_ERROR("response buffering: cannot read back a temporary file: %s; response cut short", strerror(errno));
      abandonUpstream(NoReuse::kError);
      close();
      return;
    }
    ServerCounters::set(worker_.stats().buffered_memory, worker_.spoolBudget().in_use);
  }
  const bool spooled = spool_ && !spool_->empty();
  if (out_.size() < kLowWatermark && !(spooled && spool_->full())) releaseHold();
  if (out_.empty() && !spooled) {
    out_.releaseIfEmpty();
    if (response_complete_ && (state_ == State::kExchange || state_ == State::kClosing)) {
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
  if (response_complete_) return;  // a held response replaced by an error answer: counted once
  response_complete_ = true;
  if (kind_ == ListenerKind::kProxy) worker_.onRequestDone();
}

void ClientConnection::finishExchange() {
  logExchange();
  endSpool();
  endBodySpool();
  // A response sent as keep-alive is honoured even if the worker began to
  // drain meanwhile: the client may already be sending its next request.
  if (!keep_alive_ || !request_complete_ || state_ == State::kClosing) {
    close();
    return;
  }
  // Reset for the next request on this connection.
  first_request_ = false;
  group_ = nullptr;
  server_index_ = -1;
  tried_.clear();
  attempts_ = 0;
  stale_retried_ = false;
  head_request_ = idempotent_ = request_chunked_ = request_complete_ = body_started_ = false;
  response_started_ = response_complete_ = response_held_ = keep_alive_ = expect_continue_ = upgrade_ = false;
  buffer_response_ = spooling_ = false;
  body_path_ = BodyPath::kDirect;
  body_rechunk_ = body_end_sent_ = host_missing_ = false;
  upstream_held_ = false;
  framing_ = Framing::kNone;
  held_.clear();
  held_.releaseIfEmpty();
  timer_.cancel();
  setState(reader_.unread().empty() ? State::kIdle : State::kHead);
  if (state_ == State::kHead) record_.started_ms = worker_.loop().now();
  reader_.nextMessage();
  parseClient();  // pipelined requests already buffered
  if (state_ == State::kIdle) reader_.releaseHeaders();  // nothing pipelined: an idle client holds none
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
  if (record_pending_) {
    if (record_.status == 0) record_.status = 499;  // nginx's "client closed request"
    if (record_.error == nullptr) record_.error = "client_closed";
    if (record_.upstream_done_ms == 0) record_.upstream_done_ms = worker_.loop().now();
    logExchange();
  }
  abandonUpstream(NoReuse::kClientGone);  // never pool a connection whose exchange was cut short
  leaveQueue();
  endSpool();
  endBodySpool();
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
  const HttpHead& head = reader_.head();
  const char* base = reader_.base();
  beginRecord(head, base);
  head_request_ = reader_.headRequest();
  idempotent_ = reader_.idempotent();
  request_chunked_ = reader_.chunked();
  keep_alive_ = reader_.keepAlive();
  upgrade_ = reader_.upgrade();

  if (admin_denied_) {  // before anything else about the request: 403 and close
    handleAdmin();
    return;
  }
  if (int status = reader_.verdict(); status != 0) {
    respondError(status, true);
    return;
  }
  expect_continue_ = equalsIgnoreCase(findHeader(head, base, "expect"), "100-continue");

  // A local answer that keeps the connection lets the reader go on to the
  // end of the (bodyless) request; one that closes it stops reading here.
  if (kind_ == ListenerKind::kAdmin) {
    handleAdmin();
  } else {
    startExchange();
  }
}

void ClientConnection::onRequestError() {
  if (reader_.bodyTooLarge()) {
    refuseOversizedBody();
    return;
  }
  if (response_started_ && !response_held_) {
    close();
    return;
  }
  if (reader_.errorStatus() == 400) {
    LOG_DEBUG("client %s: bad request: %s (%s)", peer_ip_, reader_.errorName(), reader_.errorReason());
  }
  respondError(reader_.errorStatus(), true);
}

bool ClientConnection::requestPending() const {
  if (request_complete_) return false;
  return reader_.bodyPending();
}

void ClientConnection::startExchange() {
  const HttpHead& head = reader_.head();
  const char* base = reader_.base();
  const RequestTarget& target = reader_.target();
  const std::string_view host = reader_.host();
  const RouteConfig* route = worker_.route(hostWithoutPort(host), target.path);
  if (route == nullptr) {
    respondError(404, requestPending());
    return;
  }
  group_ = &worker_.upstream(route->upstream_index);
  route_buffers_ = route->response_buffering;
  // Copied: a retry picks again after the head has left the read buffer.
  hash_value_.clear();
  if (!group_->hashHeader().empty()) hash_value_.assign(findHeader(head, base, group_->hashHeader()));
  if (config_.buffering.request && route->request_buffering && !upgrade_ && reader_.bodyPending()) {
    collectBody();
    return;
  }
  connectUpstream();
  Buffer* sink = requestSink();
  if (sink == nullptr) return;  // an error response is on its way
  // (Queued for max_conns, the head and body wait in held_ until a connection comes.)
  Server& server = group_->server(static_cast<size_t>(upstream_ != nullptr ? server_index_ : queued_server_));
  writeForwardedRequestHead(*sink, reader_.parser(), base, forwardContext(server.name()));
  answerExpectation();  // the body streams when it comes
  // Not sent yet: parseClient() flushes once the reader has taken all it read.
}

ForwardContext ClientConnection::forwardContext(std::string_view fallback_host) const {
  const std::string_view host = reader_.host();
  return ForwardContext{peer_ip_, tls_ ? "https" : "http", host.empty() ? fallback_host : host,
                        reader_.target().forward,
                        upgrade_ ? findHeader(reader_.head(), reader_.base(), "upgrade") : std::string_view()};
}

void ClientConnection::answerExpectation() {
  if (!expect_continue_ || reader_.versionMinor() < 1) return;
  // We answer the expectation ourselves: the upstream never sees it.
  out_.append("HTTP/1.1 100 Continue\r\n\r\n");
  flushClient();
}

// ---- Request buffering -------------------------------------------------------

void ClientConnection::collectBody() {
  body_path_ = BodyPath::kCollect;
  // The head leaves the read buffer as the body comes: forwarded now, all
  // but its framing, which depends on how much body there will be.
  host_missing_ = reader_.host().empty();
  writeForwardedRequestFields(held_, reader_.parser(), reader_.base(), forwardContext({}));
  answerExpectation();
}

void ClientConnection::storeBody(std::string_view bytes) {
  if (!body_spool_) body_spool_ = std::make_unique<Spool>(worker_.buffers(), worker_.spoolBudget(), worker_.spoolLimits());
  if (!body_spool_->append(bytes)) {
    bodySpoolFailed();
    return;
  }
  ServerCounters::set(worker_.stats().buffered_memory, worker_.spoolBudget().in_use);
  if (body_path_ == BodyPath::kSpooled) {
    pumpBody();
  } else if (body_spool_->full()) {
    sendCollectedBody();  // larger than memory and max_temp_file allow: the rest streams
  }
}

void ClientConnection::sendCollectedBody() {
  // Whole, the body goes with a Content-Length, whatever its framing was
  // (what app servers handle best). Not whole, the rest streams, chunked if
  // it came chunked.
  const bool whole = request_complete_;
  body_path_ = BodyPath::kSpooled;
  body_rechunk_ = !whole && request_chunked_;
  const uint64_t length = whole ? (body_spool_ ? body_spool_->size() : 0) : reader_.parser().declaredLength();
  connectUpstream();
  if (requestSink() == nullptr) return;  // an error response is on its way
  if (host_missing_) {
    const int index = upstream_ != nullptr ? server_index_ : queued_server_;
    appendHeader(held_, "Host", group_->server(static_cast<size_t>(index)).name());
  }
  endForwardedRequestHead(held_, body_rechunk_, !body_rechunk_, length);
  if (upstream_ == nullptr) return;  // queued: onPoolAvailable() sends held_
  upstream_->output().append(held_.data(), held_.size());
  held_.clear();
  held_.releaseIfEmpty();
  pumpBody();
}

void ClientConnection::pumpBody() {
  if (pumping_) {  // from flush(), through onUpstreamDrained(): the loop below goes on
    pump_again_ = true;
    return;
  }
  pumping_ = true;
  do {
    pump_again_ = false;
    if (upstream_ == nullptr) break;
    Buffer& sink = upstream_->output();
    while (body_spool_ && !body_spool_->empty() && upstream_->pendingOutput() < kHighWatermark) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(body_spool_->size(), kHighWatermark));
      size_t moved = 0;
      if (body_rechunk_) {
        Buffer piece(worker_.buffers());
        moved = body_spool_->drainInto(piece, want);
        appendBodyPiece(sink, Framing::kChunked, piece.data(), moved);
      } else {
        moved = body_spool_->drainInto(sink, want);
      }
      if (moved == 0) {
        pumping_ = false;
        bodySpoolFailed();
        return;
      }
      body_started_ = true;
    }
    if (body_rechunk_ && !body_end_sent_ && request_complete_ && (!body_spool_ || body_spool_->empty())) {
      sink.append("0\r\n\r\n");
      body_end_sent_ = true;
    }
    ServerCounters::set(worker_.stats().buffered_memory, worker_.spoolBudget().in_use);
    upstream_->flush();  // may end in onUpstreamDrained() (another round) or an error
  } while (pump_again_ && state_ == State::kExchange && !requestSent() && body_spool_ && !body_spool_->empty());
  pumping_ = false;
}

void ClientConnection::bodySpoolFailed() {
  const int error = errno;
  ServerCounters::add(worker_.stats().buffer_errors_total);
  if (worker_.bufferLog().admit(strerror(error))) {
    LOG_ERROR("request buffering: temporary file in %s: %s; request refused", worker_.spoolLimits().directory.c_str(),
              strerror(error));
  }
  record_.error = "buffer_failed";
  // Collecting, nothing has reached an upstream: 507. Sending, the upstream
  // has part of the request: that connection goes, and the client gets 502.
  const int status = body_path_ == BodyPath::kCollect ? 507 : 502;
  abandonUpstream(NoReuse::kRequestNotSent);
  respondError(status, true);
}

bool ClientConnection::requestSent() const {
  if (!request_complete_) return false;
  if (body_spool_ && !body_spool_->empty()) return false;
  return !body_rechunk_ || body_end_sent_;
}

Buffer* ClientConnection::requestSink() {
  if (upstream_ != nullptr) return &upstream_->output();
  if (queued_server_ >= 0) return &held_;
  return nullptr;
}

size_t ClientConnection::pendingRequestBytes() const {
  if (body_path_ != BodyPath::kDirect) {
    // The spool takes what comes, up to its caps.
    if (discardingBody()) return 0;
    return body_spool_ && body_spool_->full() ? SIZE_MAX : 0;
  }
  if (upstream_ != nullptr) return upstream_->pendingOutput();
  if (discardingBody()) return 0;  // read and dropped
  if (queued_server_ >= 0) return held_.size();
  return SIZE_MAX;  // nowhere to put request bytes
}

void ClientConnection::waitForConnection(int server_index, bool at_front) {
  const PoolConfig& pool_config = group_->config().pool;
  if (pool_config.queue_timeout <= 0) {
    group_->server(static_cast<size_t>(server_index)).pool().noteQueueTimeout();
    respondError(503, requestPending());
    return;
  }
  queued_server_ = server_index;
  group_->server(static_cast<size_t>(server_index)).pool().enqueue(*this, at_front);
  if (!at_front) timer_.arm(secondsToMs(pool_config.queue_timeout));
}

void ClientConnection::leaveQueue() {
  if (queued_server_ < 0) return;
  group_->server(static_cast<size_t>(queued_server_)).pool().dequeue(*this);
  queued_server_ = -1;
}

void ClientConnection::onPoolAvailable() noexcept {
  // The pool has taken us off its queue; the queue_timeout timer still runs.
  queued_server_ = -1;
  connectUpstream(/*woken=*/true);
  if (upstream_ == nullptr) return;  // queued again, or answered with an error
  timer_.cancel();
  upstream_->output().append(held_.data(), held_.size());
  held_.clear();
  held_.releaseIfEmpty();
  if (body_path_ == BodyPath::kSpooled) {
    pumpBody();
  } else {
    upstream_->flush();
  }
  if (upstream_ != nullptr) {
    armClientTimer();
    if (readable_ && !request_complete_) readClient();
  }
}


void ClientConnection::onRequestBody(RequestReader::Event event) {
  // (Counted against max_body_bytes by the reader, also while the body is
  // read and dropped after the app has answered: discardingBody().)
  if (body_path_ != BodyPath::kDirect) {
    // Decoded bytes only: the framing it goes with is ours (sendCollectedBody()).
    if (event == RequestReader::Event::kBody && !discardingBody()) storeBody(reader_.body());
    return;
  }
  Buffer* sink = requestSink();
  if (sink == nullptr) return;  // discarded
  if (event == RequestReader::Event::kBody) body_started_ = true;
  reader_.forward(*sink);  // re-chunked for a chunked request
}

void ClientConnection::onRequestComplete() {
  request_complete_ = true;
  if (body_path_ == BodyPath::kCollect) {
    sendCollectedBody();
    return;
  }
  if (body_path_ == BodyPath::kSpooled) {
    pumpBody();  // the last chunk, after the spool, where one is due
  } else if (Buffer* sink = requestSink(); sink != nullptr) {
    reader_.forward(*sink);  // the last chunk
  }
  // The rest (pipelined requests) waits for its turn.
  if (upstream_ != nullptr) {
    upstream_->flush();
    // The request's end releases a response held until then (holdsResponse()).
    if (response_held_ && state_ == State::kExchange) flushClient();
  } else if (response_complete_) {
    flushClient();  // a local answer (or a held response) waited for the request's end
  }
}

void ClientConnection::refuseOversizedBody() {
  // What was queued for the upstream and not sent yet goes with the
  // connection, which can never carry another request: its body is cut.
  abandonUpstream(NoReuse::kRequestNotSent);
  record_.error = "body_too_large";
  if (response_started_ && !response_held_) {
    close();  // response bytes went out: cut it, never let it pass as complete
    return;
  }
  respondError(413, true);  // replaces a held response
}

bool ClientConnection::holdsResponse() const {
  return request_chunked_ && !request_complete_ && config_.limits.max_body_bytes != 0;
}

bool ClientConnection::discardingBody() const {
  return response_held_ && upstream_ == nullptr && !request_complete_ && state_ == State::kExchange;
}

void ClientConnection::dropHeldResponse() {
  if (!response_held_) return;
  out_.clear();  // none of it was sent (nothing was before it: see writeResponseHead)
  response_held_ = false;
  response_started_ = false;
  framing_ = Framing::kNone;
}

// ---- Upstream selection ------------------------------------------------------

void ClientConnection::connectUpstream(bool woken) {
  const uint64_t now = worker_.loop().now();
  TriedSet skipped = tried_;  // plus, for this round only, servers at max_conns
  int capped = -1;            // the first of those: where to wait
  for (;;) {
    server_index_ = group_->pick(skipped, now, pickContext());
    if (server_index_ < 0) {
      if (capped >= 0) {
        waitForConnection(capped, woken);
      } else {
        respondError(attempts_ == 0 ? 503 : 502, requestPending());
      }
      return;
    }
    Server& server = group_->server(static_cast<size_t>(server_index_));
    // The warmest pooled connection first.
    if (PoolMember* member = server.pool().checkout()) {
      auto* conn = static_cast<UpstreamConnection*>(member);
      conn->attach(*this);
      useConnection(conn);
      return;
    }
    int error = 0;
    UpstreamConnection* conn =
        UpstreamConnection::open(worker_.loop(), worker_.buffers(), &worker_.headerStore(), server, config_.timeouts, *this, &error);
    if (conn != nullptr) {
      useConnection(conn);
      return;
    }
    skipped.add(static_cast<size_t>(server_index_));
    if (error == UpstreamConnection::kAtCapacity) {
      if (capped < 0) capped = server_index_;
      continue;
    }
    if (isLocalResourceError(error)) {
      // Out of descriptors, ports or memory here: not the server's fault, and
      // no other server would fare better. 502 at once, counted for nobody.
      LOG_UPSTREAM_FAILURE(server, strerror(error), "upstream %s: cannot open a connection: %s (a limit of this host)",
                           server.name().c_str(), strerror(error));
      respondError(502, requestPending());
      return;
    }
    LOG_UPSTREAM_FAILURE(server, strerror(error), "upstream %s: connect: %s", server.name().c_str(), strerror(error));
    server.noteFailure(now, group_->inServiceCount() == 1);
    tried_.add(static_cast<size_t>(server_index_));
    if (++attempts_ > group_->config().retries) {
      respondError(502, requestPending());
      return;
    }
    ServerCounters::add(server.counters().retries_total);  // on to the next server
  }
}

PickContext ClientConnection::pickContext() const {
  PickContext context;
  context.client_ip = peer_ip_;
  context.hash_value = hash_value_;
  return context;
}

void ClientConnection::useConnection(UpstreamConnection* conn) {
  upstream_ = conn;
  conn->beginRequest(head_request_);
  record_.upstream = conn->server().name();
  record_.upstream_started_ms = worker_.loop().now();
  record_.upstream_reused = conn->reused();
}

void ClientConnection::beginRecord(const HttpHead& head, const char* base) {
  record_pending_ = true;
  record_.status = 0;
  record_.bytes_sent = 0;
  record_.upstream = {};
  record_.upstream_started_ms = record_.upstream_done_ms = 0;
  record_.upstream_reused = false;
  record_.error = nullptr;
  record_.http_minor = reader_.versionMinor();
  if (worker_.accessLog() == nullptr) return;
  if (!record_.text) record_.text = std::make_unique<AccessText>();  // once per connection
  AccessText& text = *record_.text;
  text.method.assign(head.method.view(base));
  text.target.assign(head.target.view(base));
  text.referer.assign(findHeader(head, base, "referer"));
  text.user_agent.assign(findHeader(head, base, "user-agent"));
}

void ClientConnection::logExchange() {
  if (!record_pending_) return;
  record_pending_ = false;
  // The admin listener's polling (/stats every second) stays out of the access log.
  if (kind_ == ListenerKind::kAdmin) return;
  if (AccessLog* log = worker_.accessLog()) log->write(record_, peer_ip_);
}

void ClientConnection::abandonUpstream(NoReuse reason) {
  if (upstream_ == nullptr) return;
  UpstreamConnection* conn = upstream_;
  upstream_ = nullptr;
  upstream_held_ = false;
  ServerCounters& counters = conn->server().counters();
  ServerCounters::add(counters.no_reuse_total[static_cast<int>(reason)]);
  conn->close();
}

void ClientConnection::releaseUpstream() {
  if (upstream_ == nullptr) return;
  UpstreamConnection* conn = upstream_;
  upstream_ = nullptr;
  upstream_held_ = false;  // nothing left to hold back
  conn->release(requestSent(), worker_.draining());
}

void ClientConnection::onUpstreamConnected() noexcept {
  if (group_ != nullptr && server_index_ >= 0) group_->server(static_cast<size_t>(server_index_)).noteSuccess();
  upstream_->flush();
}

void ClientConnection::onUpstreamDrained() noexcept {
  if (state_ == State::kTunnel) {
    if (readable_) relayClientBytes();
    return;
  }
  if (state_ == State::kExchange && body_path_ == BodyPath::kSpooled) pumpBody();
  // The upstream took everything: read more of the request body.
  if (state_ == State::kExchange && !request_complete_) {
    armClientTimer();
    if (readable_) readClient();
  }
}

bool ClientConnection::retryAfter(UpstreamError error) {
  UpstreamConnection* failed = upstream_;
  upstream_ = nullptr;
  if (response_started_ || failed == nullptr) return false;
  const bool stale = failed->reused() && !failed->responseStarted() &&
                     (error == UpstreamError::kClosedEarly || error == UpstreamError::kSendFailed);
  const bool connect_failed = error == UpstreamError::kConnectFailed || error == UpstreamError::kConnectTimeout ||
                              error == UpstreamError::kTlsFailed;
  if (!stale && !connect_failed) return false;
  if (stale && !idempotent_ && body_started_) return false;
  Server& server = failed->server();
  if (connect_failed) {
    LOG_UPSTREAM_FAILURE(server, toString(error), "upstream %s: %s", server.name().c_str(), toString(error));
    server.noteFailure(worker_.loop().now(), group_->inServiceCount() == 1);
    tried_.add(static_cast<size_t>(server_index_));
    if (++attempts_ > group_->config().retries) return false;
  } else {
    // The keep-alive race: the server closed the pooled connection as we
    // reused it. One more try on a fresh connection to the same server.
    if (stale_retried_) return false;
    stale_retried_ = true;
  }
  ServerCounters::add(server.counters().retries_total);
  Buffer replay(worker_.buffers());
  if (!failed->takeReplay(replay)) return false;
  if (stale) {
    int err = 0;
    UpstreamConnection* conn =
        UpstreamConnection::open(worker_.loop(), worker_.buffers(), &worker_.headerStore(), server, config_.timeouts, *this, &err);
    if (conn == nullptr) return false;
    useConnection(conn);
  } else {
    connectUpstream();
  }
  Buffer* sink = requestSink();
  if (sink == nullptr) return true;  // connectUpstream() answered the client
  sink->append(replay.data(), replay.size());
  if (upstream_ != nullptr) upstream_->flush();
  return true;
}

void ClientConnection::onUpstreamError(UpstreamError error) noexcept {
  if (state_ != State::kExchange && state_ != State::kClosing) return;
  record_.upstream_done_ms = worker_.loop().now();
  record_.error = toString(error);
  Server* server = upstream_ != nullptr ? &upstream_->server() : nullptr;
  if (retryAfter(error)) return;
  if (response_started_ && !response_held_) {
    // Part of the response has gone out: the client can only learn of the
    // failure by the connection closing. Flush what we have, then close.
    if (server != nullptr) {
      LOG_UPSTREAM_FAILURE(*server, toString(error), "upstream %s: response cut short: %s", server->name().c_str(),
                           toString(error));
    }
    keep_alive_ = false;
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
    if (!upgrade_ || !request_complete_) return -1;  // a switch nobody asked for: 502
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
  writeSwitchingProtocolsHead(out_, response, base);
  record_.status = 101;
  response_started_ = true;
  keep_alive_ = false;
  framing_ = Framing::kClose;  // raw bytes from here on
  if (kind_ == ListenerKind::kProxy) worker_.onRequestDone();  // counted now: a tunnel may last hours
  setState(State::kTunnel);
  timer_.cancel();
  // Bytes the client sent after its request already belong to the new protocol.
  if (!reader_.unread().empty()) {
    upstream_->output().append(reader_.unread());
    reader_.dropUnread();
    upstream_->flush();
  }
  flushClient();
  if (state_ == State::kTunnel && readable_) relayClientBytes();
}

void ClientConnection::writeInterimResponse(const HttpParser& parser, const char* base) {
  // We answered Expect ourselves; HTTP/1.0 clients get no 1xx at all.
  if (!interimGoesToClient(parser.statusCode(), reader_.versionMinor() >= 1)) return;
  writeInterimResponseHead(out_, parser, base);
  flushClient();
}

namespace {
bool startsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && equalsIgnoreCase(text.substr(0, prefix.size()), prefix);
}
}  // namespace

void ClientConnection::writeResponseHead(const HttpParser& parser, const char* base) {
  const bool client_http11 = reader_.versionMinor() >= 1;
  // Held only when nothing else waits in out_ (a 1xx or our 100 Continue),
  // so that dropping it drops nothing that was partly sent.
  const bool hold = holdsResponse() && out_.empty();
  framing_ = chooseResponseFraming(parser, head_request_, client_http11);
  // Read ahead of a slow client, unless the route or the response asks for
  // a stream: server-sent events, or the app's own X-Accel-Buffering: no.
  buffer_response_ = config_.buffering.response && route_buffers_ && framing_ != Framing::kNone &&
                     !startsWithIgnoreCase(findHeader(parser.head(), base, "content-type"), "text/event-stream") &&
                     !equalsIgnoreCase(findHeader(parser.head(), base, "x-accel-buffering"), "no");
  // Keep the client only if its request has fully arrived and nothing else
  // forbids it.
  if (framing_ == Framing::kClose || !request_complete_ || worker_.draining()) keep_alive_ = false;
  response_started_ = true;
  response_held_ = hold;
  writeClientResponseHead(out_, parser, base, framing_, keep_alive_, client_http11);
  record_.status = parser.statusCode();
}

void ClientConnection::onUpstreamBody(const char* at, size_t length) noexcept {
  if (length == 0) return;
  if (spooling_ && (out_.size() >= kHighWatermark || (spool_ && !spool_->empty()))) {
    if (!spoolBody(at, length)) {
      abandonUpstream(NoReuse::kError);
      close();  // the head is out: the client sees a truncated response
      return;
    }
    if (spool_->full()) holdUpstream();  // past its caps: backpressure
    return;
  }
  appendBodyPiece(out_, framing_, at, length);
  if (out_.size() >= kHighWatermark) {
    // Buffering: the next pieces go to the spool (memory first). Streaming:
    // the upstream waits for the client.
    if (buffer_response_) {
      spooling_ = true;
    } else {
      holdUpstream();
    }
    flushClient();
  }
}

// The upstream waits for the client: out_ is full and, with buffering, so
// is the spool (memory, then its temporary file, up to their caps).
void ClientConnection::holdUpstream() {
  if (upstream_ == nullptr || upstream_held_) return;
  upstream_held_ = true;
  upstream_->pauseReading(true);
}

void ClientConnection::releaseHold() {
  if (!upstream_held_) return;
  upstream_held_ = false;
  if (upstream_ != nullptr) upstream_->pauseReading(false);
}

bool ClientConnection::spoolBody(const char* at, size_t length) {
  if (!spool_) {
    spool_ = std::make_unique<Spool>(worker_.buffers(), worker_.spoolBudget(), worker_.spoolLimits());
  }
  bool ok = true;
  if (framing_ == Framing::kChunked) {
    char line[24];
    const int n = snprintf(line, sizeof line, "%zx\r\n", length);
    ok = spool_->append(line, static_cast<size_t>(n)) && spool_->append(at, length) && spool_->append("\r\n");
  } else {
    ok = spool_->append(at, length);
  }
  WorkerSlot& stats = worker_.stats();
  ServerCounters::set(stats.buffered_memory, worker_.spoolBudget().in_use);
  if (!ok) {
    ServerCounters::add(stats.buffer_errors_total);
    if (worker_.bufferLog().admit(strerror(errno))) {
      LOG_ERROR("response buffering: cannot write a temporary file in %s: %s; response cut short",
                worker_.spoolLimits().directory.c_str(), strerror(errno));
    }
  }
  return ok;
}

namespace {
// A spool's figures, counted as it goes.
void countSpool(WorkerSlot& stats, const Spool& spool, std::atomic<uint64_t>& total, std::atomic<uint64_t>& disk) {
  if (spool.peak() == 0) return;
  ServerCounters::add(total);
  if (spool.usedFile()) ServerCounters::add(disk);
  ServerCounters::add(stats.buffered_bytes_total, spool.appended());
  if (spool.peak() > ServerCounters::get(stats.buffered_largest)) ServerCounters::set(stats.buffered_largest, spool.peak());
}
}  // namespace

void ClientConnection::endSpool() {
  WorkerSlot& stats = worker_.stats();
  if (released_ms_ != 0) {
    ServerCounters::add(stats.upstream_time_saved_ms_total, worker_.loop().now() - released_ms_);
    released_ms_ = 0;
  }
  if (!spool_) return;
  countSpool(stats, *spool_, stats.buffered_total, stats.buffered_disk_total);
  spool_.reset();  // an idle keep-alive client holds no spool
  ServerCounters::set(stats.buffered_memory, worker_.spoolBudget().in_use);
}

void ClientConnection::endBodySpool() {
  if (!body_spool_) return;
  WorkerSlot& stats = worker_.stats();
  countSpool(stats, *body_spool_, stats.buffered_requests_total, stats.buffered_requests_disk_total);
  body_spool_.reset();
  ServerCounters::set(stats.buffered_memory, worker_.spoolBudget().in_use);
}

void ClientConnection::onUpstreamInputDone() noexcept {
  if (!out_.empty()) flushClient();
}

void ClientConnection::onUpstreamComplete() noexcept {
  record_.upstream_done_ms = worker_.loop().now();
  if (state_ == State::kTunnel) {  // the upstream closed the tunnel: flush what it sent, then close
    abandonUpstream(NoReuse::kUpstreamClose);
    response_complete_ = true;  // (counted in requests when the tunnel began)
    setState(State::kClosing);
    flushClient();
    return;
  }
  if (spool_ && !spool_->empty()) {
    // The client is still behind: the end of the body queues after the spool.
    if (framing_ == Framing::kChunked && !spool_->append("0\r\n\r\n")) {
      abandonUpstream(NoReuse::kError);
      close();
      return;
    }
  } else {
    appendBodyEnd(out_, framing_);
  }
  completeResponse();
  if (!request_complete_) keep_alive_ = false;
  if (spool_ && !spool_->empty()) released_ms_ = worker_.loop().now();  // the client still reads: time the app got back
  releaseUpstream();
  if (response_held_ && !request_complete_) {
    // The app answered before the body ended. Its answer waits until the
    // rest of the body has been read (and dropped) within max_body_bytes;
    // past it, the client gets 413 instead.
    armClientTimer();
    if (readable_) readClient();
    return;
  }
  if (!keep_alive_) setState(State::kClosing);
  flushClient();
}

// ---- Answers made here ---------------------------------------------------------

void ClientConnection::respond(int status, std::string_view content_type, std::string_view body,
                               bool close_after, std::string_view headers) {
  beginAnswer(status, close_after);
  writeLocalResponse(out_, status, content_type, body, keep_alive_, head_request_, headers);
  sendAnswer();
}

void ClientConnection::beginAnswer(int status, bool close_after) {
  abandonUpstream(NoReuse::kError);  // an error answer replaces the exchange
  if (close_after || worker_.draining()) keep_alive_ = false;
  response_started_ = true;
  record_.status = status;
  completeResponse();
}

void ClientConnection::sendAnswer() {
  if (!keep_alive_) setState(State::kClosing);
  // With keep-alive, the rest of the request (if any) must be read first.
  if (keep_alive_ && !request_complete_) return;
  flushClient();
}

void ClientConnection::respondError(int status, bool close_after) {
  dropHeldResponse();  // none of it went out: the error answer takes its place
  if (response_started_) {
    close();
    return;
  }
  if (state_ == State::kHead || state_ == State::kIdle) setState(State::kExchange);
  beginAnswer(status, close_after);
  writeErrorResponse(out_, status, keep_alive_, head_request_,
                     kind_ == ListenerKind::kAdmin ? kAdminHeaders : std::string_view());
  sendAnswer();
}

void ClientConnection::handleAdmin() {
  if (admin_denied_) {  // outside admin.allow: one short answer, then close
    LOG_DEBUG("admin: client %s is not in admin.allow: 403", peer_ip_);
    respondError(403, true);
    return;
  }
  std::string_view path = reader_.target().path;
  if (!reader_.getOrHead()) {
    respondError(405, requestPending());
    return;
  }
  AdminAnswer answer = worker_.answerAdmin(path);
  respond(answer.status, answer.content_type, answer.body, requestPending(), answer.headers);
}

}  // namespace poolgate
