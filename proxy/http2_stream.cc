// Http2Stream: one HTTP/2 stream as the ExchangeOwner of its exchange (see
// proxy/http2_connection.h for the design).
#include <string.h>

#include <algorithm>
#include <charconv>
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
  head_submitted_ = body_complete_ = cut_short_ = bare_ = bare_end_ = false;
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

// The upstream's final head, parsed: HEADERS now, and the body bare from here
// on. Not while a head before it (a 1xx, as HTTP/1.1) is still being read.
bool Http2Stream::takeResponseHead(const HttpParser& response, const char* base, Framing framing) {
  if (closed_ || finished_ || response_.hasUnread()) return false;
  const HttpHead& head = response.head();
  std::vector<nghttp2_nv>& nva = startFields(response.statusCode(), head, base);
  for (const HeaderSlice& h : head.headers) {
    const std::string_view name = h.name.view(base);
    if (isClientResponseField(head, base, name, framing)) addField(nva, name, h.value.view(base));
  }
  char digits[20];
  if (framing == Framing::kLength) {
    const auto end = std::to_chars(digits, digits + sizeof digits, response.declaredLength()).ptr;
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>("content-length")), reinterpret_cast<uint8_t*>(digits),
                   14, static_cast<size_t>(end - digits), NGHTTP2_NV_FLAG_NONE});
  }
  bare_ = true;
  submitHead(nva, /*interim=*/false, framing == Framing::kNone);
  return true;
}

void Http2Stream::endResponseBody(const HttpParser& message, const char* base) {
  bare_end_ = true;
  keepTrailers(message, base);
}

// The exchange's out is empty: the next part of its spool, if any, into it.
// false: nothing to read (or the spool failed, and the stream is closed).
bool Http2Stream::refillOut() {
  if (ex_->out.empty() && ex_->spool && !ex_->spool->empty()) {
    if (ex_->spool->drainInto(ex_->out, kHighWatermark) == 0) {
      ServerCounters::add(conn_.host().stats().buffer_errors_total);
      LOG_ERROR("response buffering: cannot read back a temporary file: %s; response cut short", strerror(errno));
      closeClient();
      return false;
    }
    ServerCounters::set(conn_.host().stats().buffered_memory, conn_.host().spoolBudget().in_use);
  }
  return !ex_->out.empty();
}

// A bare body: from out into the DATA buffer, up to the mark.
bool Http2Stream::takeBareBytes() {
  if (!refillOut()) return false;
  const size_t n = std::min(ex_->out.size(), kHighWatermark - body_.size());
  body_.append(ex_->out.data(), n);
  ex_->out.consume(n);
  ex_->record.bytes_sent += n;
  return true;
}

// HTTP/1.1 in out: into the response reader, one room at a time.
bool Http2Stream::takeResponseBytes() {
  if (!refillOut()) return false;
  const ReadRoom room = response_.reserve();
  if (room.size == 0) {  // cannot be: our own head fits
    closeClient();
    return false;
  }
  const size_t n = std::min(room.size, ex_->out.size());
  memcpy(room.at, ex_->out.data(), n);
  response_.commit(n);
  ex_->out.consume(n);
  return true;
}

// Reads the response into HEADERS and DATA, as long as the DATA waiting for
// the session is below the mark.
void Http2Stream::readResponse() {
  bool drained = false;  // everything the exchange wrote has been read
  while (!closed_ && !finished_ && !body_complete_ && body_.size() < kHighWatermark) {
    if (bare_) {
      if (!takeBareBytes()) {
        drained = true;
        break;
      }
      continue;
    }
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
      ex_->record.bytes_sent += response_.body().size();
    } else if (event == ResponseReader::Event::kComplete) {
      body_complete_ = true;
      keepTrailers(response_.parser(), response_.base());
    } else {
      LOG_ERROR("http2: stream %d: unreadable response from the exchange (%s)", id_, response_.errorName());
      closeClient();
      return;
    }
  }
  if (closed_ || finished_) return;
  if (drained && bare_ && bare_end_) body_complete_ = true;
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

// A head in HTTP/1.1 (an interim one, or poolgate's own answer), read back.
void Http2Stream::onResponseHead() {
  const int status = response_.status();
  if (status == 101) {  // no upgrade over HTTP/2 (the request could not ask for one)
    closeClient();
    return;
  }
  const HttpHead& head = response_.head();
  const char* base = response_.base();
  std::vector<nghttp2_nv>& nva = startFields(status, head, base);
  for (const HeaderSlice& h : head.headers) {
    const std::string_view name = h.name.view(base);
    if (!isHopByHop(name)) addField(nva, name, h.value.view(base));
  }
  submitHead(nva, response_.interim(), response_.parser().bodyless());
}

// The connection's scratch fields, cleared, with :status; room in its
// scratch names for the lowercased names of `head`'s fields.
std::vector<nghttp2_nv>& Http2Stream::startFields(int status, const HttpHead& head, const char* base) {
  std::vector<nghttp2_nv>& nva = conn_.scratchFields();
  std::string& names = conn_.scratchNames();
  nva.clear();
  names.clear();
  size_t name_bytes = 0;
  for (const HeaderSlice& h : head.headers) name_bytes += h.name.view(base).size();
  names.reserve(name_bytes);  // addField() appends without moving what it pointed at
  status_text_[0] = static_cast<char>('0' + status / 100 % 10);
  status_text_[1] = static_cast<char>('0' + status / 10 % 10);
  status_text_[2] = static_cast<char>('0' + status % 10);
  nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(":status")), reinterpret_cast<uint8_t*>(status_text_), 7,
                 3, NGHTTP2_NV_FLAG_NONE});
  return nva;
}

void Http2Stream::addField(std::vector<nghttp2_nv>& nva, std::string_view name, std::string_view value) {
  std::string& names = conn_.scratchNames();
  const size_t at = names.size();
  appendLowercase(names, name);
  nva.push_back({reinterpret_cast<uint8_t*>(names.data() + at), reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())),
                 name.size(), value.size(), NGHTTP2_NV_FLAG_NONE});
}

// HEADERS with `nva` (nghttp2 copies it): a 1xx, or the final head with a
// DATA source unless the response has no body.
void Http2Stream::submitHead(std::vector<nghttp2_nv>& nva, bool interim, bool bodyless) {
  int rv;
  if (interim) {
    rv = nghttp2_submit_headers(conn_.session(), NGHTTP2_FLAG_NONE, id_, nullptr, nva.data(), nva.size(), nullptr);
  } else {
    nghttp2_data_provider provider;
    provider.source.ptr = this;
    provider.read_callback = readBodyCallback;
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

void Http2Stream::keepTrailers(const HttpParser& message, const char* base) {
  // Kept as "name\0value\0" each: the slices are gone with the next read,
  // and the DATA before them may take many turns to go out. From the
  // exchange's HTTP/1.1, they are what forwardableTrailer() allowed
  // (appendLastChunk); from the upstream's parser, the same rule applies here.
  for (const HeaderSlice& h : message.trailers()) {
    const std::string_view name = h.name.view(base), value = h.value.view(base);
    if (!forwardableTrailer(name, value)) continue;
    appendLowercase(trailers_, name);
    trailers_.push_back('\0');
    trailers_.append(value);
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

void Http2Stream::armClientTimer() { conn_.streamTimer(*this); }

void Http2Stream::setTimer() {
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
