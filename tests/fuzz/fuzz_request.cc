// libFuzzer target: the client side of the request path. Bytes from a client
// in; out comes what poolgate would forward to the upstream, or the status it
// would answer with itself.
//
// ClientConnection mixes this logic with sockets, timers and the pool, so the
// target rebuilds its request half from the same pieces and in the same order
// (proxy/client_connection.cc: readClient, parseClient, checkHeadLimits,
// onHeadersComplete, startExchange, onBody, onChunkHeader, onChunkComplete,
// onMessageComplete): HttpParser (llhttp, strict), checkRequestHead() and
// writeForwardedRequestHead(). Every route exists and every upstream answers at
// once, so pipelined requests follow each other.
//
// Each input runs twice: in one read with the default limits, and split into
// reads of varying size with small limits. Invariants, beyond "no crash":
//   - a local answer is one of 400, 405, 413, 414, 431, 501, and nothing is
//     forwarded after it;
//   - the forwarded bytes, parsed by a strict parser as the upstream would,
//     are exactly the forwarded requests in order: same method, target and
//     body, every head passes checkRequestHead() itself, never both
//     Content-Length and Transfer-Encoding, never two Content-Length or Host;
//     a request cut short (the client closed, or its body was refused) is a
//     clean prefix: never a complete message, never a parse error; no body
//     (Content-Length or chunk sizes announced) over max_body_bytes;
//   - with the same limits, the split does not change the outcome.
#include <cstring>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/buffer.h"
#include "http/forwarding.h"
#include "http/request_rules.h"
#include "tests/fuzz/fuzz_common.h"
#include "http/parser.h"

namespace poolgate::fuzz {
namespace {

constexpr std::string_view kServerName = "127.0.0.1:5000";

bool midHead(const HttpParser& parser) {
  return parser.stage() == HeadStage::kStartLine || parser.stage() == HeadStage::kHeaders;
}

struct ForwardedRequest {
  std::string method;
  std::string target;
  std::string body;  // decoded, as the client sent it
  bool complete = false;
};

struct Outcome {
  int local_status = 0;  // 0: none (every request forwarded, or the client went away)
  std::vector<ForwardedRequest> forwarded;
  std::string upstream_bytes;  // everything written to the upstream, in order
  bool keep_alive_close = false;
};

class ClientSim final : private HttpHandler {
 public:
  explicit ClientSim(const LimitsConfig& limits)
      : limits_(limits), in_(buffers_), sink_(buffers_), parser_(HTTP_REQUEST, *this, limits.max_headers) {}

  // One recv() of up to `n` bytes; returns how many were taken (0 = the
  // connection no longer reads).
  size_t read(const uint8_t* data, size_t n) {
    if (state_ == State::kClosed || state_ == State::kClosing) return 0;
    const size_t head_limit = std::max(limits_.max_request_line, limits_.max_header_bytes) + size_t{1024};
    bool head = midHead(parser_) || state_ == State::kIdle;
    if (!in_.ensureWritable(4096, head ? head_limit : 0, !midHead(parser_))) {
      respondError(parser_.stage() == HeadStage::kStartLine ? 414 : 431);
      return 0;
    }
    size_t take = std::min(n, in_.writable());
    std::memcpy(in_.writePtr(), data, take);
    in_.commit(take);
    if (state_ == State::kIdle) state_ = State::kHead;
    parseClient();
    return take;
  }

  // The client closed its side.
  void eof() {
    if (state_ == State::kClosed || state_ == State::kClosing) return;
    state_ = State::kClosed;  // mid-request: an abort; between requests: a normal close
  }

  Outcome finish() {
    flushSink();
    return std::move(outcome_);
  }
  bool closed() const { return state_ == State::kClosed || state_ == State::kClosing; }

 private:
  enum class State { kIdle, kHead, kExchange, kClosing, kClosed };

  void parseClient() {
    while (state_ == State::kHead || (state_ == State::kExchange && !request_complete_)) {
      size_t available = in_.size() - parsed_;
      if (available == 0) return;
      size_t consumed = 0;
      llhttp_errno_t err = parser_.execute(in_.base(), in_.data() + parsed_, available, &consumed);
      if (state_ == State::kClosing || state_ == State::kClosed) return;
      if (err == HPE_OK) {
        if (midHead(parser_)) {
          parsed_ = in_.size();
          checkHeadLimits();
        } else {
          in_.consume(in_.size());
          parsed_ = 0;
        }
        return;
      }
      if (err == HPE_PAUSED) {
        // End of a request. The upstream answers at once: finishExchange().
        in_.consume(parsed_ + consumed);
        parsed_ = 0;
        finishExchange();
        continue;
      }
      if (parser_.head().header_overflow) {
        respondError(431);
      } else if (err == HPE_INVALID_TRANSFER_ENCODING) {
        respondError(501);
      } else {
        respondError(400);
      }
      return;
    }
  }

