// The checks a request head must pass before anything of it reaches an
// upstream (RFC 9110 / 9112 as a proxy applies them), and the request target
// in the forms we accept.
#pragma once

#include <cstddef>
#include <string_view>

#include "config/config.h"
#include "http/parser.h"

namespace poolgate {

struct RequestTarget {
  std::string_view path;       // for routing: "/a/b" (no query); "/" for "*"
  std::string_view forward;    // the target to send upstream (origin-form or "*")
  std::string_view authority;  // host[:port] of an absolute-form target, else ""
};

// Returns 0 when the head may be forwarded, else the status to answer with
// (the connection is then closed): 400, 405 (CONNECT), 413, 414, 431, 501.
// `head_end` is the offset in `base` just past the bytes parsed so far, which
// include the whole head.
int checkRequestHead(const HttpParser& request, const char* base, size_t head_end,
                     const LimitsConfig& limits, RequestTarget* target);

// Parts of it, for tests.
int checkTransferEncoding(const HttpHead& head, const char* base, bool http11);
bool isToken(std::string_view text);       // RFC 9110 5.6.2
bool isValidHost(std::string_view host);  // a Host header's value, or an absolute-form authority
bool isValidPort(std::string_view port);  // RFC 3986 port (may be empty), at most 65535
bool linesEndWithCrlf(const HttpHead& head, const char* base, size_t head_end);
std::string_view hostWithoutPort(std::string_view host);

}  // namespace poolgate
