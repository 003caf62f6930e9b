#include "http/h2_request.h"

#include <cstdio>

#include "http/parser.h"

namespace poolgate {

namespace {

// RFC 9110 section 5.6.2: tchar.
bool isTokenChar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

bool isToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!isTokenChar(c)) return false;
  }
  return true;
}

// A field name as HTTP/2 carries it: a token without uppercase letters.
bool isFieldName(std::string_view name) {
  if (!isToken(name)) return false;
  for (unsigned char c : name) {
    if (c >= 'A' && c <= 'Z') return false;
  }
  return true;
}

// Visible ASCII only: what may stand in a request line (the target, the
// authority) without changing how an HTTP/1.1 parser splits it.
bool isVisible(std::string_view s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

bool isConnectionSpecific(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
         name == "transfer-encoding" || name == "upgrade";
}

// The authority of a request: host[:port], no userinfo (RFC 9113 section 8.3.1).
bool isAuthority(std::string_view s) { return !s.empty() && isVisible(s) && s.find('@') == std::string_view::npos; }

bool bodyExpected(std::string_view method) { return method == "POST" || method == "PUT" || method == "PATCH"; }

}  // namespace

void H2Request::clear() {
  method_.clear();
  scheme_.clear();
  authority_.clear();
  path_.clear();
  host_.clear();
  fields_.clear();
  cookie_.clear();
  trailers_.clear();
  list_bytes_ = 0;
  trailer_bytes_ = 0;
  regular_seen_ = false;
  failed_ = false;
  has_length_ = false;
  zero_length_ = false;
  has_host_ = false;
  framing_ = Framing::kNone;
}

bool H2Request::addPseudo(std::string_view name, std::string_view value) {
  std::string* slot = nullptr;
  if (name == ":method") {
    slot = &method_;
    if (!isToken(value)) return false;
  } else if (name == ":scheme") {
    slot = &scheme_;
    if (!isToken(value)) return false;
  } else if (name == ":authority") {
    slot = &authority_;
    if (!isAuthority(value)) return false;
  } else if (name == ":path") {
    slot = &path_;
    if (value.empty() || !isVisible(value)) return false;
  } else {
    return false;  // :status, :protocol (no extended CONNECT), anything else
  }
  if (!slot->empty()) return false;  // twice
  slot->assign(value);
  return true;
}

bool H2Request::add(std::string_view name, std::string_view value) {
  if (failed_) return false;
  list_bytes_ += name.size() + value.size() + 32;
  bool ok;
  if (!name.empty() && name.front() == ':') {
    ok = !regular_seen_ && addPseudo(name, value);
  } else {
    regular_seen_ = true;
    ok = isFieldName(name) && isFieldValue(value) && !isConnectionSpecific(name);
    if (ok && name == "te") {
      ok = equalsIgnoreCase(value, "trailers");  // and not forwarded: hop-by-hop
    } else if (ok && name == "host") {
      ok = !has_host_ && isAuthority(value);
      has_host_ = true;
      host_.assign(value);
    } else if (ok && name == "cookie") {
      if (!cookie_.empty()) cookie_.append("; ");
      cookie_.append(value);
    } else if (ok && name == "content-length") {
      // Once, in digits; the session checks it against the DATA.
      ok = !has_length_ && !value.empty() && value.find_first_not_of("0123456789") == std::string_view::npos;
      has_length_ = true;
      zero_length_ = value.find_first_not_of('0') == std::string_view::npos;
      fields_.append(name).append(": ").append(value).append("\r\n");
    } else if (ok) {
      fields_.append(name).append(": ").append(value).append("\r\n");
    }
  }
  if (!ok) failed_ = true;
  return ok;
}

bool H2Request::write(Buffer& out, bool end_stream) {
  if (failed_ || method_.empty()) return false;
  const bool connect = method_ == "CONNECT";
  if (connect) {
    // Refused further on, as over HTTP/1.1 (405): it must still be well formed.
    if (authority_.empty() || !scheme_.empty() || !path_.empty()) return false;
  } else {
    if (scheme_.empty() || path_.empty()) return false;
    if (path_.front() != '/' && !(path_ == "*" && method_ == "OPTIONS")) return false;
  }
  if (!authority_.empty() && has_host_ && !equalsIgnoreCase(authority_, host_)) return false;
  // A body announced and none coming: the HTTP/1.1 side would wait for it.
  if (end_stream && has_length_ && !zero_length_) return false;
  const std::string& host = authority_.empty() ? host_ : authority_;

  if (end_stream || connect) {
    framing_ = Framing::kNone;  // CONNECT: refused further on, its DATA never forwarded
  } else {
    framing_ = has_length_ ? Framing::kLength : Framing::kChunked;
  }
  out.append(method_);
  out.append(" ");
  out.append(connect ? authority_ : path_);
  out.append(" HTTP/1.1\r\n");
  if (!host.empty()) {
    out.append("Host: ");
    out.append(host);
    out.append("\r\n");
  }
  out.append(fields_);
  if (!cookie_.empty()) {
    out.append("cookie: ");
    out.append(cookie_);
    out.append("\r\n");
  }
  if (framing_ == Framing::kChunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  } else if (framing_ == Framing::kNone && !has_length_ && bodyExpected(method_)) {
    out.append("Content-Length: 0\r\n");
  }
  out.append("\r\n");
  return true;
}

void H2Request::writeData(Buffer& out, std::string_view data) const {
  if (data.empty() || framing_ == Framing::kNone) return;
  if (framing_ == Framing::kLength) {
    out.append(data);
    return;
  }
  char size[24];
  int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  out.append(size, static_cast<size_t>(n));
  out.append(data);
  out.append("\r\n");
}

void H2Request::writeEnd(Buffer& out) const {
  if (framing_ != Framing::kChunked) return;
  out.append("0\r\n");
  out.append(trailers_);
  out.append("\r\n");
}

bool H2Request::addTrailer(std::string_view name, std::string_view value) {
  // Pseudo-header fields have no place in trailers (RFC 9113 section 8.1).
  // Nor has framing or routing: refused as on the head's side of a downgrade.
  if (!isFieldName(name) || !isFieldValue(value) || isConnectionSpecific(name) || name == "te" || name == "host" ||
      name == "content-length") {
    return false;
  }
  trailer_bytes_ += name.size() + value.size() + 32;
  if (framing_ == Framing::kChunked && forwardableTrailer(name, value)) {
    trailers_.append(name).append(": ").append(value).append("\r\n");
  }
  return true;
}

}  // namespace poolgate
