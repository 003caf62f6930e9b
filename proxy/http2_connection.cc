#include "proxy/http2_connection.h"

#include <errno.h>

#include <algorithm>

#include "core/clock.h"
#include "core/log.h"
#include "proxy/client_connection.h"

namespace poolgate {

namespace {

constexpr size_t kHighWatermark = Exchange::kHighWatermark;
constexpr size_t kMaxSpareStreams = 16;
// Drain: the shutdown notice (a GOAWAY with the highest stream id) goes
// first; the GOAWAY with the last stream id taken follows this much later,
// so that requests already on their way are not refused.
constexpr uint64_t kGoawayGraceMs = 1000;

}  // namespace

Http2Connection::Http2Connection(ClientConnection& client, ClientHost& host, Transport& transport,
                                 const IpAddress& peer)
    : H2Session(host.config()),
      client_(client),
      host_(host),
      transport_(transport),
      peer_(peer),
      out_(host.buffers()),
      timer_(host.loop().timers(), [this] {
        Scope scope(*this);
        onTimer();
      }) {}

Http2Connection::~Http2Connection() {
  if (turn_end_pending_) host_.loop().cancelTurnEnd(this);
  // Streams still open when the connection went: no longer open.
  size_t open = 0;
  forEachStream([&open](Http2Stream& s) {
    ++open;
    delete &s;
  });
  ServerCounters::sub(host_.stats().h2_streams_open, open);
  for (Http2Stream* s : closed_) delete s;
  while (free_ != nullptr) {
    Http2Stream* s = free_;
    free_ = s->next_free;
    delete s;
  }
  if (started()) ServerCounters::sub(host_.stats().h2_connections);
}

bool Http2Connection::start(std::string_view received) {
  if (!startSession()) return false;
  ServerCounters::add(host_.stats().h2_connections);

  Scope scope(*this);
  if (!received.empty()) {
    const char* error = nullptr;
    if (!input(reinterpret_cast<const uint8_t*>(received.data()), received.size(), &error)) {
      LOG_DEBUG("client %s: http2: %s", peer_.text().c_str(), error);
      closing_ = true;
    }
  }
  readable_ = true;  // what came with the preface may be followed by more
  receive();
  return true;
}

// ---- Dispatch ---------------------------------------------------------------------

void Http2Connection::leave() {
  if (--depth_ == 0) settle();
}

void Http2Connection::settle() {
  if (turn_end_pending_ || dead_) return;
  turn_end_pending_ = true;
  host_.loop().atTurnEnd(this);
}

void Http2Connection::onTurnEnd() noexcept {
  turn_end_pending_ = false;
  if (dead_) return;
  ++depth_;  // what runs here may open and close dispatch scopes: no settle() from them
  flush();
  --depth_;
}

// Exchanges that completed are finished, streams whose DATA ran low are
// refilled, and what the session has to send is written; then closed streams
// are freed, and the connection closes if it is done.
void Http2Connection::flush() {
  bool again = false;
  for (int round = 0; round < 64 && !dead_; ++round) {
    // A stream may ask again while its turn runs (its response read to the
    // end: the exchange to finish); it comes round again in this loop.
    while (ready_ != nullptr) {
      Http2Stream& s = *ready_;
      listUnlink(ready_, s, &Http2Stream::ready_link);
      if (s.finishPending()) s.finishExchange();
      if (s.wantsPull()) s.pull();
    }
    send();
    // Input held back while out_ was full may have been read at the end of
    // send(), and its answers (SETTINGS and PING acknowledgements, resets)
    // are waiting: another round writes them.
    const bool more_to_write = !closing_ && writable_ && out_.empty() && nghttp2_session_want_write(session()) != 0;
    again = ready_ != nullptr || more_to_write;
    if (!again) break;
  }
  while (timers_ != nullptr) {
    Http2Stream& s = *timers_;
    listUnlink(timers_, s, &Http2Stream::timer_link);
    s.setTimer();
  }
  for (Http2Stream* s : closed_) giveStream(s);
  closed_.clear();
  if (dead_) return;
  updateActive();
  const bool done = out_.empty() &&
                    (closing_ || (nghttp2_session_want_read(session()) == 0 &&
                                  nghttp2_session_want_write(session()) == 0) ||
                     (goaway_final_ && !hasStreams()));
  if (done) {
    dead_ = true;
    client_.close();  // calls abort(); the client and this object go at the end of the loop turn
    return;
  }
  armTimer();
  // Rounds ran out with work left (a large body refilled 64 KiB at a time):
  // the rest in another call, before the loop waits for events.
  if (again) settle();
}

void Http2Connection::updateActive() { client_.setHttp2Busy(hasStreams()); }

// ---- I/O --------------------------------------------------------------------------

void Http2Connection::onIoEvent(uint32_t events) {
  if (dead_) return;
  Scope scope(*this);
  if (events & EPOLLOUT) writable_ = true;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readable_ = true;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) hung_up_ = true;
  receive();
}

