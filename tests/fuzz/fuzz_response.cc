// libFuzzer target: the upstream response path. Bytes from an upstream in;
// out comes what poolgate would write to its client, or the error it would
// answer with (502), and whether the upstream connection could be pooled.
//
// The logic lives in two classes with sockets and timers, so the target
// rebuilds it from the same pieces, in the same order:
// UpstreamConnection::readResponse / parseInput / onEof / onHeadersComplete /
// onMessageComplete (HttpParser in response mode, the 64 KiB head cap, 256
// headers) and ClientConnection::onUpstreamHead / writeResponseHead /
// onUpstreamBody / onUpstreamComplete / onUpstreamError
// (chooseResponseFraming, writeClientResponseHead, writeInterimResponseHead,
// re-chunking).
//
// Each input runs as the answer to a GET from an HTTP/1.1 client in one read,
// then split into reads of varying size, then to a HEAD, then to an HTTP/1.0
// client. Invariants, beyond "no crash":
//   - what the client receives parses cleanly (strict) as interim responses
//     then one final response; never both Content-Length and
//     Transfer-Encoding, never two Content-Length, no hop-by-hop header;
//   - a complete exchange gives the client the upstream's status and exactly
//     its body, and nothing after it;
//   - an exchange that failed after the head went out never looks complete to
//     the client (except a close-delimited body, which cannot tell);
//   - an upstream connection with bytes left over, or that failed, is not reusable;
//   - the split does not change the status, the body or the verdict.
#include <cstring>
#include <string>

#include "core/buffer.h"
#include "http/forwarding.h"
#include "tests/fuzz/fuzz_common.h"
#include "http/parser.h"

namespace poolgate::fuzz {
namespace {

constexpr size_t kMaxResponseHead = 64 * 1024;  // upstream/upstream_connection.cc
constexpr uint32_t kMaxResponseHeaders = 256;

enum class Result { kIncomplete, kComplete, kError };

struct Outcome {
  Result result = Result::kIncomplete;
  int local_status = 0;           // 502 when the client got an error of ours
  bool response_started = false;  // a final head went to the client
  Framing framing = Framing::kNone;
  bool keep_alive = true;
  int upstream_status = 0;
  std::string upstream_body;  // decoded, as the upstream sent it
  std::string client_bytes;
  bool reusable = false;  // no bytes left over after a complete response
};

class ResponseSim final : private HttpHandler {
 public:
  ResponseSim(bool head_request, bool client_http11)
      : head_request_(head_request),
        client_http11_(client_http11),
        in_(buffers_),
        out_(buffers_),
        parser_(HTTP_RESPONSE, *this, kMaxResponseHeaders) {
    parser_.setNoBodyExpected(head_request);  // UpstreamConnection::beginRequest
  }

  size_t read(const uint8_t* data, size_t n) {
    if (done()) return 0;
    bool mid_head = parser_.stage() == HeadStage::kStartLine || parser_.stage() == HeadStage::kHeaders;
    if (!in_.ensureWritable(4096, kMaxResponseHead, !mid_head)) {
      fail();
      return 0;
    }
    size_t take = std::min(n, in_.writable());
    std::memcpy(in_.writePtr(), data, take);
    in_.commit(take);
    upstream_started_ = true;
    parseInput();
    return take;
  }

  void eof() {
    if (done()) return;
    if (!upstream_started_) {
      fail();
      return;
    }
    if (parser_.stage() == HeadStage::kBody && llhttp_message_needs_eof(&parser_.raw())) {
      llhttp_errno_t err = parser_.finish();
      if (done()) return;
      if ((err == HPE_OK || err == HPE_PAUSED) && response_complete_) {
        complete(/*leftover=*/false);
        return;
      }
    }
    fail();
  }

  bool done() const { return outcome_.result != Result::kIncomplete; }
  Outcome finish() {
    outcome_.client_bytes.assign(out_.data(), out_.size());
    outcome_.framing = framing_;
    outcome_.keep_alive = keep_alive_;
    return std::move(outcome_);
  }

 private:
  void parseInput() {
    size_t consumed = 0;
    llhttp_errno_t err = parser_.execute(in_.base(), in_.data() + parsed_, in_.size() - parsed_, &consumed);
    if (done()) return;
    if (err == HPE_OK) {
      bool mid_head = parser_.stage() == HeadStage::kStartLine || parser_.stage() == HeadStage::kHeaders;
      if (mid_head) {
        parsed_ = in_.size();
      } else {
        in_.consume(in_.size());
        parsed_ = 0;
      }
      return;
    }
    if (err == HPE_PAUSED && response_complete_) {
      in_.consume(parsed_ + consumed);  // anything left is unsolicited
      parsed_ = 0;
      complete(!in_.empty());
      return;
    }
    fail();
  }

  // ClientConnection::onUpstreamComplete + UpstreamConnection::release
  void complete(bool leftover) {
    if (framing_ == Framing::kChunked) out_.append("0\r\n\r\n");
    outcome_.result = Result::kComplete;
    outcome_.reusable = !leftover && !needs_eof_ && parser_.keepAlive();
  }

  // UpstreamConnection::fail + ClientConnection::onUpstreamError
  void fail() {
    outcome_.result = Result::kError;
    if (!outcome_.response_started) {
      outcome_.local_status = 502;
      // ClientConnection::respondError(502): no body for a HEAD.
      out_.append("HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
                  "Connection: close\r\nCache-Control: no-store\r\n\r\n");
      if (!head_request_) out_.append("502 Bad Gateway\n");
    }
  }

