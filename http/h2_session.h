// H2Session: the server side of an HTTP/2 connection without a socket.
// nghttp2's session does the framing, HPACK, stream states and flow control;
// this class sets it up with poolgate's settings and defences, and turns each
// request stream's HEADERS, DATA and trailers into the HTTP/1.1 request that
// is forwarded in its place (H2Request, http/h2_request.h).
//
// Bytes come in through input() and go out through output(); whoever owns
// the socket moves them (proxy/http2_connection.h), and the fuzz target feeds
// it frames directly (tests/fuzz/fuzz_h2_frames.cc). A subclass says what a
// stream is (openStream) and hears when one closes.
//
// Every request stream is an H2Stream. It holds the HTTP/1.1 bytes written
// for the request and not yet taken (pending_); its owner takes them in
// onRequestBytes() and gives the DATA back to the client's window with
// credit() as it does, so the client can send no faster than the request is
// forwarded.
//
// Two RFC 9113 rules are checked here because nghttp2 1.52 does not, both
// found by input() following the frame headers as they pass, before nghttp2
// sees the frame:
// - a SETTINGS_INITIAL_WINDOW_SIZE that would push an open stream's send
//   window past 2^31-1 is a connection error of type FLOW_CONTROL_ERROR
//   (section 6.9.2; nghttp2 resets the stream instead);
// - HEADERS on a stream id the client skipped (5 after 1, then 3) is a
//   connection error of type PROTOCOL_ERROR (section 5.1.1: opening 5 closed
//   the idle 3). nghttp2 remembers only the last id, so it cannot tell a
//   skipped id from a stream that was used and closed, on which a client may
//   still send trailers it wrote before our RST_STREAM came (section 5.1), and
//   ignores both. A skipped id was never used, so nothing of its can be in
//   flight: the scan keeps the last few gaps in the ids and refuses HEADERS
//   in them.
//
// Defences, each with a limit of its own: SETTINGS and PING replies the
// client does not read (CVE-2019-9512/9515), the rapid reset
// (CVE-2023-44487), the CONTINUATION flood (CVE-2024-27316), SETTINGS floods
// (nghttp2's options); frames that do no work for any request (PRIORITY,
// PING, SETTINGS, empty DATA: CVE-2019-9512, -9515, -9518) from a budget that
// requests refill; a decoded header list larger than the limit answers 431
// (an HPACK bomb references one big table entry many times).
#pragma once

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/config.h"
#include "core/buffer.h"
#include "core/intrusive_list.h"
#include "http/h2_request.h"

namespace poolgate {

class H2Session;

class H2Stream {
 public:
  H2Stream(const H2Stream&) = delete;
  H2Stream& operator=(const H2Stream&) = delete;
  virtual ~H2Stream() = default;

  int32_t id() const { return id_; }
  bool requestEnded() const { return request_ended_; }
  bool closed() const { return closed_; }
  // The next in the session's list of open streams (H2Session::openStreams).
  H2Stream* nextOpen() const { return open_link_.next; }

  // ---- From the session's callbacks. Virtual so that an observer (the fuzz
  // target) can see what nghttp2 decoded before the request is written.
  // One request field; false: the request is malformed (RST_STREAM PROTOCOL_ERROR).
  virtual bool onField(std::string_view name, std::string_view value, bool trailer);
  // The head has come (`end_stream`: and the request with it).
  virtual void onHeadersEnd(bool end_stream);
  virtual void onData(const uint8_t* data, size_t length);
  virtual void onRequestEnd();

 protected:
  H2Stream(H2Session& session, BufferPool& buffers);

  // Stream `id` begins: the last request's state is forgotten.
  void beginRequest(int32_t id);
  // `n` bytes were taken from pending_: the DATA they carried goes back to
  // the client's window (WINDOW_UPDATE).
  void credit(size_t n);
  void reset(uint32_t error_code);  // RST_STREAM, unless closed already

  // ---- For the owner.
  // pending_ holds more of the request, or the request has ended.
  virtual void onRequestBytes() = 0;
  // The request is not forwarded: answer `status` (431) instead.
  virtual void onRefused(int status) = 0;
  // false: nobody reads the request any more (answered already); its DATA
  // is dropped and the window gets it back.
  virtual bool takesData() const = 0;
  // The session closed the stream (both ends done, or a reset). pending_ is
  // cleared after this returns.
  virtual void onClosed(uint32_t error_code) = 0;

