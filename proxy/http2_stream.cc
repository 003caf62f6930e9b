// Http2Stream: one HTTP/2 stream as the ExchangeOwner of its exchange (see
// proxy/http2_connection.h for the design).
#include <string.h>

#include <algorithm>
#include <cerrno>

#include "core/clock.h"
#include "core/log.h"
#include "proxy/http2_connection.h"

namespace poolgate {

namespace {

constexpr size_t kHighWatermark = Exchange::kHighWatermark;
constexpr size_t kLowWatermark = Exchange::kLowWatermark;

// HTTP/2 field names are lowercase (RFC 9113 section 8.2.1).
void appendLowercase(std::string& out, std::string_view name) {
  for (char c : name) out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
}

ssize_t readBodyCallback(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                         nghttp2_data_source* source, void*) {
  return static_cast<Http2Stream*>(source->ptr)->readBody(buf, length, flags);
}

}  // namespace

Http2Stream::Http2Stream(Http2Connection& connection)
    : H2Stream(connection, connection.host().buffers()),
      conn_(connection),
      response_(connection.host().buffers(), &connection.host().headerStore()),
      body_(connection.host().buffers()),
      timer_(connection.host().loop().timers(), [this] {
        DispatchScope scope(*this);
        onTimer();
      }) {}

Http2Stream::~Http2Stream() = default;

void Http2Stream::open(int32_t id) {
  beginRequest(id);
  state_ = ClientState::kHead;
  body_.clear();
  trailers_.clear();
  head_submitted_ = body_complete_ = cut_short_ = false;
  deferred_ = want_pull_ = finish_pending_ = finished_ = false;
  ClientHost& host = conn_.host();
  reader_ = host.readers().take();
  ex_ = host.exchanges().take();
  ex_->attach(*this, host, conn_.peer(), conn_.secure(), /*admin=*/false);
  ex_->record.http_major = 2;
  ex_->record.http_minor = 0;
  armClientTimer();
}

void Http2Stream::enterDispatch() { conn_.enter(); }
void Http2Stream::leaveDispatch() { conn_.leave(); }

// ---- The request ---------------------------------------------------------------

void Http2Stream::pumpRequest() {
  while (!closed_ && !finished_ && ex_ &&
         (state_ == ClientState::kHead || (state_ == ClientState::kExchange && !ex_->request_complete))) {
    if (state_ == ClientState::kExchange && ex_->pendingRequestBytes() >= kHighWatermark) break;
    if (!pending_.empty()) {
      const ReadRoom room = reader_->reserve();
      if (room.size == 0) {
        respondError(room.refuse);
        return;
      }
      const size_t n = std::min(room.size, pending_.size());
      memcpy(room.at, pending_.data(), n);
      reader_->commit(n);
      pending_.consume(n);
      credit(n);
    } else if (!reader_->hasWork()) {
      break;
    }
    while (!finished_ && (state_ == ClientState::kHead ||
                          (state_ == ClientState::kExchange && !ex_->request_complete))) {
      if (!reader_->hasWork()) break;
      const RequestReader::Event event = reader_->next();
      if (event == RequestReader::Event::kHead) {
        onRequestHead();
      } else if (!ex_->onRequestEvent(event)) {
        break;
      }
    }
  }
  if (pending_.empty()) pending_.releaseIfEmpty();
  armClientTimer();
}

void Http2Stream::onRequestHead() {
  state_ = ClientState::kExchange;
  ex_->beginRequest(*reader_, conn_.host().accessLog() != nullptr);
  ex_->record.http_major = 2;
  ex_->record.http_minor = 0;
  response_.begin(reader_->headRequest());
  if (int status = reader_->verdict(); status != 0) {
    respondError(status);
    return;
  }
  ex_->start();
}

void Http2Stream::respondError(int status) {
  if (!ex_) return;
  if (state_ == ClientState::kHead) response_.begin(false);
  ex_->respondError(status, true);
}

void Http2Stream::resumeReading() { pumpRequest(); }

// ---- The response ----------------------------------------------------------------

void Http2Stream::flushClient() {
  if (!ex_ || finished_ || closed_) return;
  if (ex_->response_held) {
    if (!ex_->request_complete && ex_->out.size() < kHighWatermark) return;
    ex_->response_held = false;
  }
  readResponse();
}

// Moves the exchange's HTTP/1.1 bytes into the response reader, one room at a
// time, as long as the DATA waiting for the session is below the mark.
bool Http2Stream::takeResponseBytes() {
  if (ex_->out.empty() && ex_->spool && !ex_->spool->empty()) {
    if (ex_->spool->drainInto(ex_->out, kHighWatermark) == 0) {
      ServerCounters::add(conn_.host().stats().buffer_errors_total);
      LOG_ERROR("response buffering: cannot read back a temporary file: %s; response cut short", strerror(errno));
      closeClient();
      return false;
    }
    ServerCounters::set(conn_.host().stats().buffered_memory, conn_.host().spoolBudget().in_use);
  }
  if (ex_->out.empty()) return false;
  const ReadRoom room = response_.reserve();
  if (room.size == 0) {  // cannot be: our own head fits
    closeClient();
    return false;
  }
  const size_t n = std::min(room.size, ex_->out.size());
  memcpy(room.at, ex_->out.data(), n);
  response_.commit(n);
  ex_->out.consume(n);
  ex_->record.bytes_sent += n;
  return true;
}

void Http2Stream::readResponse() {
  bool drained = false;  // everything the exchange wrote has been read
  while (!closed_ && !finished_ && !body_complete_ && body_.size() < kHighWatermark) {
    const ResponseReader::Event event = response_.next();
    if (event == ResponseReader::Event::kNeedMore) {
      if (!takeResponseBytes()) {
        drained = true;
        break;
      }
      continue;
    }
    if (event == ResponseReader::Event::kHead) {
      onResponseHead();
    } else if (event == ResponseReader::Event::kBody) {
      body_.append(response_.body());
    } else if (event == ResponseReader::Event::kComplete) {
      body_complete_ = true;
      keepTrailers();
    } else {
      LOG_ERROR("http2: stream %d: unreadable response from the exchange (%s)", id_, response_.errorName());
      closeClient();
      return;
    }
  }
  if (closed_ || finished_) return;
  if (drained && ex_->response_complete && !body_complete_) {
    // The upstream's response was cut short (it closed, or failed, in the
    // middle of the body). What came goes out, then the stream is reset: the
    // client must not take it as complete.
    if (!head_submitted_) {
      closeClient();
      return;
    }
    cut_short_ = body_complete_ = true;
  }
  if (deferred_ && head_submitted_ && (!body_.empty() || body_complete_)) {
    deferred_ = false;
    nghttp2_session_resume_data(conn_.session(), id_);
  }
  const bool spooled = ex_->spool && !ex_->spool->empty();
  if (ex_->out.size() < kLowWatermark && !(spooled && ex_->spool->full())) ex_->releaseHold();
  // Finished once the exchange is done and its response has been read to the
  // end (its last bytes may wait in response_ while body_ is full).
  if (ex_ && ex_->response_complete && body_complete_ && ex_->out.empty() && !(ex_->spool && !ex_->spool->empty()) &&
      !finish_pending_) {
    finish_pending_ = true;
    conn_.streamReady(*this);
  }
  armClientTimer();
}

void Http2Stream::onResponseHead() {
  const int status = response_.status();
  if (status == 101) {  // no upgrade over HTTP/2 (the request could not ask for one)
    closeClient();
    return;
  }
  const HttpHead& head = response_.head();
  const char* base = response_.base();
  std::vector<nghttp2_nv>& nva = conn_.scratchFields();
  std::string& names = conn_.scratchNames();
  nva.clear();
  names.clear();
  size_t name_bytes = 0;
  for (const HeaderSlice& h : head.headers) name_bytes += h.name.length;
  names.reserve(name_bytes + 4);
  char status_text[4] = {static_cast<char>('0' + status / 100 % 10), static_cast<char>('0' + status / 10 % 10),
                         static_cast<char>('0' + status % 10), 0};
  nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(":status")),
                 reinterpret_cast<uint8_t*>(status_text), 7, 3, NGHTTP2_NV_FLAG_NONE});
  for (const HeaderSlice& h : head.headers) {
    const std::string_view name = h.name.view(base);
    if (isHopByHop(name)) continue;
    const size_t at = names.size();
    appendLowercase(names, name);
    const std::string_view value = h.value.view(base);
    nva.push_back({reinterpret_cast<uint8_t*>(names.data() + at),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                   NGHTTP2_NV_FLAG_NONE});
  }
  int rv;
  if (response_.interim()) {
    rv = nghttp2_submit_headers(conn_.session(), NGHTTP2_FLAG_NONE, id_, nullptr, nva.data(), nva.size(), nullptr);
  } else {
    nghttp2_data_provider provider;
    provider.source.ptr = this;
    provider.read_callback = readBodyCallback;
    const bool bodyless = response_.parser().bodyless();
    rv = nghttp2_submit_response(conn_.session(), id_, nva.data(), nva.size(), bodyless ? nullptr : &provider);
    head_submitted_ = true;
    if (bodyless) body_complete_ = true;
  }
  if (rv != 0) {
    LOG_DEBUG("http2: stream %d: cannot submit the response: %s", id_, nghttp2_strerror(rv));
    closeClient();
  }
}

