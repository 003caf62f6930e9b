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
constexpr size_t kHighWatermark = Exchange::kHighWatermark;
constexpr size_t kLowWatermark = Exchange::kLowWatermark;
constexpr uint64_t kDrainIdleGraceMs = 1000;
constexpr uint64_t kLingerMs = 2000;              // lingeringClose(): how long input is dropped
constexpr size_t kMaxLingerBytes = 256 * 1024;    // ...and how much of it

}  // namespace

ClientConnection::ClientConnection(ClientHost& worker, Fd fd, const SocketAddress& peer, ListenerKind kind,
                                   const TlsServer* tls, bool admin_denied, bool h2c)
    : worker_(worker),
      transport_(std::move(fd)),
      tls_server_(tls),
      peer_(IpAddress::of(peer)),
      kind_(kind),
      admin_denied_(admin_denied),
      h2c_(h2c && tls == nullptr && kind == ListenerKind::kProxy),
      timer_(worker.loop().timers(), [this] {
        DispatchScope scope(*this);
        onClientTimer();
      }) {}

ClientConnection::~ClientConnection() = default;

void ClientConnection::start() {
  worker_.onClientOpened(*this);
  // Counted at once (close() takes it off again): proxy clients as idle until
  // their first byte, admin connections apart, so that the client figures
  // describe proxy traffic only.
  WorkerSlot& stats = worker_.stats();
  ServerCounters::add(kind_ == ListenerKind::kAdmin ? stats.admin_active : stats.clients_idle);
  if (tls_server_ != nullptr && !transport_.startTls(tls_server_->context(), /*server=*/true)) {
    LOG_ERROR("client %s: %s", peer_.text().c_str(), tls().failure().c_str());
    close();
    return;
  }
  if (!worker_.loop().add(transport_.fd(), kEvents, this)) {
    close();
    return;
  }
  armClientTimer();
}

// ---- State and timers ------------------------------------------------------

void ClientConnection::beginExchange() {
  ex_ = worker_.exchanges().take();
  ex_->attach(*this, worker_, peer_, transport_.secure(), kind_ == ListenerKind::kAdmin);
}

void ClientConnection::enterDispatch() { ++depth_; }

void ClientConnection::leaveDispatch() {
  if (--depth_ == 0) settle();
}

