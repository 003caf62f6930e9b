#include "http/h2_session.h"

#include <algorithm>

#include "http/h2_memory.h"

namespace poolgate {

namespace {

// Frames that make no work for the client's requests (PRIORITY, PING,
// SETTINGS, empty DATA): a connection may send this many, plus some for
// every request it makes, before it is taken for a flood.
constexpr uint32_t kJunkBudget = 1000;
constexpr uint32_t kJunkPerRequest = 20;
// nghttp2's defences, set explicitly.
constexpr size_t kMaxOutboundAck = 1000;
constexpr uint64_t kResetBurst = 1000;
constexpr uint64_t kResetRate = 33;  // per second
constexpr size_t kMaxContinuations = 8;
constexpr size_t kMaxSettings = 32;
// The HPACK table our response heads are encoded with (the client's table may
// be larger: RFC 7541 lets the encoder use less and say so). nghttp2 files its
// entries by name and walks every entry of a name for a value that matches, so
// a field whose value is new in each response (X-Request-Id, an app's counter)
// fills a 4 KiB table with ~80 entries of one name and makes every response
// walk them all: about 8 % of a worker's CPU in tools/bench/http2. 512 bytes still
// hold a response's usual fixed fields (server, content-type, cache-control)
// and bound that walk to about ten entries. nginx indexes no response field.
constexpr size_t kDeflateTableBytes = 512;

struct Callbacks {
  nghttp2_session_callbacks* callbacks = nullptr;
  ~Callbacks() { nghttp2_session_callbacks_del(callbacks); }
};

struct Options {
  nghttp2_option* option = nullptr;
  ~Options() { nghttp2_option_del(option); }
};

}  // namespace

// ---- H2Stream -----------------------------------------------------------------------

H2Stream::H2Stream(H2Session& session, BufferPool& buffers) : session_(session), pending_(buffers) {}

void H2Stream::beginRequest(int32_t id) {
  id_ = id;
  request_.clear();
  pending_.clear();
  uncredited_ = 0;
  refuse_ = 0;
  request_ended_ = closed_ = false;
}

bool H2Stream::onField(std::string_view name, std::string_view value, bool trailer) {
  const uint32_t limit = session_.headerListLimit();
  if (trailer) {
    // They go on in the last chunk, within the same limit as a head.
    return request_.addTrailer(name, value) && request_.trailerBytes() <= limit;
  }
  if (refuse_ != 0) return true;  // already too large: the rest is not kept
  if (!request_.add(name, value)) return false;
  // The decoded list counts, not the compressed frames (an HPACK bomb
  // references one big table entry many times).
  if (request_.listBytes() > limit) refuse_ = 431;
  return true;
}

void H2Stream::onHeadersEnd(bool end_stream) {
  if (refuse_ != 0) {
    onRefused(refuse_);
    return;
  }
  if (!request_.write(pending_, end_stream)) {
    reset(NGHTTP2_PROTOCOL_ERROR);
    return;
  }
  request_ended_ = end_stream;
  onRequestBytes();
}

void H2Stream::onData(const uint8_t* data, size_t length) {
  if (closed_ || refuse_ != 0 || !takesData()) {
    nghttp2_session_consume(session_.session(), id_, length);
    return;
  }
  request_.writeData(pending_, {reinterpret_cast<const char*>(data), length});
  uncredited_ += length;
  onRequestBytes();
}

void H2Stream::onRequestEnd() {
  if (request_ended_) return;
  request_ended_ = true;
  if (refuse_ != 0 || !takesData()) return;
  request_.writeEnd(pending_);
  onRequestBytes();
}

void H2Stream::credit(size_t n) {
  // Chunk framing is ours, so a whole pending_ given over returns all.
  const size_t c = pending_.empty() ? uncredited_ : std::min(n, uncredited_);
  if (c == 0) return;
  uncredited_ -= c;
  nghttp2_session_consume(session_.session(), id_, c);
}

void H2Stream::reset(uint32_t error_code) {
  if (closed_) return;
  nghttp2_submit_rst_stream(session_.session(), NGHTTP2_FLAG_NONE, id_, error_code);
}

void H2Stream::close(uint32_t error_code) {
  closed_ = true;
  if (uncredited_ > 0) {  // the connection's window gets back what the stream never took
    nghttp2_session_consume_connection(session_.session(), uncredited_);
    uncredited_ = 0;
  }
  onClosed(error_code);
  pending_.clear();
  pending_.releaseIfEmpty();
}

// ---- H2Session ----------------------------------------------------------------------

H2Session::H2Session(const Config& config) : config_(config), junk_budget_(kJunkBudget) {}

H2Session::~H2Session() {
  if (session_ != nullptr) nghttp2_session_del(session_);
}

bool H2Session::startSession() {
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
  nghttp2_option_set_max_deflate_dynamic_table_size(opt.option, kDeflateTableBytes);
  if (nghttp2_session_server_new3(&session_, cb.callbacks, this, opt.option, H2Memory::mem()) != 0) {
    session_ = nullptr;
    return false;
  }
  const Http2Config& c = config_.http2;
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, c.initial_window_bytes},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, headerListLimit()},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, sizeof settings / sizeof settings[0]);
  // The connection's window: room for a few streams' windows at once.
  const uint64_t window = std::min<uint64_t>(uint64_t{c.initial_window_bytes} * 16, (1u << 31) - 1);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, static_cast<int32_t>(window));
  return true;
}