ssize_t Http2Stream::readBody(uint8_t* buf, size_t length, uint32_t* flags) {
  if (body_.empty() && !body_complete_) {
    deferred_ = true;
    if (!want_pull_ && !finished_) {
      want_pull_ = true;
      conn_.streamReady(*this);
    }
    return NGHTTP2_ERR_DEFERRED;
  }
  const size_t n = std::min(length, body_.size());
  if (n > 0) {  // an empty buffer may have no storage at all
    memcpy(buf, body_.data(), n);
    body_.consume(n);
  }
  if (body_.empty()) {
    body_.releaseIfEmpty();
    if (body_complete_ && cut_short_) {
      if (n == 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // nghttp2 resets it: INTERNAL_ERROR
    } else if (body_complete_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!trailers_.empty() && submitTrailers()) *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
  }
  if (!body_complete_ && body_.size() < kLowWatermark && !want_pull_) {
    want_pull_ = true;
    conn_.streamReady(*this);
  }
  armClientTimer();
  return static_cast<ssize_t>(n);
}

void Http2Stream::keepTrailers() {
  // The exchange wrote only what forwardableTrailer() allows (appendLastChunk).
  // Kept as "name\0value\0" each: the reader's slices are gone with its next
  // read, and the DATA before them may take many turns to go out.
  const char* base = response_.base();
  for (const HeaderSlice& h : response_.parser().trailers()) {
    appendLowercase(trailers_, h.name.view(base));
    trailers_.push_back('\0');
    trailers_.append(h.value.view(base));
    trailers_.push_back('\0');
  }
}

bool Http2Stream::submitTrailers() {
  // Called from the DATA source's read callback with the end of the body:
  // the trailers' HEADERS end the stream in place of that DATA (nghttp2
  // copies the fields).
  std::vector<nghttp2_nv>& nva = conn_.scratchFields();
  nva.clear();
  for (size_t at = 0; at < trailers_.size();) {
    const size_t name_end = trailers_.find('\0', at);
    const size_t value_end = trailers_.find('\0', name_end + 1);
    auto* bytes = reinterpret_cast<uint8_t*>(trailers_.data());
    nva.push_back({bytes + at, bytes + name_end + 1, name_end - at, value_end - name_end - 1, NGHTTP2_NV_FLAG_NONE});
    at = value_end + 1;
  }
  const int rv = nghttp2_submit_trailer(conn_.session(), id_, nva.data(), nva.size());
  trailers_.clear();
  if (rv != 0) LOG_DEBUG("http2: stream %d: cannot submit trailers: %s", id_, nghttp2_strerror(rv));
  return rv == 0;
}

void Http2Stream::pull() {
  want_pull_ = false;
  if (!ex_ || finished_ || closed_) return;
  DispatchScope scope(*this);
  readResponse();
}

void Http2Stream::finishExchange() {
  finish_pending_ = false;
  if (!ex_ || finished_) return;
  ex_->log(conn_.host().accessLog());
  ex_->endSpools();
  ex_.reset();
  reader_.reset();
  finished_ = true;
  armClientTimer();
}

// ---- Ends ---------------------------------------------------------------------------

void Http2Stream::abort() {
  timer_.cancel();
  if (!ex_ || finished_) return;
  ex_->logClosed(conn_.host().accessLog(), conn_.host().loop().now());
  ex_->abandonUpstream(NoReuse::kClientGone);
  ex_->leaveQueue();
  ex_->endSpools();
  finish_pending_ = false;
  // Nothing more of it is logged or finished. The exchange itself stays
  // until the stream is reused or freed: the call that led here may be one
  // of its own.
  finished_ = true;
}

void Http2Stream::closeClient() {
  if (closed_) return;
  // A response read to its end goes out whole; anything else is cut short.
  if (head_submitted_ && body_complete_) return;
  reset(NGHTTP2_INTERNAL_ERROR);
  abort();
  state_ = ClientState::kClosed;
}

void Http2Stream::onClosed(uint32_t error_code) {
  timer_.cancel();
  if (finish_pending_) finishExchange();  // its response went out whole before settle() came to it
  if (ex_ && !finished_) {
    LOG_DEBUG("http2: stream %d closed (%s) before its exchange ended", id_, nghttp2_http2_strerror(error_code));
    abort();
  }
  body_.clear();
  body_.releaseIfEmpty();
  response_.discard();  // what was left of it (the stream reused next holds nothing)
}

// ---- Timers ----------------------------------------------------------------------

void Http2Stream::armClientTimer() {
  const TimeoutsConfig& t = conn_.host().config().timeouts;
  if (closed_) {
    timer_.cancel();
  } else if (!body_.empty()) {
    timer_.arm(secondsToMs(t.client_send));  // DATA waits for the client's window
  } else if (finished_ || !ex_) {
    timer_.cancel();
  } else if (state_ == ClientState::kHead) {
    if (!timer_.armed()) timer_.arm(secondsToMs(t.client_header));
  } else if (state_ == ClientState::kExchange && ex_->queued_server < 0 && !ex_->request_complete &&
             !request_ended_ && pending_.empty() && ex_->pendingRequestBytes() < kHighWatermark) {
    timer_.arm(secondsToMs(t.client_body));  // waiting for DATA
  } else {
    timer_.cancel();
  }
}

void Http2Stream::onTimer() {
  if (closed_) return;
  if (!body_.empty() || !ex_ || finished_) {
    LOG_DEBUG("http2: stream %d: send timeout", id_);
    reset(NGHTTP2_CANCEL);
    abort();
    return;
  }
  if (!ex_->response_started || ex_->response_held) {
    respondError(408);
  } else {
    closeClient();
  }
}

// ---- No tunnels over HTTP/2 ---------------------------------------------------------

// The request head never asks for an upgrade (Upgrade and Connection are
// refused in HTTP/2 requests), so the exchange never starts a tunnel; a 101
// anyway ends the stream.
void Http2Stream::startTunnel(const HttpParser&, const char*) { closeClient(); }
void Http2Stream::relayTunnel() {}

}  // namespace poolgate