// The outermost dispatch is over: an exchange that completed meanwhile is
// finished now, with nothing of it left on the stack. Finishing may parse a
// pipelined request that completes at once too: one more round.
void ClientConnection::settle() {
  ++depth_;
  while (finish_pending_ && state_ != State::kClosed) {
    finish_pending_ = false;
    finishExchange();
  }
  finish_pending_ = false;
  --depth_;
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
      uint64_t ms = transport_.secure() && !tls().established() ? tls_server_->handshakeTimeoutMs()
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
      if (ex_->queued_server >= 0) {  // the exchange's queue_timeout runs
        timer_.cancel();
        return;
      }
      if (!ex_->request_complete && ex_->pendingRequestBytes() < kHighWatermark) {
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
      if (!ex_->response_started || ex_->response_held) {
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
  DispatchScope scope(*this);
  if (lingering_) {
    discardInput();
    return;
  }
  if (transport_.secure()) {
    events = transport_.widen(events);
    if (!tls().established()) {
      if (!handshakeClient()) return;
      events |= EPOLLIN;  // the first request may have come with the handshake's last flight
      if (!h2_ && tls().alpn() == "h2") {
        startHttp2({});
        return;
      }
    }
  }
  if (h2_) {
    h2_->onIoEvent(events);
    return;
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
  switch (tls().handshake()) {
    case TlsResult::kDone:
      LOG_DEBUG("client %s: %s%s, ALPN \"%s\"", peer_.text().c_str(), tls().version(),
                tls().resumed() ? " (resumed)" : "", tls().alpn().c_str());
      armClientTimer();  // client_header from now on
      return true;
    case TlsResult::kWantRead:
    case TlsResult::kWantWrite:
      return false;
    case TlsResult::kFailed:
      break;
  }
  LOG_DEBUG("client %s: TLS handshake failed: %s", peer_.text().c_str(), tls().failure().c_str());
  lingeringClose();
  return false;
}

void ClientConnection::lingeringClose() {
  if (state_ == State::kClosed || lingering_) return;
  lingering_ = true;
  ::shutdown(transport_.fd(), SHUT_WR);
  timer_.arm(kLingerMs);
  discardInput();
}

void ClientConnection::discardInput() {
  char scrap[4096];
  size_t dropped = 0;
  while (dropped < kMaxLingerBytes) {
    ssize_t n = ::recv(transport_.fd(), scrap, sizeof scrap, 0);
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

void ClientConnection::readClient() {
  if (state_ == State::kTunnel) {
    relayClientBytes();
    return;
  }
  while (readable_ && (state_ == State::kIdle || state_ == State::kHead || state_ == State::kExchange)) {
    if (state_ == State::kExchange) {
      // One request at a time: after its end, pipelined bytes wait.
      if (ex_->request_complete) return;
      if (ex_->pendingRequestBytes() >= kHighWatermark) return;
    }
    // The reader says how much a read may bring (a head has its limits).
    if (!reader_) reader_ = worker_.readers().take();
    const ReadRoom room = reader_->reserve();
    if (room.size == 0) {
      respondError(room.refuse, true);
      return;
    }
    const size_t asked = room.size;
    ssize_t n = transport_.receive(room.at, asked);
    if (n > 0) {
      reader_->commit(static_cast<size_t>(n));
      // A short plain read drained the socket: the next bytes bring a new
      // edge, so no recv() is spent just to hear EAGAIN. (Not with TLS,
      // which may hold decrypted bytes, nor once the peer has hung up.)
      if (static_cast<size_t>(n) < asked && !transport_.secure() && !hung_up_) readable_ = false;
      if (state_ == State::kIdle) {
        timer_.cancel();  // keep-alive wait over: client_header runs from this first byte
        setState(State::kHead);
        beginExchange();
      }
      if (h2c_) {
        const int http2 = sniffPreface();
        if (http2 > 0) {
          std::string received(reader_->unread());  // once per connection
          startHttp2(received);
          return;
        }
        if (http2 == 0) {  // a prefix of the preface: read on
          armClientTimer();
          continue;
        }
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
    ssize_t n = transport_.receive(sink.writePtr(), sink.writable());
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
    if (event == RequestReader::Event::kHead) {
      onRequestHead();
    } else if (!ex_->onRequestEvent(event)) {
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
      ssize_t n = transport_.transmit(ex_->out.data(), ex_->out.size());
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
    // Reading on may bring the rest of the response at once (and through
    // onUpstreamComplete() another flushClient()).
    ex_->releaseHold();
  }
  if (ex_->out.empty() && !(ex_->spool && !ex_->spool->empty())) {
    ex_->out.releaseIfEmpty();
    if (ex_->response_complete && (state_ == State::kExchange || state_ == State::kClosing)) {
      finish_pending_ = true;  // when the dispatch ends (settle())
      if (depth_ == 0) settle();
      return;
    }
  }
  armClientTimer();
}

void ClientConnection::finishExchange() {
  ex_->log(accessLog());
  ex_->endSpools();
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

int ClientConnection::sniffPreface() {
  const std::string_view got = reader_->unread();
  const std::string_view preface = Http2Connection::kPreface;
  const size_t n = std::min(got.size(), preface.size());
  if (got.substr(0, n) != preface.substr(0, n)) {
    h2c_ = false;
    return -1;
  }
  return n == preface.size() ? 1 : 0;
}

void ClientConnection::startHttp2(std::string_view received) {
  h2c_ = false;
  timer_.cancel();
  ex_.reset();      // taken at the first byte, before the preface was known
  reader_.reset();  // `received` is a copy (or empty)
  setState(State::kIdle);
  h2_ = std::make_unique<Http2Connection>(*this, worker_, transport_, peer_);
  if (!h2_->start(received)) {
    close();
    return;
  }
  // The worker began to drain while this connection's preface (or its TLS
  // handshake) was on its way: it gets its GOAWAY as the others did.
  if (worker_.draining()) h2_->drain();
}

void ClientConnection::setHttp2Busy(bool busy) {
  if (state_ != State::kClosed) setState(busy ? State::kExchange : State::kIdle);
}

void ClientConnection::drain() {
  if (h2_) {
    h2_->drain();
    return;
  }
  // Idle: the timer shortens to the drain grace. Busy: the response now
  // being written says Connection: close.
  if (state_ == State::kIdle) armClientTimer();
}

void ClientConnection::close() {
  if (state_ == State::kClosed) return;
  if (h2_) h2_->abort();  // its streams' exchanges end here (499)
  // The exchange, if any, is kept until the connection is deleted: callers
  // up the stack may still look at it.
  if (ex_) {
    ex_->logClosed(accessLog(), worker_.loop().now());
    ex_->abandonUpstream(NoReuse::kClientGone);  // never pool a connection whose exchange was cut short
    ex_->leaveQueue();
    ex_->endSpools();
  }
  WorkerSlot& stats = worker_.stats();
  if (kind_ == ListenerKind::kAdmin) {
    ServerCounters::sub(stats.admin_active);
  } else {
    ServerCounters::sub(counted_active_ ? stats.clients_active : stats.clients_idle);
  }
  state_ = State::kClosed;
  timer_.cancel();
  worker_.loop().remove(transport_.fd());
  transport_.close();
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
    ex_->start();
  }
}

// ---- The exchange's requests ---------------------------------------------------

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

void ClientConnection::resumeReading() {
  armClientTimer();
  if (readable_) readClient();
}

void ClientConnection::relayTunnel() {
  if (readable_) relayClientBytes();
}

// ---- Answers made here ---------------------------------------------------------

void ClientConnection::respondError(int status, bool close_after) {
  if (!ex_) beginExchange();  // refused before a request began
  ex_->respondError(status, close_after);
}

void ClientConnection::handleAdmin() {
  if (admin_denied_) {  // outside admin.allow: one short answer, then close
    LOG_DEBUG("admin: client %s is not in admin.allow: 403", peer_.text().c_str());
    respondError(403, true);
    return;
  }
  std::string_view path = reader_->target().path;
  if (!reader_->getOrHead()) {
    respondError(405, ex_->requestPending());
    return;
  }
  AdminAnswer answer = worker_.answerAdmin(path);
  ex_->respond(answer.status, answer.content_type, answer.body, ex_->requestPending(), answer.headers);
}

}  // namespace poolgate
