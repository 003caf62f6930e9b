#include "http/request_rules.h"

namespace poolgate {

namespace {

bool isBlank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && isBlank(s.front())) s.remove_prefix(1);
  while (!s.empty() && isBlank(s.back())) s.remove_suffix(1);
  return s;
}

// Bytes from the request line's start to the end of the last header value.
size_t headBytes(const HttpHead& head) {
  const Slice& last = head.headers.empty() ? head.target : head.headers.back().value;
  return last.offset + last.length - head.start_offset;
}

bool startsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && equalsIgnoreCase(text.substr(0, prefix.size()), prefix);
}

std::string_view withoutQuery(std::string_view target) {
  size_t query = target.find_first_of("?#");
  return query == std::string_view::npos ? target : target.substr(0, query);
}

// The four request-target forms of RFC 9112 3.2. Returns 0 or a status.
int parseTarget(const llhttp_t& p, std::string_view raw, RequestTarget* target) {
  if (p.method == HTTP_CONNECT) return 405;  // authority-form: no tunnels without a route for them
  // A fragment belongs to the client's side of a URI and is never sent
  // (RFC 9110 4.2.5): neither origin-form nor absolute-form has one.
  if (raw.find('#') != std::string_view::npos) return 400;
  if (!raw.empty() && raw.front() == '/') {
    target->forward = raw;
    target->path = withoutQuery(raw);
    return 0;
  }
  if (raw == "*") {
    if (p.method != HTTP_OPTIONS) return 400;
    target->forward = raw;
    target->path = "/";
    return 0;
  }
  std::string_view rest;
  if (startsWithIgnoreCase(raw, "http://")) {
    rest = raw.substr(7);
  } else if (startsWithIgnoreCase(raw, "https://")) {
    rest = raw.substr(8);
  } else {
    return 400;
  }
  size_t slash = rest.find_first_of("/?#");
  target->authority = rest.substr(0, slash);
  if (target->authority.empty() || target->authority.find('@') != std::string_view::npos) return 400;
  if (slash == std::string_view::npos) {
    target->forward = "/";
  } else if (rest[slash] == '/') {
    target->forward = rest.substr(slash);
  } else {
    return 400;  // "http://host?x": keep it simple and refuse
  }
  target->path = withoutQuery(target->forward);
  return 0;
}

}  // namespace

std::string_view hostWithoutPort(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  size_t colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

// Transfer-Encoding, every header of that name taken as one list (RFC 9110 5.3):
//   400  malformed (an empty element, something that is not a token, the
//        obsolete "identity"), in an HTTP/1.0 request, or framing we cannot
//        trust: the final coding is not chunked, or chunked appears twice;
//   501  well framed (final chunked) but with another coding before it, which
//        we do not implement (we would have to carry it through re-chunking);
//   0    exactly "chunked".
int checkTransferEncoding(const HttpHead& head, const char* base, bool http11) {
  int chunked = 0;
  int others = 0;
  bool seen = false;
  bool last_is_chunked = false;
  for (const HeaderSlice& h : head.headers) {
    if (!equalsIgnoreCase(h.name.view(base), "transfer-encoding")) continue;
    seen = true;
    std::string_view list = h.value.view(base);
    for (;;) {
      size_t comma = list.find(',');
      std::string_view coding = trim(list.substr(0, comma));
      if (!isToken(coding) || equalsIgnoreCase(coding, "identity")) return 400;  // identity: gone in RFC 9112
      last_is_chunked = equalsIgnoreCase(coding, "chunked");
      (last_is_chunked ? chunked : others) += 1;
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  if (!seen) return 0;
  if (!http11) return 400;  // RFC 9112 6.1: a 1.0 peer cannot frame it
  if (chunked != 1 || !last_is_chunked) return 400;
  if (others > 0) return 501;
  return 0;
}

bool isToken(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;
    if (std::string_view("\"(),/:;<=>?@[\\]{}").find(c) != std::string_view::npos) return false;
  }
  return true;
}

// RFC 3986 3.2.3: port = *DIGIT. Empty is allowed (it means the scheme's
// default); digits must name a TCP port, 0..65535.
bool isValidPort(std::string_view port) {
  uint32_t value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
    if (value > 65535) return false;
  }
  return true;
}

// RFC 9112 3.2 / RFC 3986: Host = uri-host [ ":" port ]; no whitespace,
// no path, query, fragment or userinfo delimiters; brackets only around an
// IP literal; after the host, only ":" and a port.
bool isValidHost(std::string_view host) {
  for (char c : host) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;
    if (std::string_view("/?#@\"<>\\^`{|}").find(c) != std::string_view::npos) return false;
  }
  std::string_view after;  // what follows uri-host
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    if (host.substr(1, close - 1).find('[') != std::string_view::npos) return false;
    after = host.substr(close + 1);
  } else {
    size_t colon = host.find(':');
    if (host.substr(0, colon).find_first_of("[]") != std::string_view::npos) return false;
    if (colon != std::string_view::npos) after = host.substr(colon);
  }
  if (after.empty()) return true;
  return after.front() == ':' && isValidPort(after.substr(1));
}

