// demo-upstream: a small prefork HTTP/1.1 app server to put behind poolgate.
//
// The Starlet/Unicorn model: the master binds one listening socket, forks N
// workers that each run a blocking accept() loop and serve one connection at a
// time (keep-alive until the client closes), and replaces workers that die.
// Every response says which worker and which TCP connection served it
// (X-Worker, X-Connection), so tests can assert upstream connection reuse.
//
// Endpoints (any method; HEAD gets the head only):
//   /             text/plain "hello from demo-upstream worker PID\n"
//   /echo         JSON: method, target, version, headers, body_bytes, body_sum,
//                 pid, conn, conn_requests (this request included)
//   /size/N       N bytes, Content-Length; the body is "abc...xyz" repeated
//   /chunked/N    the same N bytes in chunked transfer encoding, several chunks
//   /delay/MS     sleeps MS milliseconds, then answers
//   /close/N      N bytes delimited by closing the connection (no length)
//   /status/CODE  answers with that status (200..599)
// Request bodies (Content-Length or chunked) are read and counted on every path.
//
// Usage: demo-upstream [--listen HOST:PORT] [--workers N]
//                      [--keepalive-timeout SECONDS] [--max-requests-per-conn N]
// Prints "demo-upstream listening on HOST:PORT" (the real port) once bound.

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxHeadBytes = 64 * 1024;  // request line + headers
constexpr size_t kMaxLineBytes = 8 * 1024;   // chunk-size and trailer lines
constexpr size_t kReadSize = 64 * 1024;
constexpr size_t kWriteSize = 64 * 1024;
constexpr size_t kMaxChunk = 16 * 1024;      // chunk size of /chunked/N

struct Options {
  std::string host = "127.0.0.1";
  uint16_t port = 5000;
  int workers = 4;
  double keepalive_timeout = 30.0;  // 0 = never time out
  uint64_t max_requests_per_conn = 0;  // 0 = unlimited
};

// ---------------------------------------------------------------------------
// Small helpers

bool parseUint(std::string_view text, uint64_t* out) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

bool equalsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls f(token) for each non-empty element of a comma-separated list.
template <typename F>
void forEachToken(std::string_view list, F&& f) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view token = trim(list.substr(0, comma));
    if (!token.empty()) f(token);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

// RFC 9110 tchar: the characters of a method or a header name.
bool isTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
    return true;
  }
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool isToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), isTokenChar);
}

// Length of the well-formed UTF-8 sequence at the start of s (lead byte >= 0x80),
// or 0 when it is not one.
size_t utf8SequenceLength(std::string_view s) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char lead = byte(0);
  size_t length = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
  if (lead < 0xc2 || lead > 0xf4 || s.size() < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return 0;
  }
  if (lead == 0xe0 && byte(1) < 0xa0) return 0;   // overlong
  if (lead == 0xed && byte(1) >= 0xa0) return 0;  // surrogate
  if (lead == 0xf0 && byte(1) < 0x90) return 0;   // overlong
  if (lead == 0xf4 && byte(1) >= 0x90) return 0;  // past U+10FFFF
  return length;
}

// JSON string literal. Well-formed UTF-8 is copied; any other byte >= 0x80 is
// taken as Latin-1 (obs-text in HTTP headers), so the output is valid JSON
// whatever the client sent.
void appendJsonString(std::string& out, std::string_view s) {
  out += '"';
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += char(c);
    } else if (size_t length = c >= 0x80 ? utf8SequenceLength(s.substr(i)) : 0) {
      out.append(s.substr(i, length));
      i += length - 1;
    } else {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", c);
      out += esc;
    }
  }
  out += '"';
}

const char* reasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
  }
}

// The body of /size, /chunked and /close: byte i is 'a' + i % 26.
const std::string& bodyPattern() {
  static const std::string pattern = [] {
    std::string p(kWriteSize + 26, '\0');
    for (size_t i = 0; i < p.size(); ++i) p[i] = char('a' + i % 26);
    return p;
  }();
  return pattern;
}

std::string_view patternSlice(uint64_t offset, size_t length) {
  return std::string_view(bodyPattern()).substr(offset % 26, length);
}

// ---------------------------------------------------------------------------
// Socket I/O (blocking; SO_RCVTIMEO / SO_SNDTIMEO bound every wait)

