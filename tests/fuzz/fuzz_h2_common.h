// What the HTTP/2 targets check: the HTTP/1.1 that poolgate would forward
// for one HTTP/2 request, read back by a strict HTTP/1.1 parser as the
// upstream would, against the request as nghttp2 decoded it. Beyond "no
// crash":
//   - the forwarded bytes are at most one request: never a second message
//     (the smuggling a downgrade risks), never bytes left over after it;
//   - a request that parses whole is exactly the accepted one: same method
//     and target, the body as sent, every field as given (cookies joined),
//     no CR/LF/NUL smuggled into a field, Host from :authority, at most one
//     framing header, and the trailers forwardableTrailer() allows when the
//     body went chunked (none otherwise);
//   - a request that ended, and was written, parses whole.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_common.h"

namespace poolgate::fuzz {

struct Field {
  std::string name, value;
};

inline const Field* findField(const std::vector<Field>& fields, std::string_view name) {
  for (const Field& f : fields) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

// One request as nghttp2 handed it over, and what was written for it.
struct DowngradedRequest {
  std::vector<Field> fields;    // the head's fields, pseudo-headers included
  std::vector<Field> trailers;  // fields of HEADERS after the body
  std::string body;             // DATA payloads, as received
  std::string forwarded;        // the HTTP/1.1 written in the request's place
  bool ended = false;           // the whole request was written (END_STREAM taken)
};

inline void checkDowngrade(const DowngradedRequest& r) {
  failureContext() = r.forwarded;
  if (r.forwarded.empty()) return;  // refused before a byte was written
  const Field* method = findField(r.fields, ":method");
  FUZZ_CHECK(method != nullptr);
  if (method->value == "CONNECT") {
    // A tunnel request (refused by the exchange, 405): its head alone, no body.
    FUZZ_CHECK(r.forwarded.find("\r\n\r\n") == r.forwarded.size() - 4);
    return;
  }
  Reparser parsed(HTTP_REQUEST, r.forwarded);  // a request body is framed alike for every method
  FUZZ_CHECK(parsed.messages.size() <= 1);
  if (parsed.error != HPE_OK) {
    // Not HTTP/1.1 the upstream would take: the request reader answers it
    // 400 before anything is forwarded. Never a whole message before it.
    FUZZ_CHECK(parsed.messages.empty() || !parsed.messages[0].complete);
    return;
  }
  if (r.ended) FUZZ_CHECK(parsed.messages.size() == 1 && parsed.messages[0].complete);
  if (parsed.messages.empty() || !parsed.messages[0].complete) return;
  const Message& m = parsed.messages[0];
  FUZZ_CHECK(m.method == method->value);
  const Field* authority = findField(r.fields, ":authority");
  FUZZ_CHECK(m.target == findField(r.fields, ":path")->value);
  FUZZ_CHECK(m.body == r.body);
  FUZZ_CHECK(m.count("host") <= 1 && m.count("content-length") + m.count("transfer-encoding") <= 1);
  FUZZ_CHECK(m.count("connection") == 0 && m.count("te") == 0 && m.count("upgrade") == 0);
  if (authority != nullptr) {
    bool host_ok = false;
    for (const auto& h : m.headers) host_ok |= equalsIgnoreCase(h.first, "host") && h.second == authority->value;
    FUZZ_CHECK(host_ok);
  }
  // Every regular field arrives as it was given (cookies joined into one).
  std::string cookies;
  size_t expected = 0;
  for (const Field& f : r.fields) {
    if (f.name.empty() || f.name[0] == ':' || f.name == "host" || f.name == "te") continue;
    if (f.name == "cookie") {
      cookies += (cookies.empty() ? "" : "; ") + f.value;
      continue;
    }
    ++expected;
    bool seen = false;
    for (const auto& h : m.headers) seen |= h.first == f.name && h.second == f.value;
    FUZZ_CHECK(seen);
  }
  for (const auto& h : m.headers) {
    FUZZ_CHECK(h.second.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos);
    if (h.first == "cookie") FUZZ_CHECK(h.second == cookies);
  }
  FUZZ_CHECK(m.headers.size() == expected + (cookies.empty() ? 0 : 1) + m.count("host") +
                                     m.count("transfer-encoding") +
                                     (findField(r.fields, "content-length") == nullptr ? m.count("content-length") : 0));
  // Trailers: the allowed ones after a chunked body, in order; none otherwise.
  std::vector<std::pair<std::string, std::string>> kept;
  if (m.chunked) {
    for (const Field& f : r.trailers) {
      if (forwardableTrailer(f.name, f.value)) kept.emplace_back(f.name, f.value);
    }
  }
  FUZZ_CHECK(m.trailers == kept);
}

}  // namespace poolgate::fuzz
