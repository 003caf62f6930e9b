#include "upstream/upstream_connection.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/socket.h"
#include "upstream/upstream.h"

namespace poolgate {

namespace {
constexpr uint32_t kEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
constexpr uint64_t kProbeAfterIdleMs = 100;  // probeIdle(): idle shorter than this, no recv(MSG_PEEK)
constexpr size_t kMaxReplayBytes = 64 * 1024;  // request bytes kept for a retry
}  // namespace

const char* toString(UpstreamError error) {
  switch (error) {
    case UpstreamError::kNone: return "none";
    case UpstreamError::kConnectFailed: return "connect_failed";
    case UpstreamError::kConnectTimeout: return "connect_timeout";
    case UpstreamError::kSendFailed: return "send_failed";
    case UpstreamError::kSendTimeout: return "send_timeout";
    case UpstreamError::kReadTimeout: return "read_timeout";
    case UpstreamError::kClosedEarly: return "closed_early";
    case UpstreamError::kTruncated: return "truncated";
    case UpstreamError::kBadResponse: return "bad_response";
    case UpstreamError::kTlsFailed: return "tls_failed";
  }
  return "unknown";
}

UpstreamConnection::UpstreamConnection(EventLoop& loop, BufferPool& buffers, HeaderStore* headers,
                                       Server& server, const TimeoutsConfig& timeouts, Fd fd, uint64_t created_ms)
    : PoolMember(created_ms),
      loop_(loop),
      server_(server),
      timeouts_(timeouts),
      transport_(std::move(fd)),
      timer_(loop.timers(), [this] { onTimer(); }),
      out_(buffers),
      reader_(buffers, headers) {}

UpstreamConnection* UpstreamConnection::open(EventLoop& loop, BufferPool& buffers, HeaderStore* headers,
                                             Server& server, const TimeoutsConfig& timeouts, UpstreamUser& user,
                                             int* error) {
  if (!server.pool().reserve()) {
    *error = kAtCapacity;
    return nullptr;
  }
  Fd fd = startConnect(server.address(), error);
  if (!fd) {
    server.pool().unreserve();
    server.pool().noteFailed();
    return nullptr;
  }
  auto* conn = new UpstreamConnection(loop, buffers, headers, server, timeouts, std::move(fd), loop.now());
  if (!loop.add(conn->transport_.fd(), kEvents, conn)) {
    *error = errno;
    server.pool().unreserve();
    server.pool().noteFailed();
    delete conn;
    return nullptr;
  }
  server.pool().noteConnecting();
  conn->user_ = &user;
  conn->timer_.arm(secondsToMs(timeouts.upstream_connect));
  return conn;
}

void UpstreamConnection::attach(UpstreamUser& user) {
  user_ = &user;
  state_ = State::kActive;
  reused_ = true;
}

UpstreamConnection* UpstreamConnection::adopt(EventLoop& loop, BufferPool& buffers, HeaderStore* headers,
                                              Server& server, const TimeoutsConfig& timeouts, Fd fd,
                                              const HandOverNote& note) {
  auto* conn = new UpstreamConnection(loop, buffers, headers, server, timeouts, std::move(fd), note.created_ms);
  if (!loop.add(conn->transport_.fd(), kEvents, conn)) {
    delete conn;
    return nullptr;
  }
  conn->state_ = State::kIdle;
  // Edge-triggered: the EPOLLOUT of its registration comes while it is idle
  // (and is ignored there); an idle socket's send buffer is empty.
  conn->writable_ = true;
  conn->requests_served_ = note.requests_served;
  conn->idle_limit_ms_ = note.idle_limit_ms;
  conn->idle_elsewhere_ms_ = note.idle_ms;
  server.pool().adopt(*conn);
  return conn;
}

void UpstreamConnection::beginRequest(bool head_request) {
  reader_.begin(head_request);
  sent_ = 0;
  replayable_ = true;
  status_ = 0;
  error_ = UpstreamError::kNone;
  response_started_ = response_complete_ = needs_eof_ = false;
  ++requests_served_;
  if (!in_request_) ++server_.active_requests;  // for least_conn and random_two
  in_request_ = true;
  ServerCounters::add(server_.counters().requests_total);
  if (reused_) server_.pool().noteReused();
}

void UpstreamConnection::onIoEvent(uint32_t events) noexcept {
  switch (state_) {
    case State::kConnecting:
      if (transport_.secure()) {
        continueHandshake();
      } else if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
        onConnectDone();
      }
      return;
    case State::kIdle:
      // TLS: a session ticket may come late; anything else closes (below).
      if (transport_.secure() && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) == EPOLLIN) {
        readable_ = true;
        if (settleTls()) return;
      }
      // Readable, hung up or in error while idle: EOF or bytes nobody asked for.
      if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        ServerCounters::add(server_.counters().closed_idle_total);
        close();
      }
      return;
    case State::kActive:
      events = transport_.widen(events);
      if (events & EPOLLOUT) {
        writable_ = true;
        flush();
      }
      if (state_ == State::kActive && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        readable_ = true;
        if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) hung_up_ = true;
        readResponse();
      }
      return;
    case State::kClosed:
      return;
  }
}