// Writes every byte of the pieces; false once the peer is gone or stalls.
bool sendAll(int fd, std::initializer_list<std::string_view> pieces) {
  iovec iov[8];
  size_t count = 0;
  for (std::string_view piece : pieces) {
    if (piece.empty() || count == std::size(iov)) continue;
    iov[count++] = {const_cast<char*>(piece.data()), piece.size()};
  }
  iovec* next = iov;
  while (count > 0) {
    msghdr msg{};
    msg.msg_iov = next;
    msg.msg_iovlen = count;
    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    auto left = size_t(n);
    while (count > 0 && left >= next->iov_len) {
      left -= next->iov_len;
      ++next;
      --count;
    }
    if (count > 0) {
      next->iov_base = static_cast<char*>(next->iov_base) + left;
      next->iov_len -= left;
    }
  }
  return true;
}

// Buffered reading from a blocking socket.
class Reader {
 public:
  enum class Line { kOk, kClosed, kTooLong, kBad };

  explicit Reader(int fd) : fd_(fd) {}

  std::string_view unread() const {
    return std::string_view(buf_).substr(pos_);
  }

  void consume(size_t n) {
    pos_ += n;
    if (pos_ == buf_.size()) {
      buf_.clear();
      pos_ = 0;
    }
  }

  // Appends what the socket has to the buffer; false on EOF, error or timeout.
  bool fill() {
    if (pos_ > 0 && pos_ * 2 >= buf_.size()) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    size_t old = buf_.size();
    buf_.resize(old + kReadSize);
    for (;;) {
      ssize_t n = recv(fd_, buf_.data() + old, kReadSize, 0);
      if (n < 0 && errno == EINTR) continue;
      buf_.resize(old + (n > 0 ? size_t(n) : 0));
      return n > 0;
    }
  }

  // One CRLF-terminated line, CRLF removed. A bare CR or LF in it is kBad.
  Line readLine(std::string* line, size_t limit) {
    for (;;) {
      std::string_view data = unread();
      size_t eol = data.find("\r\n");
      if (eol != std::string_view::npos) {
        std::string_view text = data.substr(0, eol);
        if (eol > limit) return Line::kTooLong;
        if (text.find_first_of("\r\n") != std::string_view::npos) return Line::kBad;
        line->assign(text);
        consume(eol + 2);
        return Line::kOk;
      }
      if (data.size() > limit + 1) return Line::kTooLong;
      if (!fill()) return Line::kClosed;
    }
  }

  // Reads and discards exactly n bytes, adding them to *sum; false on EOF.
  bool readCounted(uint64_t n, uint32_t* sum) {
    while (n > 0) {
      if (unread().empty() && !fill()) return false;
      std::string_view data = unread();
      size_t take = size_t(std::min<uint64_t>(n, data.size()));
      uint32_t s = *sum;
      for (size_t i = 0; i < take; ++i) s += static_cast<unsigned char>(data[i]);
      *sum = s;
      consume(take);
      n -= take;
    }
    return true;
  }

 private:
  int fd_;
  std::string buf_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------
// HTTP

struct Request {
  std::string method;
  std::string target;
  std::string version;
  std::vector<std::pair<std::string, std::string>> headers;
  bool http10 = false;
  bool keep_alive = true;
  bool chunked = false;
  uint64_t content_length = 0;
  bool expect_continue = false;
  uint64_t body_bytes = 0;
  uint32_t body_sum = 0;  // sum of the body's bytes mod 2^32

  std::string_view path() const {
    return std::string_view(target).substr(0, target.find('?'));
  }
};

// Parses the head (request line and header lines, each ending in CRLF, without
// the final empty line). Returns 0, or the error status to answer with.
int parseHead(std::string_view head, Request* req) {
  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  head.remove_prefix(eol + 2);

  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return 400;
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!isToken(method) || target.empty()) return 400;
  for (unsigned char c : target) {
    if (c <= 0x20 || c == 0x7f) return 400;
  }
  if (version == "HTTP/1.0") {
    req->http10 = true;
  } else if (version != "HTTP/1.1") {
    bool looks_http = version.size() == 8 && version.starts_with("HTTP/") &&
                      version[6] == '.' && std::isdigit(static_cast<unsigned char>(version[5])) &&
                      std::isdigit(static_cast<unsigned char>(version[7]));
    return looks_http ? 505 : 400;
  }
  req->method = method;
  req->target = target;
  req->version = version;