  void checkHeadLimits() {
    size_t head_bytes = in_.size();
    if (parser_.stage() == HeadStage::kStartLine && head_bytes > limits_.max_request_line) {
      respondError(414);
    } else if (head_bytes > limits_.max_header_bytes) {
      respondError(431);
    }
  }

  void finishExchange() {
    flushSink();
    if (!keep_alive_ || !request_complete_) {
      state_ = State::kClosed;
      outcome_.keep_alive_close = true;
      return;
    }
    forwarding_ = false;
    request_chunked_ = request_complete_ = in_chunk_ = false;
    body_bytes_ = 0;
    state_ = in_.empty() ? State::kIdle : State::kHead;
    parser_.resume();
  }

  void respondError(int status) {
    outcome_.local_status = status;
    forwarding_ = false;  // abandonUpstream(): the connection to the upstream is closed
    state_ = State::kClosing;
  }

  void flushSink() {
    outcome_.upstream_bytes.append(sink_.data(), sink_.size());
    sink_.clear();
  }

  int onHeadersComplete() override {
    state_ = State::kExchange;
    const llhttp_t& p = parser_.raw();
    const HttpHead& head = parser_.head();
    const char* base = in_.base();
    request_chunked_ = (p.flags & F_CHUNKED) != 0;
    keep_alive_ = parser_.keepAlive();

    const size_t head_end = in_.beginOffset() + in_.size();
    RequestTarget target;
    if (int status = checkRequestHead(parser_, base, head_end, limits_, &target); status != 0) {
      respondError(status);
      return HPE_PAUSED;
    }
    // startExchange(): the route and a connection are there.
    std::string_view host = target.authority.empty() ? findHeader(head, base, "host") : target.authority;
    ForwardContext context{"192.0.2.1", "http", host.empty() ? kServerName : host, target.forward};
    writeForwardedRequestHead(sink_, parser_, base, context);
    forwarding_ = true;
    ForwardedRequest request;
    request.method = std::string(head.method.view(base));
    request.target = std::string(target.forward);
    outcome_.forwarded.push_back(std::move(request));
    return 0;
  }

  int onBody(const char* at, size_t length) override {
    if (!forwarding_) return 0;
    body_bytes_ += length;
    if (limits_.max_body_bytes != 0 && body_bytes_ > limits_.max_body_bytes) {
      respondError(413);  // refuseOversizedBody(): no response has started here
      return HPE_PAUSED;
    }
    sink_.append(at, length);
    outcome_.forwarded.back().body.append(at, length);
    return 0;
  }

  int onChunkHeader(uint64_t size) override {
    if (!forwarding_ || size == 0) return 0;
    // The whole chunk is weighed at its size line, before the line is forwarded.
    if (limits_.max_body_bytes != 0 && size > limits_.max_body_bytes - body_bytes_) {
      respondError(413);
      return HPE_PAUSED;
    }
    in_chunk_ = true;
    appendNumber(sink_, size, 16);
    sink_.append("\r\n");
    return 0;
  }

  int onChunkComplete() override {
    if (forwarding_ && in_chunk_) sink_.append("\r\n");
    in_chunk_ = false;
    return 0;
  }

  int onMessageComplete() override {
    request_complete_ = true;
    if (forwarding_ && request_chunked_) sink_.append("0\r\n\r\n");
    if (forwarding_) outcome_.forwarded.back().complete = true;
    return HPE_PAUSED;
  }