void UpstreamConnection::onConnectDone() {
  int error = socketError(transport_.fd());
  if (error != 0) {
    LOG_DEBUG("connect to %s: %s", server_.name().c_str(), strerror(error));
    fail(UpstreamError::kConnectFailed);
    return;
  }
  if (server_.tlsEnabled()) {
    startTls();
    return;
  }
  onConnected();
}

void UpstreamConnection::onConnected() {
  state_ = State::kActive;
  writable_ = true;
  server_.pool().noteConnected();
  timer_.cancel();
  user_->onUpstreamConnected();
}

void UpstreamConnection::startTls() {
  const UpstreamTls* config = server_.tls();
  if (config == nullptr) {  // the context did not load (logged when the worker started)
    fail(UpstreamError::kTlsFailed);
    return;
  }
  SslSessionPtr& session = server_.tlsSession();
  if (!transport_.startTls(config->context(), /*server=*/false) ||
      !config->prepare(tls(), server_.tlsHost(), session.get(), &session)) {
    LOG_UPSTREAM_FAILURE(server_, "cannot start TLS", "upstream %s: cannot start TLS: %s", server_.name().c_str(),
                         tls().failure().c_str());
    fail(UpstreamError::kTlsFailed);
    return;
  }
  continueHandshake();
}

void UpstreamConnection::continueHandshake() {
  switch (tls().handshake()) {
    case TlsResult::kWantRead:
    case TlsResult::kWantWrite:
      return;  // the next event (or the upstream_connect timer) brings us back
    case TlsResult::kFailed:
      LOG_UPSTREAM_FAILURE(server_, "TLS handshake failed", "upstream %s: TLS handshake failed: %s",
                           server_.name().c_str(), tls().failure().c_str());
      fail(UpstreamError::kTlsFailed);
      return;
    case TlsResult::kDone:
      break;
  }
  ServerCounters& counters = server_.counters();
  ServerCounters::add(counters.tls_handshakes_total);
  if (tls().resumed()) ServerCounters::add(counters.tls_resumed_total);
  LOG_DEBUG("upstream %s: %s%s", server_.name().c_str(), tls().version(), tls().resumed() ? " (resumed)" : "");
  // Records (a session ticket, say) may already wait behind the handshake:
  // their readiness edge has passed, so read until the TLS layer waits.
  readable_ = true;
  onConnected();
  if (state_ == State::kActive) readResponse();
}

bool UpstreamConnection::settleTls() {
  if (!transport_.secure() || !readable_) return true;
  char byte;
  ssize_t n = tls().read(&byte, 1);
  if (n < 0 && errno == EAGAIN && !tls().readWantsWrite()) {
    readable_ = false;
    return true;
  }
  return false;  // response bytes nobody asked for, close_notify, EOF or an error
}

void UpstreamConnection::flush() {
  if (state_ != State::kActive) return;
  while (writable_ && sent_ < out_.size()) {
    ssize_t n = transport_.transmit(out_.data() + sent_, out_.size() - sent_);
    if (n > 0) {
      sent_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      writable_ = false;
      break;
    }
    fail(response_started_ ? UpstreamError::kTruncated : UpstreamError::kSendFailed);
    return;
  }
  // Keep what was sent while it may have to be replayed on a new connection.
  if (replayable_ && (response_started_ || out_.size() > kMaxReplayBytes)) replayable_ = false;
  if (!replayable_ && sent_ > 0) {
    out_.consume(sent_);
    sent_ = 0;
  }
  armActivityTimer();
  if (sent_ == out_.size()) {
    if (!replayable_) out_.releaseIfEmpty();
    user_->onUpstreamDrained();
  }
}

bool UpstreamConnection::takeReplay(Buffer& into) {
  if (!replayable_) return false;
  into.append(out_.data(), out_.size());
  out_.clear();
  sent_ = 0;
  return true;
}

void UpstreamConnection::pauseReading(bool paused) {
  if (paused_ == paused) return;
  paused_ = paused;
  if (state_ != State::kActive) return;
  if (paused) {
    timer_.cancel();  // the client is slow, not the upstream
  } else {
    armActivityTimer();
    readResponse();
  }
}

