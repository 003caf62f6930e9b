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
// Frames that make no work for the client's requests (PRIORITY, PING,
// SETTINGS, empty DATA): a connection may send this many, plus some for
// every request it makes, before it is taken for a flood (the SETTINGS,
// PING, empty-DATA and PRIORITY floods: CVE-2019-9512, -9515, -9518).
constexpr uint32_t kJunkBudget = 1000;
constexpr uint32_t kJunkPerRequest = 20;
// Drain: the shutdown notice (a GOAWAY with the highest stream id) goes
// first; the GOAWAY with the last stream id taken follows this much later,
// so that requests already on their way are not refused.
constexpr uint64_t kGoawayGraceMs = 1000;
// nghttp2's defences, set explicitly: SETTINGS and PING replies the client
// does not read (CVE-2019-9512/9515), the rapid reset (CVE-2023-44487) and
// the CONTINUATION flood (CVE-2024-27316).
constexpr size_t kMaxOutboundAck = 1000;
constexpr uint64_t kResetBurst = 1000;
constexpr uint64_t kResetRate = 33;  // per second
constexpr size_t kMaxContinuations = 8;
constexpr size_t kMaxSettings = 32;

struct Callbacks {
  nghttp2_session_callbacks* callbacks = nullptr;
  ~Callbacks() { nghttp2_session_callbacks_del(callbacks); }
};

struct Options {
  nghttp2_option* option = nullptr;
  ~Options() { nghttp2_option_del(option); }
};

}  // namespace

Http2Connection::Http2Connection(ClientConnection& client, ClientHost& host, Transport& transport,
                                 const IpAddress& peer)
    : client_(client),
      host_(host),
      transport_(transport),
      peer_(peer),
      out_(host.buffers()),
      timer_(host.loop().timers(), [this] {
        Scope scope(*this);
        onTimer();
      }),
      junk_budget_(kJunkBudget) {}

Http2Connection::~Http2Connection() {
  if (turn_end_pending_) host_.loop().cancelTurnEnd(this);
  // Streams still open when the connection went: no longer open.
  ServerCounters::sub(host_.stats().h2_streams_open, streams_.size());
  for (Http2Stream* s : streams_) delete s;
  for (Http2Stream* s : closed_) delete s;
  while (free_ != nullptr) {
    Http2Stream* s = free_;
    free_ = s->next_free;
    delete s;
  }
  if (session_ != nullptr) {
    nghttp2_session_del(session_);
    ServerCounters::sub(host_.stats().h2_connections);
  }
}

