// HTTP/1.x message heads parsed by llhttp, recorded as slices of the read
// buffer (no copy of header bytes), and the header rules a proxy needs.
#pragma once

#include <llhttp.h>

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace poolgate {

// A run of bytes in a buffer, as an offset from the buffer's storage base, so
// it survives the buffer growing.
struct Slice {
  uint32_t offset = 0;
  uint32_t length = 0;
  std::string_view view(const char* base) const { return {base + offset, length}; }
  bool empty() const { return length == 0; }
};

struct HeaderSlice {
  Slice name;
  Slice value;
};

// What a parser hands its owner. Return values follow llhttp: 0 = go on,
// HPE_PAUSED = stop execute() here (resume later), -1 = error.
class HttpHandler {
 public:
  virtual int onHeadersComplete() = 0;  // head is in HttpParser::head(); may return 1 (no body)
  virtual int onBody(const char* at, size_t length) = 0;
  virtual int onChunkHeader(uint64_t size) = 0;
  virtual int onChunkComplete() = 0;
  virtual int onMessageComplete() = 0;

 protected:
  ~HttpHandler() = default;
};

// kTrailers: the fields after a chunked body (RFC 9112 section 7.1.2).
enum class HeadStage : uint8_t { kIdle, kStartLine, kHeaders, kBody, kTrailers };

// The largest chunk size accepted (requests and responses): INT64_MAX. A
// larger one fails the parse (HPE_CB_CHUNK_HEADER) before the handler hears
// of it.
inline constexpr uint64_t kMaxChunkSize = 0x7fffffffffffffffULL;

// A worker's spare header-slice arrays. A parser holds one only while a
// message head is read and used, so an idle keep-alive connection (client or
// pooled upstream) owns none, and the steady state allocates nothing: the
// arrays go round between the connections that are busy.
class HeaderStore {
 public:
  static constexpr size_t kInitialCapacity = 32;
  std::vector<HeaderSlice> take();
  void give(std::vector<HeaderSlice>&& headers);
  size_t spare() const { return spare_.size(); }

 private:
  static constexpr size_t kMaxSpare = 4096;
  std::vector<std::vector<HeaderSlice>> spare_;
};

struct HttpHead {
  Slice method;       // requests
  Slice target;       // requests
  Slice status_text;  // responses
  std::vector<HeaderSlice> headers;
  uint32_t start_offset = 0;  // where the message began in the buffer
  bool header_overflow = false;  // more than the allowed number of headers
};

class HttpParser {
 public:
  // `store`: where the header array comes from and goes back to (see
  // HeaderStore); null: the parser keeps its own for its whole life.
  HttpParser(llhttp_type_t type, HttpHandler& handler, uint32_t max_headers, HeaderStore* store = nullptr);
  ~HttpParser();
  HttpParser(const HttpParser&) = delete;
  HttpParser& operator=(const HttpParser&) = delete;

  // Parses [at, at+length), which lies inside the storage starting at `base`.
  // Returns bytes consumed and the llhttp status (HPE_OK, HPE_PAUSED,
  // HPE_PAUSED_UPGRADE or an error).
  llhttp_errno_t execute(const char* base, const char* at, size_t length, size_t* consumed);
  // Signals EOF (close-delimited responses complete here).
  llhttp_errno_t finish();
  void resume() { llhttp_resume(&parser_); }
  void reset();
  // Between messages: the header array goes back to the store (the head's
  // slices are gone until the next message begins).
  void releaseHeaders();

  const HttpHead& head() const { return head_; }
  HeadStage stage() const { return stage_; }
  // In the middle of a head (or of trailers): its bytes must stay where they are.
  bool midHead() const {
    return stage_ == HeadStage::kStartLine || stage_ == HeadStage::kHeaders || stage_ == HeadStage::kTrailers;
  }
  // The trailer fields of a chunked message, once it is complete (slices
  // into the same storage as the head's, valid until the next read). They
  // follow the head's fields in head().headers; max_headers counts them apart.
  std::span<const HeaderSlice> trailers() const {
    if (trailer_from_ >= head_.headers.size()) return {};
    return std::span<const HeaderSlice>(head_.headers).subspan(trailer_from_);
  }
  // llhttp itself, for the code of http/ only (its readers and rules).
  llhttp_t& raw() { return parser_; }
  const llhttp_t& raw() const { return parser_; }
  const char* errorReason() const { return llhttp_get_error_reason(&parser_); }
  // After a request that asked for an upgrade which did not happen.
  void resumeAfterUpgrade() { llhttp_resume_after_upgrade(&parser_); }

  llhttp_method_t method() const { return static_cast<llhttp_method_t>(parser_.method); }
  int statusCode() const { return parser_.status_code; }
  bool chunked() const { return (parser_.flags & F_CHUNKED) != 0; }
  bool hasContentLength() const { return (parser_.flags & F_CONTENT_LENGTH) != 0; }
  bool upgrade() const { return parser_.upgrade != 0; }
  // Body bytes of a Content-Length body not read yet.
  uint64_t remainingLength() const { return parser_.content_length; }
  // The message so far is one whose body runs to the connection's close.
  bool needsEof() const { return llhttp_message_needs_eof(&parser_) != 0; }
  // A response head that ends its message (HEAD request, 1xx but 101, 204, 304).
  bool bodyless() const;

  // Content-Length as declared (llhttp counts parser_.content_length down
  // while it reads the body).
  uint64_t declaredLength() const { return declared_length_; }
  uint8_t versionMajor() const { return parser_.http_major; }
  uint8_t versionMinor() const { return parser_.http_minor; }
  bool keepAlive() const { return llhttp_should_keep_alive(&parser_) != 0; }

  // Response parsers: the request was HEAD (no body whatever the headers say).
  void setNoBodyExpected(bool value) { no_body_expected_ = value; }

 private:
  static const llhttp_settings_t* settings();
  static HttpParser& self(llhttp_t* p) { return *static_cast<HttpParser*>(p->data); }
  void extend(Slice& slice, const char* at, size_t length);

  static int onMessageBegin(llhttp_t* p);
  static int onMethod(llhttp_t* p, const char* at, size_t length);
  static int onUrl(llhttp_t* p, const char* at, size_t length);
  static int onStatus(llhttp_t* p, const char* at, size_t length);
  static int onHeaderField(llhttp_t* p, const char* at, size_t length);
  static int onHeaderValue(llhttp_t* p, const char* at, size_t length);
  static int onHeaderValueComplete(llhttp_t* p);
  static int onHeadersCompleteCb(llhttp_t* p);
  static int onBodyCb(llhttp_t* p, const char* at, size_t length);
  static int onChunkHeaderCb(llhttp_t* p);
  static int onChunkCompleteCb(llhttp_t* p);
  static int onMessageCompleteCb(llhttp_t* p);

  llhttp_t parser_;
  llhttp_type_t type_;
  HttpHandler& handler_;
  HttpHead head_;
  uint32_t max_headers_;
  HeaderStore* store_;
  const char* base_ = nullptr;
  HeadStage stage_ = HeadStage::kIdle;
  bool in_value_ = false;
  bool no_body_expected_ = false;
  uint32_t trailer_from_ = UINT32_MAX;  // the head's field count, once the head is complete
  uint64_t declared_length_ = 0;
};

// ---- Header rules -------------------------------------------------------

// What llhttp leaves to us in a response head: a status of 100..599, a
// reason phrase without control characters, no body framing on an interim
// (1xx other than 101) response, and `chunked` at most once.
bool acceptableResponseHead(const HttpParser& response, const char* base);

// How many times `chunked` appears among the codings of every
// Transfer-Encoding header of `head`.
int chunkedCodings(const HttpHead& head, const char* base);

bool equalsIgnoreCase(std::string_view a, std::string_view b);
bool containsTokenIgnoreCase(std::string_view list, std::string_view token);

// Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
// Upgrade: never forwarded as such.
bool isHopByHop(std::string_view name);

// A field value both protocols accept as is (RFC 9113 section 8.2.1, RFC 9110
// section 5.5): no NUL, CR or LF, no whitespace at either end, and no other
// control either: it has no business in a field an HTTP/1.1 server will read.
bool isFieldValue(std::string_view value);

// A trailer field that is passed on (RFC 9110 section 6.5): not hop-by-hop,
// not framing or routing (Content-Length, Host), a value without control
// characters (it may end up in an HTTP/2 HEADERS frame). Others are dropped.
bool forwardableTrailer(std::string_view name, std::string_view value);

// True if `name` is listed in any Connection header of `head`.
bool listedInConnection(const HttpHead& head, const char* base, std::string_view name);

// The value of the first header named `name`, or an empty view.
std::string_view findHeader(const HttpHead& head, const char* base, std::string_view name);

std::string_view reasonPhrase(int status);

// The llhttp version the proxy is built with, as "8.1.0".
const char* llhttpVersion();

// The parameters of a `Keep-Alive` response header (RFC 2068 section 19.7.1,
// sent by gunicorn, Apache, Node and others): how long the server keeps an
// idle connection open, and how many more requests it takes on it. -1 where
// absent or not a plain decimal number.
struct KeepAliveHint {
  int64_t timeout_s = -1;
  int64_t max = -1;
};
KeepAliveHint parseKeepAlive(std::string_view value);

// How long a connection whose server announced `timeout_s` may sit idle and
// still be reused: the timeout less a margin (a quarter of it, at most 500 ms),
// so that we stop using it shortly before the server closes it.
uint64_t keepAliveIdleLimitMs(int64_t timeout_s);

}  // namespace poolgate
