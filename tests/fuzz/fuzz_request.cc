// libFuzzer target: the client side of the request path. Bytes from a client
// in; out comes what poolgate would forward to the upstream, or the status it
// would answer with itself.
//
// The target drives the proxy's own RequestReader (http/request_reader.h) the
// way ClientConnection does (readClient: reserve / commit; parseClient: one
// event at a time), writes the head with writeForwardedRequestHead() and the
// body with RequestReader::forward(), as Exchange::start() and
// Exchange::onRequestBody() do. What it keeps of its own is only the reaction to an
// event: the answer to a refused head or an error is the status the reader
// gives. Every route exists and every upstream answers at once, so pipelined
// requests follow each other.
//
// Each input runs twice: in one read with the default limits, and split into
// reads of varying size with small limits. Invariants, beyond "no crash":
//   - a local answer is one of 400, 405, 413, 414, 431, 501, and nothing is
//     forwarded after it;
//   - the forwarded bytes, parsed by a strict parser as the upstream would,
//     are exactly the forwarded requests in order: same method, target and
//     body, every head passes the request checks itself (a second reader),
//     never both Content-Length and Transfer-Encoding, never two
//     Content-Length or Host; a request cut short (the client closed, or its
//     body was refused) is a clean prefix: never a complete message, never a
//     parse error; no body (Content-Length or chunk sizes announced) over
//     max_body_bytes;
//   - with the same limits, the split does not change the outcome.
#include <cstring>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/buffer.h"
#include "http/forwarding.h"
#include "http/request_reader.h"
#include "tests/fuzz/fuzz_common.h"

namespace poolgate::fuzz {
namespace {

constexpr std::string_view kServerName = "127.0.0.1:5000";

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

class ClientSim {
 public:
  explicit ClientSim(const LimitsConfig& limits) : limits_(limits), reader_(buffers_, limits_), sink_(buffers_) {}

  // One recv() of up to `n` bytes; returns how many were taken (0 = the
  // connection no longer reads).
  size_t read(const uint8_t* data, size_t n) {
    if (closed_) return 0;
    const ReadRoom room = reader_.reserve();
    if (room.size == 0) {
      respondError(room.refuse);
      return 0;
    }
    const size_t take = std::min(n, room.size);
    std::memcpy(room.at, data, take);
    reader_.commit(take);
    parseClient();
    return take;
  }

  // The client closed its side: mid-request an abort, between requests a
  // normal close.
  void eof() { closed_ = true; }

  Outcome finish() {
    flushSink();
    return std::move(outcome_);
  }
  bool closed() const { return closed_; }

 private:
  void parseClient() {
    while (!closed_ && reader_.hasWork()) {
      switch (reader_.next()) {
        case RequestReader::Event::kNeedMore:
          flushSink();  // upstream_->flush(): what this read brought goes out
          return;
        case RequestReader::Event::kHead:
          if (reader_.verdict() != 0) {
            respondError(reader_.verdict());
            return;
          }
          startExchange();
          break;
        case RequestReader::Event::kBody:
          outcome_.forwarded.back().body.append(reader_.body());
          reader_.forward(sink_);
          break;
        case RequestReader::Event::kChunkStart:
        case RequestReader::Event::kChunkEnd:
          reader_.forward(sink_);
          break;
        case RequestReader::Event::kComplete:
          reader_.forward(sink_);
          outcome_.forwarded.back().complete = true;
          finishExchange();  // the upstream answers at once
          break;
        case RequestReader::Event::kError:
          respondError(reader_.errorStatus());  // 413 for a body past max_body_bytes
          return;
      }
    }
  }

  void startExchange() {
    const std::string_view host = reader_.host();
    ForwardContext context{"192.0.2.1", "http", host.empty() ? kServerName : host, reader_.target().forward};
    writeForwardedRequestHead(sink_, reader_.parser(), reader_.base(), context);
    ForwardedRequest request;
    request.method = std::string(reader_.head().method.view(reader_.base()));
    request.target = std::string(reader_.target().forward);
    outcome_.forwarded.push_back(std::move(request));
    head_unsent_ = true;
  }

  void finishExchange() {
    flushSink();
    if (!reader_.keepAlive()) {
      closed_ = true;
      outcome_.keep_alive_close = true;
      return;
    }
    reader_.nextMessage();
  }

  void respondError(int status) {
    outcome_.local_status = status;
    sink_.clear();  // abandonUpstream(): what was not sent goes with the upstream connection
    if (head_unsent_) outcome_.forwarded.pop_back();  // the upstream never saw that request
    head_unsent_ = false;
    closed_ = true;
  }

  void flushSink() {
    outcome_.upstream_bytes.append(sink_.data(), sink_.size());
    sink_.clear();
    head_unsent_ = false;
  }

  LimitsConfig limits_;
  BufferPool buffers_{16 * 1024, 8};
  RequestReader reader_;
  Buffer sink_;  // the upstream connection's output
  bool closed_ = false;
  bool head_unsent_ = false;  // the current request's head is in sink_, not flushed
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
    unlimited.max_headers = 100000;
    BufferPool buffers;
    RequestReader second(buffers, unlimited);
    const std::string& bytes = o.upstream_bytes;
    RequestReader::Event event = RequestReader::Event::kNeedMore;
    for (size_t offset = 0; event == RequestReader::Event::kNeedMore && offset < bytes.size();) {
      const ReadRoom room = second.reserve();
      FUZZ_CHECK(room.size > 0);
      const size_t n = std::min(room.size, bytes.size() - offset);
      std::memcpy(room.at, bytes.data() + offset, n);
      second.commit(n);
      offset += n;
      event = second.next();
    }
    FUZZ_CHECK(event == RequestReader::Event::kHead);
    FUZZ_CHECK(second.verdict() == 0);
    FUZZ_CHECK(second.target().forward == o.forwarded[0].target);
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
    if (split.local_status == 0) {
      FUZZ_CHECK(split.forwarded.size() == small_whole.forwarded.size());
      FUZZ_CHECK(split.upstream_bytes == small_whole.upstream_bytes);
    } else {
      // A request refused midway: how much of it went out first depends on
      // the reads (what a read brought is sent once the reader has taken all
      // of it, so an error later in the same read sends none of it, not even
      // the head), but it is the same stream.
      const size_t fewer = std::min(split.forwarded.size(), small_whole.forwarded.size());
      FUZZ_CHECK(split.forwarded.size() + small_whole.forwarded.size() - 2 * fewer <= 1);
      const std::string& a = split.upstream_bytes;
      const std::string& b = small_whole.upstream_bytes;
      FUZZ_CHECK(a.size() < b.size() ? b.compare(0, a.size(), a) == 0 : a.compare(0, b.size(), b) == 0);
    }
  }
  return 0;
}
