// Helpers shared by the libFuzzer targets: invariant checks that abort (so
// libFuzzer saves the input), a deterministic split of the input into reads,
// and a re-parser that reads back what poolgate wrote, as its peer would.
#pragma once

#include <llhttp.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "http/parser.h"

namespace poolgate::fuzz {

// What the current check looks at, printed (escaped) when it fails.
inline std::string& failureContext() {
  static std::string context;
  return context;
}

inline std::string escaped(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) {
    if (c == '\r') out += "\\r";
    else if (c == '\n') out += "\\n\n";
    else if (c == '\\') out += "\\\\";
    else if (c < 0x20 || c >= 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else out += static_cast<char>(c);
  }
  return out;
}

[[noreturn]] inline void invariantFailed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: invariant violated: %s\n%s\n", file, line, what, failureContext().c_str());
  std::abort();
}

#define FUZZ_CHECK(cond) \
  do {                   \
    if (!(cond)) ::poolgate::fuzz::invariantFailed(#cond, __FILE__, __LINE__); \
  } while (0)

// Read sizes as the kernel might hand them to recv(): derived from the input
// itself (FNV-1a, then xorshift), so that one input always splits the same way.
class Splitter {
 public:
  Splitter(const uint8_t* data, size_t size) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 1099511628211ull;
    state_ = h | 1;
  }
  size_t next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    switch (state_ % 4) {
      case 0: return 1;                               // byte by byte
      case 1: return 1 + (state_ >> 8) % 8;           // a few bytes
      case 2: return 1 + (state_ >> 8) % 64;          // a segment of a line or two
      default: return 1 + (state_ >> 8) % 4096;       // most of it
    }
  }

 private:
  uint64_t state_;
};

// One message as a peer parsing poolgate's output sees it.
// Feeds `data` to a simulator in reads of the sizes `splitter` gives (or all
// at once without one) until it stops taking bytes or `over()` says it is
// done, then tells it the peer closed.
template <class Sim, class Over>
void feed(Sim& sim, const uint8_t* data, size_t size, Splitter* splitter, Over over) {
  size_t offset = 0;
  while (offset < size && !over()) {
    size_t want = splitter != nullptr ? splitter->next() : size - offset;
    want = std::min(want, size - offset);
    size_t taken = sim.read(data + offset, want);
    if (taken == 0) break;
    offset += taken;
  }
  sim.eof();
}

struct Message {
  std::string method;  // requests
  std::string target;  // requests
  int status = 0;      // responses
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::pair<std::string, std::string>> trailers;  // after a chunked body
  std::string body;
  bool chunked = false;
  bool content_length = false;
  bool complete = false;
  uint64_t announced = 0;  // body bytes promised: the Content-Length, or the chunk sizes so far

  size_t count(std::string_view name) const {
    size_t n = 0;
    for (const auto& h : headers) n += equalsIgnoreCase(h.first, name) ? 1 : 0;
    return n;
  }
};

// Parses `bytes` with a fresh strict HttpParser as the peer would, one message
// after another. `error` is the llhttp error (HPE_OK when every byte parsed,
// possibly ending inside an incomplete message).
class Reparser final : private HttpHandler {
 public:
  Reparser(llhttp_type_t type, std::string_view bytes, bool head_request = false, bool at_eof = false)
      : bytes_(bytes), parser_(type, *this, 100000) {
    parser_.setNoBodyExpected(head_request);
    size_t offset = 0;
    for (;;) {
      size_t consumed = 0;
      llhttp_errno_t err =
          parser_.execute(bytes_.data(), bytes_.data() + offset, bytes_.size() - offset, &consumed);
      if (err == HPE_PAUSED) {
        offset += consumed;
        parser_.resume();
        if (offset == bytes_.size()) break;
        continue;
      }
      if (err != HPE_OK) {
        error = err;
        error_offset = offset + consumed;
        return;
      }
      break;
    }
    if (at_eof && parser_.stage() == HeadStage::kBody && !messages.empty() && !messages.back().complete) {
      llhttp_errno_t err = parser_.finish();
      if (err != HPE_OK && err != HPE_PAUSED) eof_error = err;  // the peer sees the cut
    }
  }

  std::vector<Message> messages;
  llhttp_errno_t error = HPE_OK;
  llhttp_errno_t eof_error = HPE_OK;  // from finish(), with at_eof
  size_t error_offset = 0;
  // Filled at each head: for requests, whether checkRequestHead-style checks
  // can run on it (the caller does them in onHead).
  const HttpParser& parser() const { return parser_; }

 private:
  int onHeadersComplete() override {
    const HttpHead& head = parser_.head();
    const char* base = bytes_.data();
    Message m;
    m.method = std::string(head.method.view(base));
    m.target = std::string(head.target.view(base));
    m.status = parser_.statusCode();
    for (const HeaderSlice& h : head.headers)
      m.headers.emplace_back(std::string(h.name.view(base)), std::string(h.value.view(base)));
    m.chunked = parser_.chunked();
    m.content_length = parser_.hasContentLength();
    if (m.content_length) m.announced = parser_.declaredLength();
    messages.push_back(std::move(m));
    return 0;
  }
  int onBody(const char* at, size_t length) override {
    messages.back().body.append(at, length);
    return 0;
  }
  int onChunkHeader(uint64_t size) override {
    messages.back().announced += size;
    return 0;
  }
  int onChunkComplete() override { return 0; }
  int onMessageComplete() override {
    for (const HeaderSlice& h : parser_.trailers())
      messages.back().trailers.emplace_back(std::string(h.name.view(bytes_.data())),
                                            std::string(h.value.view(bytes_.data())));
    messages.back().complete = true;
    return HPE_PAUSED;
  }

  std::string_view bytes_;
  HttpParser parser_;
};

}  // namespace poolgate::fuzz