bool H2Session::input(const uint8_t* data, size_t size, const char** error) {
  while (size > 0) {
    Stop stop = Stop::kNone;
    const size_t n = scan(data, size, &stop);
    if (stop == Stop::kNone) return feed(data, size, error);
    // The frame (or frame header) that stops the scan ends at data[n - 1]:
    // what comes before it goes first, so that the windows are the current
    // ones, then the check, then the rest.
    if (!feed(data, n - 1, error)) return false;
    if (stop == Stop::kSkippedId) {
      nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
      *error = "HEADERS on a stream id the client skipped";
      return false;
    }
    if (initialWindowOverflows(window_value_)) {
      nghttp2_session_terminate_session(session_, NGHTTP2_FLOW_CONTROL_ERROR);
      *error = "SETTINGS_INITIAL_WINDOW_SIZE pushes a stream's window past 2^31-1";
      return false;
    }
    if (!feed(data + n - 1, 1, error)) return false;
    data += n;
    size -= n;
  }
  return true;
}

bool H2Session::feed(const uint8_t* data, size_t size, const char** error) {
  if (size == 0) return true;
  const ssize_t used = nghttp2_session_mem_recv(session_, data, size);
  if (used >= 0) return true;
  *error = nghttp2_strerror(static_cast<int>(used));
  return false;
}

size_t H2Session::scan(const uint8_t* data, size_t size, Stop* stop) {
  size_t at = 0;
  while (at < size) {
    if (preface_left_ > 0) {
      const size_t n = std::min<size_t>(preface_left_, size - at);
      preface_left_ -= static_cast<uint32_t>(n);
      at += n;
      continue;
    }
    if (payload_left_ == 0) {  // a frame header
      head_[head_have_++] = data[at++];
      if (head_have_ < sizeof head_) continue;
      head_have_ = 0;
      payload_left_ = (uint32_t{head_[0]} << 16) | (uint32_t{head_[1]} << 8) | head_[2];
      const bool stream0 = (head_[5] & 0x7f) == 0 && head_[6] == 0 && head_[7] == 0 && head_[8] == 0;
      // Malformed SETTINGS (an ACK with a payload, a length not a multiple
      // of 6, on a stream) are nghttp2's to refuse.
      in_settings_ = head_[3] == NGHTTP2_SETTINGS && (head_[4] & NGHTTP2_FLAG_ACK) == 0 && stream0 &&
                     payload_left_ % 6 == 0;
      entry_have_ = 0;
      window_seen_ = false;
      if (head_[3] == NGHTTP2_HEADERS) {
        const uint32_t id = ((uint32_t{head_[5]} & 0x7f) << 24) | (uint32_t{head_[6]} << 16) |
                            (uint32_t{head_[7]} << 8) | head_[8];
        if (!noteHeadersId(id)) {
          *stop = Stop::kSkippedId;
          return at;
        }
      }
      continue;
    }
    const size_t n = std::min<size_t>(payload_left_, size - at);
    if (in_settings_) {
      for (size_t i = at; i < at + n; ++i) {
        entry_[entry_have_++] = data[i];
        if (entry_have_ < sizeof entry_) continue;
        entry_have_ = 0;
        if (((entry_[0] << 8) | entry_[1]) == NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE) {
          window_seen_ = true;
          window_value_ = (uint32_t{entry_[2]} << 24) | (uint32_t{entry_[3]} << 16) | (uint32_t{entry_[4]} << 8) |
                          entry_[5];
        }
      }
    }
    at += n;
    payload_left_ -= static_cast<uint32_t>(n);
    if (payload_left_ == 0 && in_settings_ && window_seen_) {
      window_seen_ = false;
      *stop = Stop::kWindowChange;
      return at;
    }
  }
  return at;
}