void UpstreamConnection::armActivityTimer() {
  if (state_ != State::kActive || response_complete_) return;
  if (pendingOutput() > 0) {
    timer_.arm(secondsToMs(timeouts_.upstream_send));
  } else if (!paused_) {
    timer_.arm(secondsToMs(timeouts_.upstream_read));
  }
}

void UpstreamConnection::onTimer() {
  switch (state_) {
    case State::kConnecting:
      fail(UpstreamError::kConnectTimeout);
      return;
    case State::kActive:
      fail(pendingOutput() > 0 ? UpstreamError::kSendTimeout : UpstreamError::kReadTimeout);
      return;
    default:
      return;
  }
}

void UpstreamConnection::readResponse() {
  // The user may resume reading from inside a callback of this very loop
  // (its client drained): the loop goes on by itself, never nested, so no
  // recv() lands in the reader's buffer while one of its events is handled.
  if (reading_) return;
  reading_ = true;
  readLoop();
  reading_ = false;
}

void UpstreamConnection::readLoop() {
  while (readable_ && !paused_ && state_ == State::kActive && !response_complete_) {
    const ReadRoom room = reader_.reserve();
    if (room.size == 0) {
      LOG_UPSTREAM_FAILURE(server_, "response head too large", "upstream %s: response head larger than %zu bytes",
                           server_.name().c_str(), ResponseReader::kMaxHead);
      fail(UpstreamError::kBadResponse);
      return;
    }
    const size_t asked = room.size;
    ssize_t n = transport_.receive(room.at, asked);
    if (n > 0) {
      reader_.commit(static_cast<size_t>(n));
      // A short plain read drained the socket (see ClientConnection::readClient).
      if (static_cast<size_t>(n) < asked && !transport_.secure() && !hung_up_) readable_ = false;
      response_started_ = true;
      if (replayable_) {
        replayable_ = false;
        if (sent_ > 0) out_.consume(sent_);
        sent_ = 0;
      }
      armActivityTimer();
      parseInput();
      continue;
    }
    if (n == 0) {
      onEof();
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      readable_ = false;
      break;
    }
    fail(response_started_ ? UpstreamError::kTruncated : UpstreamError::kClosedEarly);
    return;
  }
  if (state_ != State::kActive) return;
  reader_.releaseBuffer();  // if empty
  if (user_ != nullptr) user_->onUpstreamInputDone();
}

void UpstreamConnection::parseInput() {
  // The user may close us from any of its callbacks (its client went away).
  while (state_ == State::kActive) {
    switch (reader_.next()) {
      case ResponseReader::Event::kNeedMore:
        return;
      case ResponseReader::Event::kHead:
        if (!onResponseHead()) return;
        break;
      case ResponseReader::Event::kBody:
        user_->onUpstreamBody(reader_.body().data(), reader_.body().size());
        break;
      case ResponseReader::Event::kComplete:
        response_complete_ = true;  // anything left in the reader is unsolicited
        timer_.cancel();
        user_->onUpstreamComplete();
        return;
      case ResponseReader::Event::kError:
        status_ = reader_.status();
        if (reader_.error() == ResponseReader::Error::kMalformedHead) {
          LOG_UPSTREAM_FAILURE(server_, "malformed response head", "upstream %s: malformed response head (status %d)",
                               server_.name().c_str(), status_);
        } else {
          LOG_UPSTREAM_FAILURE(server_, "bad response", "upstream %s: bad response: %s (%s)", server_.name().c_str(),
                               reader_.errorName(), reader_.errorReason());
        }
        fail(UpstreamError::kBadResponse);
        return;
    }
  }
}

void UpstreamConnection::onEof() {
  readable_ = false;
  if (reader_.tunnel()) {  // the upstream ended the tunnel
    user_->onUpstreamComplete();
    return;
  }
  if (!response_started_) {
    fail(UpstreamError::kClosedEarly);
    return;
  }
  if (reader_.finish() == ResponseReader::Event::kComplete) {  // a close-delimited body ends here
    needs_eof_ = true;
    response_complete_ = true;
    timer_.cancel();
    user_->onUpstreamComplete();
    return;
  }
  fail(UpstreamError::kTruncated);
}

