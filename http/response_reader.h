// ResponseReader: the upstream side of HTTP/1.x without a socket. It owns
// the read buffer and the response rules: the head size cap, the head checks
// llhttp leaves to us (acceptableResponseHead), interim 1xx responses, HEAD /
// 204 / 304 without a body, 101 and the tunnel after it, close-delimited
// bodies and the bytes left over after a response. Used like RequestReader:
// reserve() / commit() / next(), then finish() at EOF.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/buffer.h"
#include "http/parser.h"
#include "http/request_reader.h"

namespace poolgate {

class ResponseReader final : private HttpHandler {
 public:
  static constexpr size_t kMaxHead = 64 * 1024;  // the whole buffer, while a head is read
  static constexpr uint32_t kMaxHeaders = 256;

  enum class Event : uint8_t {
    kNeedMore,  // every buffered byte is parsed: read more
    kHead,      // a head: status() says which (1xx interim, 101, final)
    kBody,      // body bytes, decoded; after a 101, the tunnel's bytes as they came
    kComplete,  // the final response has ended; unread() is what came after it
    kError,     // the response cannot be used: error()
  };
  enum class Error : uint8_t {
    kNone,
    kHeadTooLarge,   // the head outgrew kMaxHead
    kMalformedHead,  // acceptableResponseHead() refused it
    kParse,          // llhttp refused the bytes: errorName(), errorReason()
    kTruncated,      // EOF before the response ended
  };

  explicit ResponseReader(BufferPool& buffers, HeaderStore* store = nullptr);

  // A request went out: a fresh response. `head_request`: no body, whatever
  // the headers say.
  void begin(bool head_request);
  // Room for the next read; size 0: the head is too large (kHeadTooLarge).
  ReadRoom reserve();
  void commit(size_t n) { in_.commit(n); }
  Event next();
  // The upstream closed: kComplete (a close-delimited body ends here, or the
  // tunnel does), or kError (kTruncated).
  Event finish();

  // The current head (valid from kHead until the next read).
  const HttpHead& head() const { return parser_.head(); }
  const char* base() const { return in_.base(); }
  const HttpParser& parser() const { return parser_; }
  int status() const { return parser_.statusCode(); }
  bool interim() const { return status() < 200 && status() != 101; }
  // The final (or 101) response is delimited by the connection's close.
  bool closeDelimited() const { return close_delimited_; }
  bool keepAlive() const { return parser_.keepAlive(); }
  // A 101 was handed over and its head has ended: bytes flow as they are.
  bool tunnel() const { return tunnel_; }
  bool complete() const { return complete_; }

  std::string_view body() const { return body_; }
  Error error() const { return error_; }
  const char* errorName() const { return error_name_; }
  const char* errorReason() const;

  bool hasUnread() const { return !in_.empty(); }
  void releaseBuffer() { in_.releaseIfEmpty(); }
  void releaseHeaders() { parser_.releaseHeaders(); }
  // Forgets the bytes of a response given up half way, and its header array
  // (its reader is then used for another one).
  void discard() {
    in_.clear();
    in_.releaseIfEmpty();
    parser_.releaseHeaders();
  }

 private:
  Event fail(Error error, const char* name);
  Event afterExecute(llhttp_errno_t err, size_t consumed);
  Event messageEnded();
  Event tunnelBytes();

  int onHeadersComplete() override;
  int onBody(const char* at, size_t length) override;
  int onChunkHeader(uint64_t) override { return 0; }
  int onChunkComplete() override { return 0; }
  int onMessageComplete() override;

  Buffer in_;
  HttpParser parser_;
  size_t parsed_ = 0;  // bytes of in_ already fed to the parser (a head in progress)
  Event pending_ = Event::kNeedMore;
  bool resumed_ = false;     // llhttp was resumed after an event: execute() even without new bytes
  bool head_waits_ = false;  // a bodyless head, handed over before its completion
  bool close_delimited_ = false;
  bool tunnel_ = false;
  bool complete_ = false;
  bool failed_ = false;
  Error error_ = Error::kNone;
  const char* error_name_ = "";
  std::string_view body_;
};

}  // namespace poolgate