  bool saw_length = false;
  bool close_token = false;
  bool keep_alive_token = false;
  std::vector<std::string_view> codings;
  while (!head.empty()) {
    eol = head.find("\r\n");
    line = head.substr(0, eol);
    head.remove_prefix(eol + 2);
    if (line.empty() || line.front() == ' ' || line.front() == '\t') return 400;  // obs-fold
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return 400;
    std::string_view name = line.substr(0, colon);
    std::string_view value = trim(line.substr(colon + 1));
    if (!isToken(name)) return 400;
    for (unsigned char c : value) {
      if ((c < 0x20 && c != '\t') || c == 0x7f) return 400;
    }
    req->headers.emplace_back(name, value);

    if (equalsNoCase(name, "content-length")) {
      uint64_t length = 0;
      if (!parseUint(value, &length)) return 400;
      if (saw_length && length != req->content_length) return 400;
      saw_length = true;
      req->content_length = length;
    } else if (equalsNoCase(name, "transfer-encoding")) {
      forEachToken(value, [&](std::string_view t) { codings.push_back(t); });
      if (value.empty()) return 400;
    } else if (equalsNoCase(name, "connection")) {
      forEachToken(value, [&](std::string_view t) {
        if (equalsNoCase(t, "close")) close_token = true;
        if (equalsNoCase(t, "keep-alive")) keep_alive_token = true;
      });
    } else if (equalsNoCase(name, "expect")) {
      if (equalsNoCase(value, "100-continue")) req->expect_continue = true;
    }
  }

  if (!codings.empty()) {
    if (saw_length) return 400;
    if (!equalsNoCase(codings.back(), "chunked")) return 400;
    if (codings.size() > 1) return 501;  // gzip etc. are not decoded here
    req->chunked = true;
  }
  req->keep_alive = req->http10 ? (keep_alive_token && !close_token) : !close_token;
  return 0;
}