  H2Session& session_;
  ListLink<H2Stream> open_link_;  // the session's list of open streams
  H2Request request_;
  Buffer pending_;         // the request as HTTP/1.1, not yet taken
  size_t uncredited_ = 0;  // DATA bytes received and not yet given back to the window
  int refuse_ = 0;         // a status to answer instead of forwarding (431)
  int32_t id_ = 0;
  bool request_ended_ = false;
  bool closed_ = false;

 private:
  friend class H2Session;
  void close(uint32_t error_code);
};

class H2Session {
 public:
  H2Session(const H2Session&) = delete;
  H2Session& operator=(const H2Session&) = delete;

  nghttp2_session* session() { return session_; }
  // The header list a request may have: http2.max_header_list_bytes, but no
  // more than limits.max_header_bytes, which the HTTP/1.1 head written from
  // it must fit (each field costs 32 bytes in the list, 4 in the head).
  uint32_t headerListLimit() const {
    return std::min(config_.http2.max_header_list_bytes, config_.limits.max_header_bytes);
  }

  // Bytes from the client. false: a connection error (nghttp2 has queued its
  // GOAWAY where it could: a bad preface, a flood...); `error` says which.
  bool input(const uint8_t* data, size_t size, const char** error);
  // The next bytes to send (valid until the next call), 0 when there are
  // none, < 0 on a fatal error.
  ssize_t output(const uint8_t** data) { return nghttp2_session_mem_send(session_, data); }

 protected:
  explicit H2Session(const Config& config);
  virtual ~H2Session();
  // Creates the session and queues our SETTINGS. false: out of memory.
  bool startSession();
  bool started() const { return session_ != nullptr; }
  // The streams opened and not yet closed, in no order (H2Stream::nextOpen).
  H2Stream* openStreams() const { return open_; }

  // A HEADERS frame opened request stream `id`: the stream that carries it.
  virtual H2Stream* openStream(int32_t id) = 0;
  // The session closed `stream` (H2Stream::onClosed has run); it may be
  // reused once no call of its own is on the stack.
  virtual void onStreamClosed(H2Stream& stream) = 0;
  // Counters.
  virtual void onResetReceived() {}
  virtual void onFrameSent(uint8_t type) { (void)type; }
  // Too many frames that do no work: the connection is closed (GOAWAY ENHANCE_YOUR_CALM).
  virtual void onFlood() {}

 private:
  static int onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t flags, void* self);
  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int onDataChunk(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data, size_t len,
                         void* self);
  static int onStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* self);
  static int onFrameSend(nghttp2_session*, const nghttp2_frame* frame, void* self);

  H2Stream* stream(int32_t id);
  // A frame that does no work for the client; false: the budget is spent
  // and the connection closes.
  bool spendJunk();
  bool feed(const uint8_t* data, size_t size, const char** error);
  // What stops the scan: a frame nghttp2 must not take as it is.
  enum class Stop : uint8_t {
    kNone,
    kWindowChange,  // a SETTINGS that changes the initial window ends at the offset's last byte
    kSkippedId,     // the header of a HEADERS frame on a skipped stream id ends there
  };
  // Follows the frames in `data` (the preface first). Returns the offset just
  // past the first byte that stops the scan, with `stop` set, or `size`.
  size_t scan(const uint8_t* data, size_t size, Stop* stop);
  // A HEADERS frame on client stream `id`: false if `id` was skipped.
  bool noteHeadersId(uint32_t id);
  // Would an initial window of `value` push an open stream's window past 2^31-1?
  bool initialWindowOverflows(uint32_t value);

  const Config& config_;
  nghttp2_session* session_ = nullptr;
  H2Stream* open_ = nullptr;  // streams opened and not yet closed
  uint32_t junk_budget_;
  // The frame scan (scan()): where the input stands.
  uint32_t preface_left_ = NGHTTP2_CLIENT_MAGIC_LEN;
  uint32_t payload_left_ = 0;  // of the current frame
  uint8_t head_[9];            // a frame header, as it comes
  uint8_t head_have_ = 0;
  uint8_t entry_[6];           // a SETTINGS entry, as it comes
  uint8_t entry_have_ = 0;
  bool in_settings_ = false;   // the current frame is a SETTINGS to read
  bool window_seen_ = false;   // ...that sets SETTINGS_INITIAL_WINDOW_SIZE
  uint32_t window_value_ = 0;
  // Client stream ids: the highest that HEADERS opened, and the last few
  // ranges of odd ids skipped below it (first..last, inclusive).
  struct IdGap {
    uint32_t first = 0, last = 0;
  };
  static constexpr size_t kIdGaps = 4;
  uint32_t last_id_ = 0;
  IdGap gaps_[kIdGaps];
  uint8_t next_gap_ = 0;
};

}  // namespace poolgate