  LimitsConfig limits_;
  BufferPool buffers_{16 * 1024, 8};
  Buffer in_;
  Buffer sink_;  // the upstream connection's output
  HttpParser parser_;
  size_t parsed_ = 0;
  State state_ = State::kIdle;
  bool forwarding_ = false;
  bool keep_alive_ = false;
  bool request_chunked_ = false;
  bool request_complete_ = false;
  bool in_chunk_ = false;
  uint64_t body_bytes_ = 0;
  Outcome outcome_;
};

Outcome run(const uint8_t* data, size_t size, const LimitsConfig& limits, Splitter* splitter) {
  ClientSim sim(limits);
  feed(sim, data, size, splitter, [&] { return sim.closed(); });
  return sim.finish();
}

void checkOutcome(const Outcome& o, const LimitsConfig& limits) {
  failureContext() = "local status " + std::to_string(o.local_status) + ", " +
                     std::to_string(o.forwarded.size()) + " request(s) forwarded as:\n" +
                     escaped(o.upstream_bytes);
  switch (o.local_status) {
    case 0: case 400: case 405: case 413: case 414: case 431: case 501: break;
    default: FUZZ_CHECK(!"unexpected local status");
  }
  // Only the last request may be unfinished, and only the last one may be
  // followed by a local answer.
  for (size_t i = 0; i + 1 < o.forwarded.size(); ++i) FUZZ_CHECK(o.forwarded[i].complete);

  // What the upstream reads.
  Reparser upstream(HTTP_REQUEST, o.upstream_bytes);
  FUZZ_CHECK(upstream.error == HPE_OK);
  FUZZ_CHECK(upstream.messages.size() == o.forwarded.size());
  for (size_t i = 0; i < o.forwarded.size(); ++i) {
    const ForwardedRequest& sent = o.forwarded[i];
    const Message& seen = upstream.messages[i];
    FUZZ_CHECK(seen.method == sent.method);
    FUZZ_CHECK(seen.target == sent.target);
    FUZZ_CHECK(seen.complete == sent.complete);
    if (sent.complete) FUZZ_CHECK(seen.body == sent.body);
    else FUZZ_CHECK(sent.body.compare(0, seen.body.size(), seen.body) == 0);
    FUZZ_CHECK(!(seen.content_length && seen.chunked));
    // Nothing past max_body_bytes, not even a chunk size that promises it.
    FUZZ_CHECK(limits.max_body_bytes == 0 || seen.announced <= limits.max_body_bytes);
    FUZZ_CHECK(seen.count("content-length") + seen.count("transfer-encoding") <= 1);
    FUZZ_CHECK(seen.count("host") == 1);
    FUZZ_CHECK(seen.count("connection") == 0 && seen.count("keep-alive") == 0 && seen.count("te") == 0 &&
               seen.count("upgrade") == 0 && seen.count("expect") == 0);
  }
  // Each forwarded head passes our own checks, as a second poolgate would apply them.
  if (!o.forwarded.empty()) {
    LimitsConfig unlimited;
    unlimited.max_request_line = unlimited.max_header_bytes = UINT32_MAX;
    unlimited.max_body_bytes = 0;
    class HeadOnly final : public HttpHandler {
     public:
      int onHeadersComplete() override { return HPE_PAUSED; }
      int onBody(const char*, size_t) override { return 0; }
      int onChunkHeader(uint64_t) override { return 0; }
      int onChunkComplete() override { return 0; }
      int onMessageComplete() override { return 0; }
    } handler;
    HttpParser first(HTTP_REQUEST, handler, 100000);
    size_t consumed = 0;
    const std::string& bytes = o.upstream_bytes;
    FUZZ_CHECK(first.execute(bytes.data(), bytes.data(), bytes.size(), &consumed) == HPE_PAUSED);
    RequestTarget target;
    FUZZ_CHECK(checkRequestHead(first, bytes.data(), bytes.size(), unlimited, &target) == 0);
    FUZZ_CHECK(target.forward == o.forwarded[0].target);
  }
}

}  // namespace
}  // namespace poolgate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace poolgate;
  using namespace poolgate::fuzz;
  if (size > 256 * 1024) return 0;

  const Outcome whole = run(data, size, LimitsConfig{}, nullptr);
  checkOutcome(whole, LimitsConfig{});

  LimitsConfig small;
  // (max(max_request_line, max_header_bytes) + 1024 must leave room for one
  // 4096-byte read: below that, ClientConnection refuses every request.)
  small.max_request_line = 64;
  small.max_header_bytes = 4096;
  small.max_headers = 8;
  small.max_body_bytes = 64;
  Splitter splitter(data, size);
  const Outcome split = run(data, size, small, &splitter);
  checkOutcome(split, small);

  // The same limits, one read against many: the same outcome. Except for the
  // head limits: ClientConnection applies them to the bytes buffered so far
  // (checkHeadLimits: the request line's partial bytes against
  // max_request_line; the buffer's growth cap), checkRequestHead to the parsed
  // head, so a head near a limit gets 414/431 or passes depending on how it was
  // split.
  const Outcome small_whole = run(data, size, small, nullptr);
  checkOutcome(small_whole, small);
  auto headLimit = [](int status) { return status == 414 || status == 431; };
  if (!headLimit(split.local_status) && !headLimit(small_whole.local_status)) {
    FUZZ_CHECK(split.local_status == small_whole.local_status);
    FUZZ_CHECK(split.forwarded.size() == small_whole.forwarded.size());
    if (split.local_status == 0) {
      FUZZ_CHECK(split.upstream_bytes == small_whole.upstream_bytes);
    } else {
      // A body refused midway: how much of it went out first depends on the
      // reads, but it is the same stream.
      const std::string& a = split.upstream_bytes;
      const std::string& b = small_whole.upstream_bytes;
      FUZZ_CHECK(a.size() < b.size() ? b.compare(0, a.size(), a) == 0 : a.compare(0, b.size(), b) == 0);
    }
  }
  return 0;
}