bool H2Session::noteHeadersId(uint32_t id) {
  if (id % 2 == 0) return true;  // stream 0 and even ids are nghttp2's to refuse
  if (id > last_id_) {
    const uint32_t expected = last_id_ == 0 ? 1 : last_id_ + 2;
    if (id > expected) {
      gaps_[next_gap_] = IdGap{expected, id - 2};
      next_gap_ = static_cast<uint8_t>((next_gap_ + 1) % kIdGaps);
    }
    last_id_ = id;
    return true;
  }
  for (const IdGap& gap : gaps_) {
    if (gap.first != 0 && id >= gap.first && id <= gap.last) return false;
  }
  return true;  // a stream used before: trailers, or HEADERS nghttp2 judges
}

bool H2Session::initialWindowOverflows(uint32_t value) {
  if (value > static_cast<uint32_t>(NGHTTP2_MAX_WINDOW_SIZE)) return false;  // nghttp2 refuses it itself
  const int64_t delta =
      int64_t{value} - nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE);
  for (H2Stream* s = open_; s != nullptr; s = s->open_link_.next) {
    if (nghttp2_session_get_stream_remote_window_size(session_, s->id_) + delta > NGHTTP2_MAX_WINDOW_SIZE) {
      return true;
    }
  }
  return false;
}

H2Stream* H2Session::stream(int32_t id) {
  return static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session_, id));
}

bool H2Session::spendJunk() {
  if (junk_budget_ > 0) --junk_budget_;
  if (junk_budget_ > 0) return true;
  onFlood();
  nghttp2_session_terminate_session(session_, NGHTTP2_ENHANCE_YOUR_CALM);
  return false;
}

// ---- nghttp2's callbacks ----------------------------------------------------------

int H2Session::onBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* self) {
  auto& s = *static_cast<H2Session*>(self);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  H2Stream* stream = s.openStream(frame->hd.stream_id);
  listPush(s.open_, *stream, &H2Stream::open_link_);
  nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, stream);
  return 0;
}

int H2Session::onHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                        size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* self) {
  auto& s = *static_cast<H2Session*>(self);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  H2Stream* stream = s.stream(frame->hd.stream_id);
  if (stream == nullptr) return 0;
  const bool trailer = frame->headers.cat != NGHTTP2_HCAT_REQUEST;
  if (stream->onField({reinterpret_cast<const char*>(name), namelen},
                      {reinterpret_cast<const char*>(value), valuelen}, trailer)) {
    return 0;
  }
  nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_PROTOCOL_ERROR);
  return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

int H2Session::onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  auto& s = *static_cast<H2Session*>(self);
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      H2Stream* stream = s.stream(frame->hd.stream_id);
      if (stream == nullptr) return 0;
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        stream->onHeadersEnd(end_stream);
        s.junk_budget_ = std::min(kJunkBudget, s.junk_budget_ + kJunkPerRequest);
      } else if (end_stream) {
        stream->onRequestEnd();  // trailers: the body has ended
      }
      return 0;
    }
    case NGHTTP2_DATA: {
      if (frame->hd.length == 0 && !end_stream && !s.spendJunk()) return 0;
      if (!end_stream) return 0;
      if (H2Stream* stream = s.stream(frame->hd.stream_id)) stream->onRequestEnd();
      return 0;
    }
    case NGHTTP2_RST_STREAM:
      s.onResetReceived();
      return 0;
    case NGHTTP2_PRIORITY:
    case NGHTTP2_PING:
      s.spendJunk();
      return 0;
    case NGHTTP2_SETTINGS:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) s.spendJunk();
      return 0;
    default:
      return 0;
  }
}

int H2Session::onDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                           size_t len, void* self) {
  auto& s = *static_cast<H2Session*>(self);
  if (H2Stream* stream = s.stream(stream_id)) {
    stream->onData(data, len);
  } else {
    nghttp2_session_consume(session, stream_id, len);
  }
  return 0;
}

int H2Session::onStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* self) {
  auto& s = *static_cast<H2Session*>(self);
  H2Stream* stream = s.stream(stream_id);
  if (stream == nullptr) return 0;
  listUnlink(s.open_, *stream, &H2Stream::open_link_);
  stream->close(error_code);
  s.onStreamClosed(*stream);
  return 0;
}

int H2Session::onFrameSend(nghttp2_session* session, const nghttp2_frame* frame, void* self) {
  auto& s = *static_cast<H2Session*>(self);
  s.onFrameSent(frame->hd.type);
  if (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) return 0;
  // The response has ended before the request: the client may stop sending
  // (RFC 9113 section 8.1).
  if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
    H2Stream* stream = s.stream(frame->hd.stream_id);
    if (stream != nullptr && !stream->request_ended_ && !stream->closed_) {
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    }
  }
  return 0;
}

}  // namespace poolgate