// Parses a chunk-size line: hex digits, then optional ";extensions".
bool parseChunkSize(std::string_view line, uint64_t* size) {
  size_t i = 0;
  uint64_t value = 0;
  for (; i < line.size() && std::isxdigit(static_cast<unsigned char>(line[i])); ++i) {
    if (value >> 60) return false;  // would overflow
    char c = lower(line[i]);
    value = value * 16 + uint64_t(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  if (i == 0) return false;
  std::string_view rest = trim(line.substr(i));
  if (!rest.empty() && rest.front() != ';') return false;
  *size = value;
  return true;
}

// One client connection, served until it closes, idles out or asks to close.
class Connection {
 public:
  Connection(int fd, std::string id, const Options& options)
      : fd_(fd), id_(std::move(id)), options_(options), reader_(fd) {}

  void serve() {
    for (;;) {
      Request req;
      int status = readRequest(&req);
      if (status < 0) return;  // closed, timed out or broken: nothing to answer
      ++requests_;
      if (status > 0) {
        req.keep_alive = false;
        std::string body = std::string(reasonPhrase(status)) + "\n";
        if (sendSimple(req, status, "text/plain", body)) lingeringClose();
        return;
      }
      if (options_.max_requests_per_conn != 0 &&
          requests_ >= options_.max_requests_per_conn) {
        req.keep_alive = false;
      }
      if (!respond(req)) return;
      if (!req.keep_alive) {
        lingeringClose();
        return;
      }
    }
  }

 private:
  // Reads one request, head and body. Returns 0 when complete, -1 when the
  // connection is gone, or an error status to answer with before closing.
  int readRequest(Request* req) {
    size_t end;
    for (;;) {
      // A client may send empty lines before a request (RFC 9112, 2.2).
      while (reader_.unread().starts_with("\r\n")) reader_.consume(2);
      end = reader_.unread().find("\r\n\r\n");
      size_t bare = reader_.unread().find("\n\n");
      if (bare != std::string_view::npos && bare < end) return 400;  // bare LF ending
      if (end != std::string_view::npos) break;
      if (reader_.unread().size() > kMaxHeadBytes) return 431;
      if (!reader_.fill()) return -1;
    }
    if (end + 4 > kMaxHeadBytes) return 431;
    std::string_view head = reader_.unread().substr(0, end + 2);
    int status = parseHead(head, req);
    reader_.consume(end + 4);
    if (status != 0) return status;

    bool has_body = req->chunked || req->content_length > 0;
    if (req->expect_continue && has_body && !req->http10) {
      if (!sendAll(fd_, {"HTTP/1.1 100 Continue\r\n\r\n"})) return -1;
    }
    if (!req->chunked) {
      req->body_bytes = req->content_length;
      return reader_.readCounted(req->content_length, &req->body_sum) ? 0 : -1;
    }
    return readChunkedBody(req);
  }

  int readChunkedBody(Request* req) {
    std::string line;
    for (;;) {
      if (int status = readLine(&line); status != 0) return status;
      uint64_t size = 0;
      if (!parseChunkSize(line, &size)) return 400;
      if (size == 0) break;
      if (!reader_.readCounted(size, &req->body_sum)) return -1;
      req->body_bytes += size;
      if (int status = readLine(&line); status != 0) return status;
      if (!line.empty()) return 400;  // chunk data longer than its size
    }
    // Trailer fields, up to the empty line; read and ignored.
    do {
      if (int status = readLine(&line); status != 0) return status;
    } while (!line.empty());
    return 0;
  }

  // A chunk-size, chunk-end or trailer line: 0, -1 (gone) or 400.
  int readLine(std::string* line) {
    switch (reader_.readLine(line, kMaxLineBytes)) {
      case Reader::Line::kOk: return 0;
      case Reader::Line::kClosed: return -1;
      case Reader::Line::kTooLong:
      case Reader::Line::kBad: break;
    }
    return 400;
  }

  // Dispatches on the path. False when the connection broke while answering.
  bool respond(Request& req) {
    std::string_view path = req.path();
    uint64_t n = 0;
    if (path == "/") {
      return sendSimple(req, 200, "text/plain",
                        "hello from demo-upstream worker " + pidText() + "\n");
    }
    if (path == "/echo" || path.starts_with("/echo/")) {
      return sendSimple(req, 200, "application/json", echoJson(req));
    }
    if (numberAfter(path, "/size/", &n)) return sendSized(req, n);
    if (numberAfter(path, "/chunked/", &n)) return sendChunked(req, n);
    if (numberAfter(path, "/close/", &n)) return sendCloseDelimited(req, n);
    if (numberAfter(path, "/delay/", &n)) {
      n = std::min<uint64_t>(n, 3'600'000);
      timespec ts{time_t(n / 1000), long(n % 1000) * 1'000'000};
      while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
      }
      return sendSimple(req, 200, "text/plain", "delayed " + std::to_string(n) + " ms\n");
    }
    if (numberAfter(path, "/status/", &n) && n >= 200 && n <= 599) {
      int status = int(n);
      if (status == 204 || status == 304) return sendHead(req, status, "", "");
      return sendSimple(req, status, "text/plain",
                        "status " + std::to_string(status) + "\n");
    }
    return sendSimple(req, 404, "text/plain", "not found\n");
  }

  static bool numberAfter(std::string_view path, std::string_view prefix, uint64_t* n) {
    return path.starts_with(prefix) && parseUint(path.substr(prefix.size()), n);
  }

  std::string pidText() const { return std::to_string(getpid()); }

  std::string echoJson(const Request& req) const {
    std::string out = "{\"method\":";
    appendJsonString(out, req.method);
    out += ",\"target\":";
    appendJsonString(out, req.target);
    out += ",\"version\":";
    appendJsonString(out, req.version);
    out += ",\"headers\":[";
    for (size_t i = 0; i < req.headers.size(); ++i) {
      out += i == 0 ? "[" : ",[";
      appendJsonString(out, req.headers[i].first);
      out += ',';
      appendJsonString(out, req.headers[i].second);
      out += ']';
    }
    out += "],\"body_bytes\":" + std::to_string(req.body_bytes);
    out += ",\"body_sum\":" + std::to_string(req.body_sum);
    out += ",\"pid\":" + pidText();
    out += ",\"worker\":" + pidText();
    out += ",\"conn\":";
    appendJsonString(out, id_);
    out += ",\"conn_requests\":" + std::to_string(requests_);
    out += "}\n";
    return out;
  }

  // The status line and headers. `framing` is a Content-Length or
  // Transfer-Encoding header line, or empty for a close-delimited body.
  std::string responseHead(const Request& req, int status, std::string_view content_type,
                           std::string_view framing) const {
    std::string head = "HTTP/1.1 " + std::to_string(status) + " " + reasonPhrase(status) +
                       "\r\nServer: demo-upstream\r\n";
    if (!content_type.empty()) {
      head += "Content-Type: ";
      head += content_type;
      head += "\r\n";
    }
    head += framing;
    head += "X-Connection: " + id_ + "\r\n";
    head += "X-Worker: " + pidText() + "\r\n";
    head += "X-Conn-Requests: " + std::to_string(requests_) + "\r\n";
    if (!req.keep_alive) {
      head += "Connection: close\r\n";
    } else if (req.http10) {
      head += "Connection: keep-alive\r\n";
    }
    head += "\r\n";
    return head;
  }

  static std::string lengthHeader(uint64_t n) {
    return "Content-Length: " + std::to_string(n) + "\r\n";
  }

  bool isHead(const Request& req) const { return req.method == "HEAD"; }

  bool sendHead(const Request& req, int status, std::string_view content_type,
                std::string_view framing) {
    return sendAll(fd_, {responseHead(req, status, content_type, framing)});
  }

  bool sendSimple(const Request& req, int status, std::string_view content_type,
                  std::string_view body) {
    std::string head = responseHead(req, status, content_type, lengthHeader(body.size()));
    return sendAll(fd_, {head, isHead(req) ? std::string_view() : body});
  }

  bool sendSized(const Request& req, uint64_t n) {
    if (!sendHead(req, 200, "application/octet-stream", lengthHeader(n))) return false;
    return isHead(req) || sendPattern(n);
  }

  bool sendCloseDelimited(Request& req, uint64_t n) {
    req.keep_alive = false;
    if (!sendHead(req, 200, "application/octet-stream", "")) return false;
    return isHead(req) || sendPattern(n);
  }

  bool sendPattern(uint64_t n) {
    for (uint64_t sent = 0; sent < n;) {
      size_t take = size_t(std::min<uint64_t>(n - sent, kWriteSize));
      if (!sendAll(fd_, {patternSlice(sent, take)})) return false;
      sent += take;
    }
    return true;
  }

  bool sendChunked(Request& req, uint64_t n) {
    if (req.http10) return sendCloseDelimited(req, n);  // no chunked for HTTP/1.0
    if (!sendHead(req, 200, "application/octet-stream", "Transfer-Encoding: chunked\r\n")) {
      return false;
    }
    if (isHead(req)) return true;
    // At least four chunks when n allows, none larger than kMaxChunk.
    uint64_t chunk = std::clamp<uint64_t>((n + 3) / 4, 1, kMaxChunk);
    for (uint64_t sent = 0; sent < n;) {
      size_t take = size_t(std::min<uint64_t>(n - sent, chunk));
      char size_line[32];
      int len = std::snprintf(size_line, sizeof size_line, "%zx\r\n", take);
      if (!sendAll(fd_, {std::string_view(size_line, size_t(len)), patternSlice(sent, take),
                         "\r\n"})) {
        return false;
      }
      sent += take;
    }
    return sendAll(fd_, {"0\r\n\r\n"});
  }

  // Half-closes, then drains what the client still sends (bounded to a
  // second), so that unread input does not turn our close into a reset that
  // could destroy the response before the client has read it.
  void lingeringClose() {
    shutdown(fd_, SHUT_WR);
    auto deadline = Clock::now() + std::chrono::seconds(1);
    char sink[16 * 1024];
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return;
      pollfd pfd{fd_, POLLIN, 0};
      int ready = poll(&pfd, 1, int(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return;
      ssize_t n = recv(fd_, sink, sizeof sink, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
    }
  }

  int fd_;
  std::string id_;
  const Options& options_;
  Reader reader_;
  uint64_t requests_ = 0;
};

// ---------------------------------------------------------------------------
// Processes

void setTimeout(int fd, int option, double seconds) {
  timeval tv{};
  tv.tv_sec = time_t(seconds);
  tv.tv_usec = suseconds_t((seconds - double(tv.tv_sec)) * 1e6);
  if (seconds > 0 && tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1;
  setsockopt(fd, SOL_SOCKET, option, &tv, sizeof tv);
}

// A worker: one blocking accept loop, one connection at a time. Never returns.
[[noreturn]] void runWorker(int listen_fd, const Options& options) {
  signal(SIGPIPE, SIG_IGN);
  std::string pid = std::to_string(getpid());
  uint64_t connections = 0;
  for (;;) {
    int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      switch (errno) {
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
          continue;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
          usleep(10'000);
          continue;
        default:
          std::perror("demo-upstream: accept");
          _exit(1);
      }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setTimeout(fd, SO_RCVTIMEO, options.keepalive_timeout);
    setTimeout(fd, SO_SNDTIMEO, options.keepalive_timeout);
    Connection(fd, pid + "-" + std::to_string(++connections), options).serve();
    close(fd);
  }
}

// Binds and listens; prints the "listening on" line. Exits on failure.
int openListener(const Options& options) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string port = std::to_string(options.port);
  int rc = getaddrinfo(options.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    std::fprintf(stderr, "demo-upstream: %s: %s\n", options.host.c_str(), gai_strerror(rc));
    std::exit(1);
  }
  int fd = -1;
  int error = 0;
  for (addrinfo* ai = found; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      error = errno;
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
      error = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) {
    std::fprintf(stderr, "demo-upstream: cannot listen on %s:%u: %s\n", options.host.c_str(),
                 unsigned(options.port), std::strerror(error));
    std::exit(1);
  }

  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned bound_port = 0;
  bool v6 = addr.ss_family == AF_INET6;
  if (v6) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a6->sin6_addr, host, sizeof host);
    bound_port = ntohs(a6->sin6_port);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a4->sin_addr, host, sizeof host);
    bound_port = ntohs(a4->sin_port);
  }
  std::printf(v6 ? "demo-upstream listening on [%s]:%u\n" : "demo-upstream listening on %s:%u\n",
              host, bound_port);
  std::fflush(stdout);
  return fd;
}

struct WorkerSlot {
  pid_t pid = 0;
  Clock::time_point started;
  Clock::time_point next_start;  // when an empty slot may be filled again
  int quick_deaths = 0;          // consecutive deaths within a second of starting
};

// The master: forks the workers, replaces those that die (backing off when
// they keep dying), and stops them all on SIGTERM or SIGINT.
int runMaster(int listen_fd, const Options& options) {
  // A background job of a shell script starts with SIGINT ignored; an ignored
  // signal is discarded rather than left pending for sigtimedwait().
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  sigset_t handled, original;
  sigemptyset(&handled);
  sigaddset(&handled, SIGCHLD);
  sigaddset(&handled, SIGTERM);
  sigaddset(&handled, SIGINT);
  sigprocmask(SIG_BLOCK, &handled, &original);
  const pid_t master = getpid();

  std::vector<WorkerSlot> slots(size_t(options.workers));
  auto spawn = [&](WorkerSlot& slot) {
    pid_t pid = fork();
    if (pid < 0) {
      std::perror("demo-upstream: fork");
      slot.next_start = Clock::now() + std::chrono::seconds(1);
      return;
    }
    if (pid == 0) {
      sigprocmask(SIG_SETMASK, &original, nullptr);
      prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive a killed master
      if (getppid() != master) _exit(0);
      runWorker(listen_fd, options);
    }
    slot.pid = pid;
    slot.started = Clock::now();
  };

  auto reap = [&] {
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      for (WorkerSlot& slot : slots) {
        if (slot.pid != pid) continue;
        slot.pid = 0;
        auto now = Clock::now();
        if (now - slot.started < std::chrono::seconds(1)) {
          slot.quick_deaths = std::min(slot.quick_deaths + 1, 6);
        } else {
          slot.quick_deaths = 0;
        }
        // 0, 0.1, 0.2, 0.4 ... 3.2 s before the replacement starts.
        auto delay = slot.quick_deaths == 0
                         ? std::chrono::milliseconds(0)
                         : std::chrono::milliseconds(100 << (slot.quick_deaths - 1));
        slot.next_start = now + delay;
        if (WIFSIGNALED(status)) {
          std::fprintf(stderr, "demo-upstream: worker %d killed by signal %d, replacing it\n",
                       int(pid), WTERMSIG(status));
        } else {
          std::fprintf(stderr, "demo-upstream: worker %d exited with status %d, replacing it\n",
                       int(pid), WEXITSTATUS(status));
        }
      }
    }
  };

  for (;;) {
    auto now = Clock::now();
    auto wait = std::chrono::milliseconds(1000);
    for (WorkerSlot& slot : slots) {
      if (slot.pid != 0) continue;
      if (slot.next_start <= now) {
        spawn(slot);
      } else {
        wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(
                                  slot.next_start - now) + std::chrono::milliseconds(1));
      }
    }
    timespec ts{time_t(wait.count() / 1000), long(wait.count() % 1000) * 1'000'000};
    int sig = sigtimedwait(&handled, nullptr, &ts);
    if (sig == SIGTERM || sig == SIGINT) break;
    reap();
  }

  // Stop: TERM every worker, wait up to five seconds, then KILL the rest.
  for (WorkerSlot& slot : slots) {
    if (slot.pid != 0) kill(slot.pid, SIGTERM);
  }
  auto deadline = Clock::now() + std::chrono::seconds(5);
  for (;;) {
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      for (WorkerSlot& slot : slots) {
        if (slot.pid == pid) slot.pid = 0;
      }
    }
    bool any_left = std::any_of(slots.begin(), slots.end(),
                                [](const WorkerSlot& s) { return s.pid != 0; });
    if (!any_left) break;
    if (Clock::now() >= deadline) {
      for (WorkerSlot& slot : slots) {
        if (slot.pid != 0) kill(slot.pid, SIGKILL);
      }
      deadline = Clock::now() + std::chrono::hours(1);
    }
    timespec ts{0, 100'000'000};
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigtimedwait(&chld, nullptr, &ts);
  }
  close(listen_fd);
  return 0;
}