bool Http2Connection::start(std::string_view received) {
  Callbacks cb;
  if (nghttp2_session_callbacks_new(&cb.callbacks) != 0) return false;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb.callbacks, onBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cb.callbacks, onHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb.callbacks, onFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb.callbacks, onDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb.callbacks, onStreamClose);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb.callbacks, onFrameSend);
  Options opt;
  if (nghttp2_option_new(&opt.option) != 0) return false;
  nghttp2_option_set_no_auto_window_update(opt.option, 1);  // credit() gives DATA back as it is taken
  nghttp2_option_set_max_outbound_ack(opt.option, kMaxOutboundAck);
  nghttp2_option_set_stream_reset_rate_limit(opt.option, kResetBurst, kResetRate);
  nghttp2_option_set_max_continuations(opt.option, kMaxContinuations);
  nghttp2_option_set_max_settings(opt.option, kMaxSettings);
  if (nghttp2_session_server_new2(&session_, cb.callbacks, this, opt.option) != 0) {
    session_ = nullptr;
    return false;
  }
  ServerCounters::add(host_.stats().h2_connections);

  const Http2Config& c = host_.config().http2;
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, c.initial_window_bytes},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, headerListLimit()},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, sizeof settings / sizeof settings[0]);
  // The connection's window: room for a few streams' windows at once.
  const uint64_t window = std::min<uint64_t>(uint64_t{c.initial_window_bytes} * 16, (1u << 31) - 1);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, static_cast<int32_t>(window));

  Scope scope(*this);
  if (!received.empty()) {
    ssize_t n = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(received.data()),
                                         received.size());
    if (n < 0) {
      LOG_DEBUG("client %s: http2: %s", peer_.text().c_str(), nghttp2_strerror(static_cast<int>(n)));
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
    if (finish_pending_) {
      finish_pending_ = false;
      for (size_t i = 0; i < streams_.size(); ++i) {
        if (streams_[i]->finishPending()) streams_[i]->finishExchange();
      }
    }
    if (pull_pending_) {
      pull_pending_ = false;
      for (size_t i = 0; i < streams_.size(); ++i) {
        if (streams_[i]->wantsPull()) streams_[i]->pull();
      }
    }
    send();
    // Input held back while out_ was full may have been read at the end of
    // send(), and its answers (SETTINGS and PING acknowledgements, resets)
    // are waiting: another round writes them.
    const bool more_to_write = !closing_ && writable_ && out_.empty() && nghttp2_session_want_write(session_) != 0;
    again = finish_pending_ || pull_pending_ || more_to_write;
    if (!again) break;
  }
  for (Http2Stream* s : closed_) giveStream(s);
  closed_.clear();
  if (dead_) return;
  updateActive();
  const bool done = out_.empty() &&
                    (closing_ || (nghttp2_session_want_read(session_) == 0 &&
                                  nghttp2_session_want_write(session_) == 0) ||
                     (goaway_final_ && streams_.empty()));
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

void Http2Connection::updateActive() { client_.setHttp2Busy(!streams_.empty()); }

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
      const ssize_t used = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(chunk),
                                                    static_cast<size_t>(n));
      if (used < 0) {
        // A connection error: nghttp2 has queued its GOAWAY where it could
        // (bad preface, flood, ...); it goes out, then the connection closes.
        LOG_DEBUG("client %s: http2: %s", peer_.text().c_str(), nghttp2_strerror(static_cast<int>(used)));
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
      const ssize_t n = nghttp2_session_mem_send(session_, &data);
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
  } else if (streams_.empty()) {
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
  if (streams_.empty()) {  // idle: GOAWAY, then close
    submitFinalGoaway();
    closing_ = true;
  }
}

void Http2Connection::submitFinalGoaway() {
  if (goaway_final_) return;
  goaway_final_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
}

void Http2Connection::drain() {
  if (draining_ || dead_) return;
  Scope scope(*this);
  draining_ = true;
  nghttp2_submit_shutdown_notice(session_);
  timer_.cancel();
}

void Http2Connection::abort() {
  dead_ = true;
  timer_.cancel();
  for (Http2Stream* s : streams_) s->abort();
}

void Http2Connection::closeWith(uint32_t error_code) {
  nghttp2_session_terminate_session(session_, error_code);
}

bool Http2Connection::spendJunk() {
  if (junk_budget_ > 0) --junk_budget_;
  if (junk_budget_ > 0) return true;
  LOG_WARN("client %s: http2: too many frames that do no work; connection closed", peer_.text().c_str());
  closeWith(NGHTTP2_ENHANCE_YOUR_CALM);
  return false;
}

// ---- Streams ----------------------------------------------------------------------

Http2Stream* Http2Connection::stream(int32_t id) {
  return static_cast<Http2Stream*>(nghttp2_session_get_stream_user_data(session_, id));
}

Http2Stream* Http2Connection::takeStream() {
  if (free_ == nullptr) return new Http2Stream(*this);
  Http2Stream* s = free_;
  free_ = s->next_free;
  s->next_free = nullptr;
  --free_count_;
  return s;
}

void Http2Connection::giveStream(Http2Stream* s) {
  if (free_count_ >= kMaxSpareStreams) {
    delete s;
    return;
  }
  s->next_free = free_;
  free_ = s;
  ++free_count_;
}