bool UpstreamConnection::onResponseHead() {
  status_ = reader_.status();
  if (!reader_.interim()) needs_eof_ = reader_.closeDelimited();
  if (status_ >= 200) {
    // The server tells how long it keeps us idle and how many requests it
    // still takes: retire the connection before it does, not after (each
    // such close would cost a request a failed send and a retry).
    std::string_view hint_text = findHeader(reader_.head(), reader_.base(), "keep-alive");
    if (!hint_text.empty()) {
      KeepAliveHint hint = parseKeepAlive(hint_text);
      if (hint.timeout_s >= 0) idle_limit_ms_ = keepAliveIdleLimitMs(hint.timeout_s);
      upstream_max_reached_ = hint.max >= 0 && hint.max <= 1;
    }
  }
  int result = user_->onUpstreamHead(reader_.parser(), reader_.base());
  if (state_ != State::kActive) return false;  // the user closed us (its client went away)
  if (result != 0) {  // refused (a 101 nobody asked for): 502, never pooled
    LOG_UPSTREAM_FAILURE(server_, "bad response", "upstream %s: bad response: %s (status %d)", server_.name().c_str(),
                         "refused head", status_);
    fail(UpstreamError::kBadResponse);
    return false;
  }
  return true;
}

void UpstreamConnection::fail(UpstreamError error) {
  if (state_ == State::kClosed) return;
  error_ = error;
  bool stale = reused_ && !response_started_ &&
               (error == UpstreamError::kClosedEarly || error == UpstreamError::kSendFailed);
  // A pooled connection the server closed meanwhile is not a server failure.
  if (!stale) server_.pool().noteFailed();
  UpstreamUser* user = user_;
  close();
  if (user != nullptr) user->onUpstreamError(error);
}

void UpstreamConnection::release(bool request_complete, bool exiting) {
  if (state_ != State::kActive) return;
  ReuseFacts facts;
  facts.error = error_ != UpstreamError::kNone;
  facts.response_complete = response_complete_;
  facts.length_delimited = !needs_eof_;
  facts.upstream_keep_alive = reader_.keepAlive();
  facts.request_sent = request_complete && pendingOutput() == 0;
  facts.unread_bytes = reader_.hasUnread() || !settleTls() || tls().hasBuffered();
  facts.exiting = exiting;
  facts.retired = !server_.inService();
  facts.upstream_max_reached = upstream_max_reached_;
  facts.requests_served = requests_served_;
  facts.age_ms = loop_.now() - createdMs();
  NoReuse verdict = reuseVerdict(facts, server_.pool().config());
  user_ = nullptr;
  endRequest();
  const Checkin outcome = server_.pool().checkin(*this, verdict);
  if (outcome == Checkin::kHandedOver) return;  // detachSocket() has run: this object is on its way out
  if (outcome == Checkin::kPooled) {
    state_ = State::kIdle;
    timer_.cancel();
    paused_ = false;
    reader_.releaseHeaders();
    out_.clear();
    sent_ = 0;
    reader_.releaseBuffer();
    out_.releaseIfEmpty();
    return;
  }
  close();
}

void UpstreamConnection::endRequest() {
  if (!in_request_) return;
  in_request_ = false;
  --server_.active_requests;
}

bool UpstreamConnection::probeIdle(uint64_t idle_ms) noexcept {
  idle_ms += idle_elsewhere_ms_;
  idle_elsewhere_ms_ = 0;
  // With TLS the socket carries records: any byte at all (a close_notify
  // alert, a stray record) means the connection is not fit for a request.
  if (tls().hasBuffered()) return false;
  if (idle_ms >= idle_limit_ms_) {  // the server's Keep-Alive timeout is (nearly) up
    ServerCounters::add(server_.counters().expired_total);
    return false;
  }
  // An idle connection is watched (EPOLLIN): an EOF or stray bytes close it
  // as soon as the loop sees them. Only one that sat idle long enough for a
  // server's keep-alive timeout to matter gets the extra recv(MSG_PEEK), for
  // a FIN that may sit in the same event batch as the request now taking
  // it. Under load a connection is reused within microseconds: no syscall.
  // (A stale connection that slips through is retried, see retryAfter().)
  if (idle_ms < kProbeAfterIdleMs) return true;
  char byte;
  ssize_t n = ::recv(transport_.fd(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void UpstreamConnection::evictFromPool() noexcept { close(); }

int UpstreamConnection::detachSocket(HandOverNote& note) noexcept {
  note.created_ms = createdMs();
  note.requests_served = requests_served_;
  note.idle_limit_ms = idle_limit_ms_;
  state_ = State::kClosed;
  user_ = nullptr;
  endRequest();
  timer_.cancel();
  loop_.remove(transport_.fd());
  loop_.deferDelete(static_cast<Deletable*>(this));
  return transport_.releaseSocket();
}

void UpstreamConnection::close() {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  user_ = nullptr;
  endRequest();
  timer_.cancel();
  loop_.remove(transport_.fd());
  transport_.close();
  server_.pool().noteClosed(*this);
  loop_.deferDelete(static_cast<Deletable*>(this));
}

}  // namespace poolgate