void Http2Connection::receive() {
  char chunk[16 * 1024];
  while (readable_ && !closing_ && !dead_) {
    if (out_.size() >= kHighWatermark) return;  // the client does not read what we send: wait
    const ssize_t n = transport_.receive(chunk, sizeof chunk);
    if (n > 0) {
      // A short plain read drained the socket (not with TLS, which may hold
      // decrypted bytes, nor once the peer hung up: its EOF is still to read).
      if (static_cast<size_t>(n) < sizeof chunk && !transport_.secure() && !hung_up_) readable_ = false;
      const char* error = nullptr;
      if (!input(reinterpret_cast<const uint8_t*>(chunk), static_cast<size_t>(n), &error)) {
        // A connection error: nghttp2 has queued its GOAWAY where it could
        // (bad preface, flood, ...); it goes out, then the connection closes.
        LOG_DEBUG("client %s: http2: %s", peer_.text().c_str(), error);
        closing_ = true;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      readable_ = false;
      return;
    }
    // EOF or an error: the client has gone; its streams are cut short.
    readable_ = false;
    closing_ = true;
    out_.clear();
    return;
  }
}

void Http2Connection::send() {
  if (dead_) return;
  for (;;) {
    while (out_.size() < kHighWatermark) {
      const uint8_t* data = nullptr;
      const ssize_t n = output(&data);
      if (n < 0) {
        LOG_DEBUG("client %s: http2: %s", peer_.text().c_str(), nghttp2_strerror(static_cast<int>(n)));
        closing_ = true;
        out_.clear();
        return;
      }
      if (n == 0) break;
      out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    if (out_.empty() || !writable_) break;
    const size_t before = out_.size();
    while (writable_ && !out_.empty()) {
      const ssize_t n = transport_.transmit(out_.data(), out_.size());
      if (n > 0) {
        out_.consume(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        writable_ = false;
        break;
      }
      closing_ = true;  // the client went away
      out_.clear();
      return;
    }
    if (!out_.empty() || before < kHighWatermark) break;  // blocked, or everything the session had went out
  }
  out_.releaseIfEmpty();
  // Output drained: input held back for it may be read now.
  if (readable_ && out_.size() < kHighWatermark && !closing_) receive();
}

// ---- Timers and ends --------------------------------------------------------------

void Http2Connection::armTimer() {
  const TimeoutsConfig& t = host_.config().timeouts;
  if (!out_.empty() && !writable_) {
    timer_.arm(secondsToMs(t.client_send));
  } else if (draining_ && !goaway_final_) {
    if (!timer_.armed()) timer_.arm(kGoawayGraceMs);
  } else if (!hasStreams()) {
    if (!timer_.armed() || !idle_timer_) timer_.arm(secondsToMs(t.client_keepalive));
    idle_timer_ = true;
    return;
  } else {
    timer_.cancel();
  }
  idle_timer_ = false;
}

void Http2Connection::onTimer() {
  if (dead_) return;
  if (!out_.empty() && !writable_) {
    LOG_DEBUG("client %s: http2: send timeout", peer_.text().c_str());
    closing_ = true;
    out_.clear();
    return;
  }
  if (draining_ && !goaway_final_) {
    submitFinalGoaway();
    return;
  }
  if (!hasStreams()) {  // idle: GOAWAY, then close
    submitFinalGoaway();
    closing_ = true;
  }
}

void Http2Connection::submitFinalGoaway() {
  if (goaway_final_) return;
  goaway_final_ = true;
  nghttp2_submit_goaway(session(), NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session()),
                        NGHTTP2_NO_ERROR, nullptr, 0);
}

void Http2Connection::drain() {
  if (draining_ || dead_) return;
  Scope scope(*this);
  draining_ = true;
  nghttp2_submit_shutdown_notice(session());
  timer_.cancel();
}

void Http2Connection::abort() {
  dead_ = true;
  timer_.cancel();
  forEachStream([](Http2Stream& s) { s.abort(); });
}

// ---- Streams ----------------------------------------------------------------------

Http2Stream* Http2Connection::takeStream() {
  if (free_ == nullptr) return new Http2Stream(*this);
  Http2Stream* s = free_;
  free_ = s->next_free;
  s->next_free = nullptr;
  --free_count_;
  return s;
}

void Http2Connection::giveStream(Http2Stream* s) {
  listUnlink(ready_, *s, &Http2Stream::ready_link);
  listUnlink(timers_, *s, &Http2Stream::timer_link);
  if (free_count_ >= kMaxSpareStreams) {
    delete s;
    return;
  }
  s->next_free = free_;
  free_ = s;
  ++free_count_;
}

void Http2Connection::streamTimer(Http2Stream& s) {
  if (depth_ == 0 || dead_) {
    s.setTimer();
    return;
  }
  listPush(timers_, s, &Http2Stream::timer_link);
}

// ---- H2Session's events ------------------------------------------------------------

H2Stream* Http2Connection::openStream(int32_t id) {
  Http2Stream* s = takeStream();
  WorkerSlot& stats = host_.stats();
  ServerCounters::add(stats.h2_streams_open);
  ServerCounters::add(stats.h2_streams_total);
  s->open(id);
  return s;
}

void Http2Connection::onStreamClosed(H2Stream& stream) {
  closed_.push_back(static_cast<Http2Stream*>(&stream));  // already off the open list
  ServerCounters::sub(host_.stats().h2_streams_open);
}

void Http2Connection::onResetReceived() { ServerCounters::add(host_.stats().h2_resets_received_total); }

void Http2Connection::onFrameSent(uint8_t type) {
  if (type == NGHTTP2_RST_STREAM) ServerCounters::add(host_.stats().h2_resets_sent_total);
  if (type == NGHTTP2_GOAWAY) ServerCounters::add(host_.stats().h2_goaways_sent_total);
}

void Http2Connection::onFlood() {
  LOG_WARN("client %s: http2: too many frames that do no work; connection closed", peer_.text().c_str());
}

}  // namespace poolgate