bool linesEndWithCrlf(const HttpHead& head, const char* base, size_t head_end) {
  auto crlf = [&](size_t pos) { return pos + 1 < head_end && base[pos] == '\r' && base[pos + 1] == '\n'; };
  // Request line: "METHOD SP target SP HTTP/1.x" then CRLF.
  size_t pos = head.target.offset + head.target.length + 9;
  if (!crlf(pos)) return false;
  pos += 2;
  for (const HeaderSlice& h : head.headers) {
    // After the value (or the colon, for an empty one) only blanks, then CRLF.
    pos = h.value.length > 0 ? h.value.offset + h.value.length : h.name.offset + h.name.length + 1;
    while (pos < head_end && isBlank(base[pos])) ++pos;
    if (!crlf(pos)) return false;
    pos += 2;
  }
  return crlf(pos);  // the empty line that ends the head
}

int checkRequestHead(const HttpParser& request, const char* base, size_t head_end,
                     const LimitsConfig& limits, RequestTarget* target) {
  const llhttp_t& p = request.raw();
  const HttpHead& head = request.head();
  if (head.target.length > limits.max_request_line) return 414;
  if (headBytes(head) > limits.max_header_bytes) return 431;
  // HTTP/1.0 and 1.1 only: llhttp also takes a version-less (0.9) request
  // line, whose "head" is then whatever follows, and other digits.
  if (request.versionMajor() != 1 || request.versionMinor() > 1) return 400;
  const bool http11 = request.versionMinor() == 1;
  // One space between method and target (the other one is checked below).
  if (head.target.offset != head.method.offset + head.method.length + 1) return 400;
  if (!linesEndWithCrlf(head, base, head_end)) return 400;  // llhttp lets a bare LF through here
  if (int status = checkTransferEncoding(head, base, http11); status != 0) return status;
  // Our reading of Transfer-Encoding and llhttp's framing must agree (e.g.
  // "chunked" followed by a tab is chunked to us but not to llhttp).
  if (findHeader(head, base, "transfer-encoding").data() != nullptr && !(p.flags & F_CHUNKED)) return 400;

  std::string_view host;
  int hosts = 0;
  for (const HeaderSlice& h : head.headers) {
    if (h.name.empty()) return 400;  // ": value"
    if (equalsIgnoreCase(h.name.view(base), "host")) {
      host = trim(h.value.view(base));
      ++hosts;
    }
  }
  if (hosts > 1) return 400;
  if (http11 && hosts == 0) return 400;  // RFC 9112 3.2
  if (!isValidHost(host)) return 400;

  *target = RequestTarget{};
  if (int status = parseTarget(p, head.target.view(base), target); status != 0) return status;
  if (!isValidHost(target->authority)) return 400;  // stands in for Host when there is none
  // An absolute-form target names the host; a Host header must agree with it.
  if (!target->authority.empty() && hosts == 1 && !equalsIgnoreCase(host, target->authority)) return 400;

  if ((p.flags & F_CONTENT_LENGTH) && limits.max_body_bytes != 0 && p.content_length > limits.max_body_bytes) {
    return 413;
  }
  return 0;
}

}  // namespace poolgate
