// RequestReader: the client side of HTTP/1.x without a socket. It owns the
// read buffer and its rules (how much a head may take, when the buffer may be
// compacted, max_body_bytes) and turns the bytes it is given into events, one
// at a time, which its owner acts on after next() has returned:
//
//   Room room = reader.reserve();            // where the next recv() goes
//   n = recv(room.at, room.size); reader.commit(n);
//   for (;;) switch (reader.next()) { ... kNeedMore: break out ... }
//
// A head comes with the verdict of the request checks (request_rules.h): the
// owner decides what to answer. Pipelined requests wait in the buffer: after
// kComplete, next() parses nothing until nextMessage().
#pragma once

#include <cstdint>
#include <string_view>

#include "config/config.h"
#include "core/buffer.h"
#include "core/object_cache.h"
#include "http/parser.h"
#include "http/request_rules.h"

namespace poolgate {

// Where the next read goes. `size` 0: nothing may be read; `refuse` is then
// the status to answer (414 or 431: the head outgrew its limits).
struct ReadRoom {
  char* at = nullptr;
  size_t size = 0;
  int refuse = 0;
};

class RequestReader final : private HttpHandler {
 public:
  enum class Event : uint8_t {
    kNeedMore,    // every buffered byte is parsed: read more
    kHead,        // a request head: head(), base(), verdict(), target()
    kChunkStart,  // the size line of a chunk with data (chunked body)
    kBody,        // body bytes, decoded: body()
    kChunkEnd,    // the end of that chunk's data
    kComplete,    // the request has ended; what follows waits for nextMessage()
    kError,       // errorStatus() is the answer; the reader takes nothing more
  };

  // `store`: the worker's spare header arrays (may be null).
  RequestReader(BufferPool& buffers, const LimitsConfig& limits, HeaderStore* store = nullptr);

  ReadRoom reserve();
  void commit(size_t n) { in_.commit(n); }
  Event next();
  // After kComplete: the next pipelined request may be parsed.
  void nextMessage();

  // The bytes of the current event as they go upstream: our own chunk framing
  // (re-chunked: chunk extensions are dropped; trailers go on as
  // forwardableTrailer() allows), the body as is.
  void forward(Buffer& sink) const;

  // The current head (valid from kHead until the next read).
  const HttpHead& head() const { return parser_.head(); }
  const char* base() const { return in_.base(); }
  // checkRequestHead()'s answer for the head: 0 = it may be forwarded.
  int verdict() const { return verdict_; }
  const RequestTarget& target() const { return target_; }
  // The host the request is for: an absolute-form target's authority, else
  // the Host header ("" for an HTTP/1.0 request without one).
  std::string_view host() const;
  const HttpParser& parser() const { return parser_; }
  bool headRequest() const;
  bool getOrHead() const;
  bool idempotent() const;
  bool chunked() const { return parser_.chunked(); }
  bool keepAlive() const { return parser_.keepAlive(); }
  bool upgrade() const { return parser_.upgrade(); }
  uint8_t versionMinor() const { return parser_.versionMinor(); }
  // Body bytes still to come (none once the request is complete).
  bool bodyPending() const;
  bool complete() const { return phase_ == Phase::kDone; }
  // Between requests, or in the middle of a head.
  bool inHead() const { return parser_.stage() != HeadStage::kBody; }

  std::string_view body() const { return body_; }
  uint64_t chunkSize() const { return chunk_size_; }
  int errorStatus() const { return error_status_; }
  // kError came from max_body_bytes (413 mid-body), not from the head.
  bool bodyTooLarge() const { return body_too_large_; }
  const char* errorName() const { return error_name_; }
  const char* errorReason() const;

  // Bytes received and not parsed (after an accepted upgrade: the new
  // protocol's first bytes); dropUnread() discards them.
  std::string_view unread() const { return {in_.data(), in_.size()}; }
  void dropUnread() { in_.consume(in_.size()); }
  // next() has something to parse (bytes, or a step llhttp still has to
  // take after the last event).
  bool hasWork() const { return in_.size() > parsed_ || (resumed_ && phase_ == Phase::kMessage); }

 private:
  enum class Phase : uint8_t { kMessage, kDone, kFailed };

  Event fail(int status, const char* name);
  Event afterExecute(llhttp_errno_t err, size_t consumed);
  Event checkHeadLimits();

  int onHeadersComplete() override;
  int onBody(const char* at, size_t length) override;
  int onChunkHeader(uint64_t size) override;
  int onChunkComplete() override;
  int onMessageComplete() override;

  const LimitsConfig& limits_;
  Buffer in_;
  HttpParser parser_;
  size_t parsed_ = 0;  // bytes of in_ already fed to the parser (a head in progress)
  Phase phase_ = Phase::kMessage;
  Event pending_ = Event::kNeedMore;  // what the callback that paused llhttp saw
  bool in_chunk_ = false;
  bool resumed_ = false;  // llhttp was resumed after an event: execute() even without new bytes
  bool body_too_large_ = false;
  int verdict_ = 0;
  int error_status_ = 0;
  const char* error_name_ = "";
  RequestTarget target_;
  std::string_view body_;
  uint64_t chunk_size_ = 0;
  uint64_t body_bytes_ = 0;
};

// A worker's free list of readers: a client holds one from the first byte of
// a request until it is idle again with nothing buffered (an idle keep-alive
// client holds none).
class RequestReaderCache : public ObjectCache<RequestReader, BufferPool&, const LimitsConfig&, HeaderStore*> {
 public:
  static constexpr size_t kMaxCached = 256;
  RequestReaderCache(BufferPool& buffers, const LimitsConfig& limits, HeaderStore* store)
      : ObjectCache(kMaxCached, buffers, limits, store) {}
};

}  // namespace poolgate
