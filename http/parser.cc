#include "http/parser.h"

#include <algorithm>

#include <strings.h>

namespace poolgate {

namespace {
std::string_view trimBlanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls `visit` with each comma-separated element of a header value, blanks
// trimmed; stops when it returns false.
template <typename Visit>
void forEachListItem(std::string_view list, Visit&& visit) {
  for (;;) {
    const size_t comma = list.find(',');
    if (!visit(trimBlanks(list.substr(0, comma))) || comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}
}  // namespace

std::vector<HeaderSlice> HeaderStore::take() {
  if (spare_.empty()) {
    std::vector<HeaderSlice> fresh;
    fresh.reserve(kInitialCapacity);
    return fresh;
  }
  std::vector<HeaderSlice> headers = std::move(spare_.back());
  spare_.pop_back();
  return headers;
}

void HeaderStore::give(std::vector<HeaderSlice>&& headers) {
  if (headers.capacity() == 0) return;
  headers.clear();
  if (spare_.size() < kMaxSpare) spare_.push_back(std::move(headers));
}

HttpParser::HttpParser(llhttp_type_t type, HttpHandler& handler, uint32_t max_headers, HeaderStore* store)
    : type_(type), handler_(handler), max_headers_(max_headers), store_(store) {
  if (store_ == nullptr) head_.headers.reserve(max_headers < HeaderStore::kInitialCapacity ? max_headers : HeaderStore::kInitialCapacity);
  reset();
}

HttpParser::~HttpParser() { releaseHeaders(); }

void HttpParser::releaseHeaders() {
  if (store_ == nullptr) return;
  store_->give(std::move(head_.headers));
  head_.headers = {};
}

void HttpParser::reset() {
  llhttp_init(&parser_, type_, settings());
  parser_.data = this;
  head_.method = head_.target = head_.status_text = Slice{};
  head_.headers.clear();  // keeps its capacity: no allocation per message
  head_.start_offset = 0;
  head_.header_overflow = false;
  stage_ = HeadStage::kIdle;
  in_value_ = false;
  declared_length_ = 0;
  trailer_from_ = UINT32_MAX;
}

const llhttp_settings_t* HttpParser::settings() {
  static const llhttp_settings_t kSettings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = onMessageBegin;
    s.on_method = onMethod;
    s.on_url = onUrl;
    s.on_status = onStatus;
    s.on_header_field = onHeaderField;
    s.on_header_value = onHeaderValue;
    s.on_header_value_complete = onHeaderValueComplete;
    s.on_headers_complete = onHeadersCompleteCb;
    s.on_body = onBodyCb;
    s.on_chunk_header = onChunkHeaderCb;
    s.on_chunk_complete = onChunkCompleteCb;
    s.on_message_complete = onMessageCompleteCb;
    return s;
  }();
  return &kSettings;
}

llhttp_errno_t HttpParser::execute(const char* base, const char* at, size_t length,
                                   size_t* consumed) {
  base_ = base;
  llhttp_errno_t err = llhttp_execute(&parser_, at, length);
  if (err == HPE_OK) {
    *consumed = length;
  } else {
    const char* pos = llhttp_get_error_pos(&parser_);
    *consumed = pos != nullptr && pos >= at && pos <= at + length ? static_cast<size_t>(pos - at) : 0;
  }
  return err;
}

llhttp_errno_t HttpParser::finish() { return llhttp_finish(&parser_); }

void HttpParser::extend(Slice& slice, const char* at, size_t length) {
  uint32_t offset = static_cast<uint32_t>(at - base_);
  if (slice.length == 0) slice.offset = offset;
  slice.length += static_cast<uint32_t>(length);
}

int HttpParser::onMessageBegin(llhttp_t* p) {
  HttpParser& s = self(p);
  s.head_.method = s.head_.target = s.head_.status_text = Slice{};
  s.head_.headers.clear();
  if (s.head_.headers.capacity() == 0 && s.store_ != nullptr) s.head_.headers = s.store_->take();
  s.head_.header_overflow = false;
  s.stage_ = HeadStage::kStartLine;
  s.in_value_ = false;
  s.declared_length_ = 0;
  s.trailer_from_ = UINT32_MAX;
  return 0;
}

int HttpParser::onMethod(llhttp_t* p, const char* at, size_t length) {
  HttpParser& s = self(p);
  if (s.head_.method.empty()) s.head_.start_offset = static_cast<uint32_t>(at - s.base_);
  s.extend(s.head_.method, at, length);
  return 0;
}

int HttpParser::onUrl(llhttp_t* p, const char* at, size_t length) {
  self(p).extend(self(p).head_.target, at, length);
  return 0;
}

int HttpParser::onStatus(llhttp_t* p, const char* at, size_t length) {
  self(p).extend(self(p).head_.status_text, at, length);
  return 0;
}

int HttpParser::onHeaderField(llhttp_t* p, const char* at, size_t length) {
  HttpParser& s = self(p);
  const bool trailer = s.stage_ == HeadStage::kBody || s.stage_ == HeadStage::kTrailers;
  s.stage_ = trailer ? HeadStage::kTrailers : HeadStage::kHeaders;
  if (s.in_value_ || s.head_.headers.empty()) {
    const size_t count = s.head_.headers.size() - (trailer ? s.trailer_from_ : 0);
    if (count >= s.max_headers_) {
      s.head_.header_overflow = true;
      llhttp_set_error_reason(p, "too many headers");
      return HPE_USER;
    }
    s.head_.headers.emplace_back();
    s.in_value_ = false;
  }
  s.extend(s.head_.headers.back().name, at, length);
  return 0;
}

int HttpParser::onHeaderValue(llhttp_t* p, const char* at, size_t length) {
  HttpParser& s = self(p);
  // llhttp accepts obs-fold and reports the continuation line as a second,
  // non-adjacent piece of the same value. RFC 9112 lets a proxy reject line
  // folding, and we do. (Pieces of one value split across reads stay
  // adjacent: the buffer keeps the whole head in place.)
  const Slice& value = s.head_.headers.back().value;
  if (s.in_value_ && value.length > 0 && at != s.base_ + value.offset + value.length) {
    llhttp_set_error_reason(p, "obsolete line folding");
    return HPE_USER;
  }
  s.in_value_ = true;
  s.extend(s.head_.headers.back().value, at, length);
  return 0;
}

int HttpParser::onHeaderValueComplete(llhttp_t* p) {
  // An empty value produces no on_header_value call: mark the pair as done so
  // the next field starts a new header.
  self(p).in_value_ = true;
  return 0;
}

int HttpParser::onHeadersCompleteCb(llhttp_t* p) {
  HttpParser& s = self(p);
  s.stage_ = HeadStage::kBody;
  s.trailer_from_ = static_cast<uint32_t>(s.head_.headers.size());
  s.declared_length_ = (p->flags & F_CONTENT_LENGTH) != 0 ? p->content_length : 0;
  int result = s.handler_.onHeadersComplete();
  if (result != 0) return result;
  return s.bodyless() ? 1 : 0;
}

bool HttpParser::bodyless() const {
  if (no_body_expected_) return true;
  // RFC 9110 6.4.1: 1xx, 204 and 304 responses have no body, whatever their
  // framing headers say (llhttp would read a chunked one).
  const unsigned status = parser_.status_code;
  return type_ == HTTP_RESPONSE && ((status >= 100 && status < 200 && status != 101) || status == 204 || status == 304);
}

bool acceptableResponseHead(const HttpParser& response, const char* base) {
  const llhttp_t& p = response.raw();
  if (p.status_code < 100 || p.status_code > 599) return false;
  for (char c : response.head().status_text.view(base)) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return false;
  }
  const bool interim = p.status_code < 200 && p.status_code != 101;
  if (interim && (p.flags & (F_CONTENT_LENGTH | F_CHUNKED)) != 0) return false;
  // Chunked applied twice (in one Transfer-Encoding or over several) is
  // invalid framing (RFC 9112 6.1), even where llhttp frames it as chunked.
  if (chunkedCodings(response.head(), base) > 1) return false;
  return true;
}

int chunkedCodings(const HttpHead& head, const char* base) {
  int count = 0;
  for (const HeaderSlice& h : head.headers) {
    if (!equalsIgnoreCase(h.name.view(base), "transfer-encoding")) continue;
    forEachListItem(h.value.view(base), [&](std::string_view coding) {
      if (equalsIgnoreCase(coding, "chunked")) ++count;
      return true;
    });
  }
  return count;
}

int HttpParser::onBodyCb(llhttp_t* p, const char* at, size_t length) {
  return self(p).handler_.onBody(at, length);
}

int HttpParser::onChunkHeaderCb(llhttp_t* p) {
  // llhttp takes any size below 2^64. Many servers read a chunk size into a
  // signed 64-bit integer, where a size of 2^63 or more turns negative: two
  // readings of one body. Refused, whichever side sent it.
  if (p->content_length > kMaxChunkSize) return -1;  // llhttp: HPE_CB_CHUNK_HEADER
  return self(p).handler_.onChunkHeader(p->content_length);
}

int HttpParser::onChunkCompleteCb(llhttp_t* p) { return self(p).handler_.onChunkComplete(); }

int HttpParser::onMessageCompleteCb(llhttp_t* p) {
  HttpParser& s = self(p);
  s.stage_ = HeadStage::kIdle;
  return s.handler_.onMessageComplete();
}

// ---- Header rules -------------------------------------------------------

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

bool containsTokenIgnoreCase(std::string_view list, std::string_view token) {
  bool found = false;
  forEachListItem(list, [&](std::string_view item) {
    found = equalsIgnoreCase(item, token);
    return !found;
  });
  return found;
}

bool isHopByHop(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"};
  for (std::string_view hop : kNames) {
    if (equalsIgnoreCase(name, hop)) return true;
  }
  return false;
}

bool isFieldValue(std::string_view value) {
  if (!value.empty() && (value.front() == ' ' || value.front() == '\t' || value.back() == ' ' ||
                         value.back() == '\t')) {
    return false;
  }
  for (unsigned char c : value) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

bool forwardableTrailer(std::string_view name, std::string_view value) {
  return !isHopByHop(name) && !equalsIgnoreCase(name, "content-length") && !equalsIgnoreCase(name, "host") &&
         isFieldValue(value);
}

bool listedInConnection(const HttpHead& head, const char* base, std::string_view name) {
  for (const HeaderSlice& h : head.headers) {
    if (equalsIgnoreCase(h.name.view(base), "connection") &&
        containsTokenIgnoreCase(h.value.view(base), name)) {
      return true;
    }
  }
  return false;
}

std::string_view findHeader(const HttpHead& head, const char* base, std::string_view name) {
  for (const HeaderSlice& h : head.headers) {
    if (equalsIgnoreCase(h.name.view(base), name)) return h.value.view(base);
  }
  return {};
}

const char* llhttpVersion() {
#define PG_STR2(x) #x
#define PG_STR(x) PG_STR2(x)
  return PG_STR(LLHTTP_VERSION_MAJOR) "." PG_STR(LLHTTP_VERSION_MINOR) "." PG_STR(LLHTTP_VERSION_PATCH);
#undef PG_STR
#undef PG_STR2
}

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 507: return "Insufficient Storage";
    default: return "Unknown";
  }
}

KeepAliveHint parseKeepAlive(std::string_view value) {
  KeepAliveHint hint;
  forEachListItem(value, [&](std::string_view item) {
    const size_t equals = item.find('=');
    if (equals == std::string_view::npos) return true;
    std::string_view number = item.substr(equals + 1);
    if (number.size() >= 2 && number.front() == '"' && number.back() == '"') number = number.substr(1, number.size() - 2);
    if (number.empty() || number.size() > 9) return true;
    int64_t parsed = 0;
    for (char c : number) {
      if (c < '0' || c > '9') return true;
      parsed = parsed * 10 + (c - '0');
    }
    const std::string_view name = item.substr(0, equals);
    if (equalsIgnoreCase(name, "timeout")) hint.timeout_s = parsed;
    if (equalsIgnoreCase(name, "max")) hint.max = parsed;
    return true;
  });
  return hint;
}

uint64_t keepAliveIdleLimitMs(int64_t timeout_s) {
  if (timeout_s <= 0) return 0;
  const uint64_t timeout_ms = static_cast<uint64_t>(timeout_s) * 1000;
  return timeout_ms - std::min<uint64_t>(500, timeout_ms / 4);
}

}  // namespace poolgate