// ---- nghttp2's callbacks ----------------------------------------------------------

int Http2Connection::onBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* self) {
  auto& c = *static_cast<Http2Connection*>(self);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  Http2Stream* s = c.takeStream();
  c.streams_.push_back(s);
  nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
  WorkerSlot& stats = c.host_.stats();
  ServerCounters::add(stats.h2_streams_open);
  ServerCounters::add(stats.h2_streams_total);
  s->open(frame->hd.stream_id);
  return 0;
}

int Http2Connection::onHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                              size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* self) {
  auto& c = *static_cast<Http2Connection*>(self);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  Http2Stream* s = c.stream(frame->hd.stream_id);
  if (s == nullptr) return 0;
  const bool trailer = frame->headers.cat != NGHTTP2_HCAT_REQUEST;
  if (s->onField({reinterpret_cast<const char*>(name), namelen}, {reinterpret_cast<const char*>(value), valuelen},
                 trailer)) {
    return 0;
  }
  nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_PROTOCOL_ERROR);
  return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

int Http2Connection::onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  auto& c = *static_cast<Http2Connection*>(self);
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      Http2Stream* s = c.stream(frame->hd.stream_id);
      if (s == nullptr) return 0;
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        s->onHeadersEnd(end_stream);
        if (c.junk_budget_ < kJunkBudget) c.junk_budget_ = std::min(kJunkBudget, c.junk_budget_ + kJunkPerRequest);
      } else if (end_stream) {
        s->onRequestEnd();  // trailers: the body has ended
      }
      return 0;
    }
    case NGHTTP2_DATA: {
      if (frame->hd.length == 0 && !end_stream && !c.spendJunk()) return 0;
      if (!end_stream) return 0;
      if (Http2Stream* s = c.stream(frame->hd.stream_id)) s->onRequestEnd();
      return 0;
    }
    case NGHTTP2_RST_STREAM:
      ServerCounters::add(c.host_.stats().h2_resets_received_total);
      return 0;
    case NGHTTP2_PRIORITY:
    case NGHTTP2_PING:
      c.spendJunk();
      return 0;
    case NGHTTP2_SETTINGS:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) c.spendJunk();
      return 0;
    default:
      return 0;
  }
}

int Http2Connection::onDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                                 size_t len, void* self) {
  auto& c = *static_cast<Http2Connection*>(self);
  if (Http2Stream* s = c.stream(stream_id)) {
    s->onData(data, len);
  } else {
    nghttp2_session_consume(session, stream_id, len);
  }
  return 0;
}

int Http2Connection::onStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* self) {
  auto& c = *static_cast<Http2Connection*>(self);
  Http2Stream* s = c.stream(stream_id);
  if (s == nullptr) return 0;
  s->onClosed(error_code);
  auto it = std::find(c.streams_.begin(), c.streams_.end(), s);
  if (it != c.streams_.end()) {
    *it = c.streams_.back();
    c.streams_.pop_back();
  }
  c.closed_.push_back(s);
  ServerCounters::sub(c.host_.stats().h2_streams_open);
  return 0;
}

int Http2Connection::onFrameSend(nghttp2_session* session, const nghttp2_frame* frame, void* self) {
  auto& c = *static_cast<Http2Connection*>(self);
  WorkerSlot& stats = c.host_.stats();
  switch (frame->hd.type) {
    case NGHTTP2_RST_STREAM:
      ServerCounters::add(stats.h2_resets_sent_total);
      break;
    case NGHTTP2_GOAWAY:
      ServerCounters::add(stats.h2_goaways_sent_total);
      break;
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS:
      // The response has ended before the request: the client may stop
      // sending (RFC 9113 section 8.1).
      if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
        Http2Stream* s = c.stream(frame->hd.stream_id);
        if (s != nullptr && !s->request_ended_ && !s->closed_) {
          nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
        }
      }
      break;
    default:
      break;
  }
  return 0;
}

}  // namespace poolgate