  int onHeadersComplete() override {
    const int status = parser_.raw().status_code;
    if (status >= 200 || status == 101) needs_eof_ = llhttp_message_needs_eof(&parser_.raw()) != 0;
    // ClientConnection::onUpstreamHead
    if (status == 101) return -1;
    // UpstreamConnection::onHeadersComplete: a malformed head is a parse error (502).
    if (!acceptableResponseHead(parser_, in_.base())) return -1;
    if (status < 200) {
      if (status != 100 && client_http11_) writeInterimResponseHead(out_, parser_, in_.base());
      return 0;
    }
    outcome_.upstream_status = status;
    framing_ = chooseResponseFraming(parser_, head_request_, client_http11_);
    if (framing_ == Framing::kClose) keep_alive_ = false;
    outcome_.response_started = true;
    writeClientResponseHead(out_, parser_, in_.base(), framing_, keep_alive_, client_http11_);
    return 0;
  }

  int onBody(const char* at, size_t length) override {
    // No body is ever read for a 1xx, 204 or 304 (HttpParser skips it).
    FUZZ_CHECK(parser_.raw().status_code >= 200 && !(outcome_.response_started && framing_ == Framing::kNone));
    outcome_.upstream_body.append(at, length);
    appendBodyPiece(out_, framing_, at, length);  // ClientConnection::onUpstreamBody
    return 0;
  }
  int onChunkHeader(uint64_t) override { return 0; }
  int onChunkComplete() override { return 0; }
  int onMessageComplete() override {
    const int status = parser_.raw().status_code;
    if (status < 200 && status != 101) return 0;  // interim: the final response follows
    response_complete_ = true;
    return HPE_PAUSED;
  }

  bool head_request_;
  bool client_http11_;
  BufferPool buffers_{16 * 1024, 8};
  Buffer in_;
  Buffer out_;  // to the client
  HttpParser parser_;
  size_t parsed_ = 0;
  bool upstream_started_ = false;
  bool response_complete_ = false;
  bool needs_eof_ = false;
  bool keep_alive_ = true;
  Framing framing_ = Framing::kNone;
  Outcome outcome_;
};

Outcome run(const uint8_t* data, size_t size, bool head_request, bool client_http11, Splitter* splitter) {
  ResponseSim sim(head_request, client_http11);
  // Then the upstream closes (a close-delimited body ends here).
  feed(sim, data, size, splitter, [&] { return sim.done(); });
  return sim.finish();
}

void checkOutcome(const Outcome& o, bool head_request, bool client_http11) {
  failureContext() = std::string(head_request ? "HEAD" : "GET") + (client_http11 ? " HTTP/1.1" : " HTTP/1.0") +
                     ", local status " + std::to_string(o.local_status) + ", the client got:\n" +
                     escaped(o.client_bytes);
  FUZZ_CHECK(o.result != Result::kIncomplete);
  if (o.result == Result::kError) FUZZ_CHECK(!o.reusable);
  if (o.result == Result::kComplete) FUZZ_CHECK(o.response_started && o.local_status == 0);

  const bool close_delimited = o.framing == Framing::kClose;
  Reparser client(HTTP_RESPONSE, o.client_bytes, head_request, /*at_eof=*/close_delimited || o.result == Result::kError);
  FUZZ_CHECK(client.error == HPE_OK);
  FUZZ_CHECK(!client.messages.empty());
  for (size_t i = 0; i < client.messages.size(); ++i) {
    const Message& m = client.messages[i];
    FUZZ_CHECK(!(m.content_length && m.chunked));
    FUZZ_CHECK(m.count("content-length") <= 1 && m.count("transfer-encoding") <= 1);
    FUZZ_CHECK(m.count("keep-alive") == 0 && m.count("upgrade") == 0 && m.count("trailer") == 0 &&
               m.count("te") == 0 && m.count("proxy-connection") == 0);
    if (i + 1 < client.messages.size()) {
      FUZZ_CHECK(m.status >= 100 && m.status < 200 && m.status != 101);  // interim ones first
      FUZZ_CHECK(client_http11 && m.complete);
    }
  }
  const Message& last = client.messages.back();
  if (o.local_status != 0) {
    FUZZ_CHECK(last.status == o.local_status && last.complete);
    return;
  }
  FUZZ_CHECK(last.status == o.upstream_status);
  if (o.result == Result::kComplete) {
    FUZZ_CHECK(last.complete);
    if (!head_request) FUZZ_CHECK(last.body == o.upstream_body);
    // The client's framing says where the response ends: nothing after it.
    Reparser strict(HTTP_RESPONSE, o.client_bytes, head_request, close_delimited);
    FUZZ_CHECK(strict.messages.size() == client.messages.size());
  } else {
    // Cut short after the head went out: the client must see the cut.
    if (!close_delimited) FUZZ_CHECK(!last.complete || o.framing == Framing::kNone);
    FUZZ_CHECK(o.upstream_body.compare(0, last.body.size(), last.body) == 0);
  }
}

}  // namespace
}  // namespace poolgate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace poolgate::fuzz;
  if (size > 256 * 1024) return 0;

  const Outcome whole = run(data, size, false, true, nullptr);
  checkOutcome(whole, false, true);

  Splitter splitter(data, size);
  const Outcome split = run(data, size, false, true, &splitter);
  checkOutcome(split, false, true);
  FUZZ_CHECK(split.result == whole.result);
  FUZZ_CHECK(split.local_status == whole.local_status);
  FUZZ_CHECK(split.upstream_status == whole.upstream_status);
  FUZZ_CHECK(split.upstream_body == whole.upstream_body);

  const Outcome head = run(data, size, true, true, &splitter);
  checkOutcome(head, true, true);

  const Outcome http10 = run(data, size, false, false, nullptr);
  checkOutcome(http10, false, false);
  return 0;
}