// ---------------------------------------------------------------------------
// Command line

[[noreturn]] void usage(int status) {
  std::fprintf(status == 0 ? stdout : stderr,
               "usage: demo-upstream [--listen HOST:PORT] [--workers N]\n"
               "                     [--keepalive-timeout SECONDS] [--max-requests-per-conn N]\n"
               "  --listen HOST:PORT          address to listen on, port 0 = any "
               "(default 127.0.0.1:5000)\n"
               "  --workers N                 prefork worker processes (default 4)\n"
               "  --keepalive-timeout S       close a connection idle this long "
               "(default 30, 0 = never)\n"
               "  --max-requests-per-conn N   close a connection after N requests "
               "(default 0 = unlimited)\n");
  std::exit(status);
}

[[noreturn]] void badArgument(const std::string& flag, const std::string& value) {
  std::fprintf(stderr, "demo-upstream: bad value for %s: '%s'\n", flag.c_str(), value.c_str());
  usage(2);
}

bool parseListen(const std::string& text, Options* options) {
  std::string host;
  std::string port;
  if (text.starts_with("[")) {
    size_t close = text.find("]:");
    if (close == std::string::npos) return false;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) return false;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  uint64_t value = 0;
  if (host.empty() || !parseUint(port, &value) || value > 65535) return false;
  options->host = host;
  options->port = uint16_t(value);
  return true;
}

Options parseArgs(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") usage(0);
    std::string value;
    size_t eq = arg.find('=');
    if (arg.starts_with("--") && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      std::fprintf(stderr, "demo-upstream: %s needs a value\n", arg.c_str());
      usage(2);
    }
    uint64_t n = 0;
    if (arg == "--listen") {
      if (!parseListen(value, &options)) badArgument(arg, value);
    } else if (arg == "--workers") {
      if (!parseUint(value, &n) || n < 1 || n > 1024) badArgument(arg, value);
      options.workers = int(n);
    } else if (arg == "--keepalive-timeout") {
      char* end = nullptr;
      double seconds = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0' || !(seconds >= 0) || seconds > 1e6) {
        badArgument(arg, value);
      }
      options.keepalive_timeout = seconds;
    } else if (arg == "--max-requests-per-conn") {
      if (!parseUint(value, &n)) badArgument(arg, value);
      options.max_requests_per_conn = n;
    } else {
      std::fprintf(stderr, "demo-upstream: unknown option %s\n", arg.c_str());
      usage(2);
    }
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  Options options = parseArgs(argc, argv);
  int listen_fd = openListener(options);
  return runMaster(listen_fd, options);
}
