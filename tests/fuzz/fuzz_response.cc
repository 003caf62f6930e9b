// libFuzzer target: the upstream response path. Bytes from an upstream in;
// out comes what poolgate would write to its client, or the error it would
// answer with (502), and whether the upstream connection could be pooled.
//
// The target drives the proxy's own ResponseReader (http/response_reader.h)
// the way UpstreamConnection does (readLoop: reserve / commit; parseInput: one
// event at a time; onEof: finish()), and writes what the client gets with the
// functions the Exchange uses (chooseResponseFraming,
// writeClientResponseHead, interimGoesToClient, writeInterimResponseHead,
// appendBodyPiece, appendBodyEnd, writeErrorResponse). What it keeps of its
// own is only the connections' reaction to an event (a GET asked for no
// upgrade, so a 101 is refused).
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
#include "http/response_reader.h"
#include "tests/fuzz/fuzz_common.h"

namespace poolgate::fuzz {
namespace {

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

class ResponseSim {
 public:
  ResponseSim(bool head_request, bool client_http11)
      : head_request_(head_request),
        client_http11_(client_http11),
        // The request's own keep-alive: an HTTP/1.1 GET, or HTTP/1.0 without Keep-Alive.
        keep_alive_(client_http11),
        reader_(buffers_),
        out_(buffers_) {
    reader_.begin(head_request);  // UpstreamConnection::beginRequest
  }

  size_t read(const uint8_t* data, size_t n) {
    if (done()) return 0;
    const ReadRoom room = reader_.reserve();
    if (room.size == 0) {  // the head outgrew ResponseReader::kMaxHead
      fail();
      return 0;
    }
    const size_t take = std::min(n, room.size);
    std::memcpy(room.at, data, take);
    reader_.commit(take);
    upstream_started_ = true;
    parseInput();
    return take;
  }

  // UpstreamConnection::onEof
  void eof() {
    if (done()) return;
    if (!reader_.tunnel() && !upstream_started_) {
      fail();
      return;
    }
    if (reader_.finish() == ResponseReader::Event::kComplete) {
      needs_eof_ = true;
      complete();
      return;
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
  // UpstreamConnection::parseInput
  void parseInput() {
    while (!done()) {
      switch (reader_.next()) {
        case ResponseReader::Event::kNeedMore:
          return;
        case ResponseReader::Event::kHead:
          if (!onHead()) fail();
          break;
        case ResponseReader::Event::kBody:
          onBody(reader_.body());
          break;
        case ResponseReader::Event::kComplete:
          complete();
          return;
        case ResponseReader::Event::kError:
          fail();
          return;
      }
    }
  }

  // UpstreamConnection::onResponseHead, ClientConnection::onUpstreamHead /
  // writeInterimResponse / writeResponseHead. False: refused (502).
  bool onHead() {
    const int status = reader_.status();
    if (!reader_.interim()) needs_eof_ = reader_.closeDelimited();
    if (status == 101) return false;  // a switch the GET did not ask for
    if (status < 200) {
      if (interimGoesToClient(status, client_http11_)) writeInterimResponseHead(out_, reader_.parser(), reader_.base());
      return true;
    }
    outcome_.upstream_status = status;
    framing_ = chooseResponseFraming(reader_.parser(), head_request_, client_http11_);
    if (framing_ == Framing::kClose) keep_alive_ = false;
    outcome_.response_started = true;
    writeClientResponseHead(out_, reader_.parser(), reader_.base(), framing_, keep_alive_, client_http11_);
    return true;
  }

  // ClientConnection::onUpstreamBody
  void onBody(std::string_view piece) {
    // No body is ever read for a 1xx, 204 or 304, nor for a HEAD.
    FUZZ_CHECK(reader_.status() >= 200 && !(outcome_.response_started && framing_ == Framing::kNone));
    outcome_.upstream_body.append(piece);
    appendBodyPiece(out_, framing_, piece.data(), piece.size());
  }

  // ClientConnection::onUpstreamComplete + UpstreamConnection::release
  void complete() {
    appendBodyEnd(out_, framing_);
    outcome_.result = Result::kComplete;
    outcome_.reusable = !reader_.hasUnread() && !needs_eof_ && reader_.keepAlive();
  }

  // UpstreamConnection::fail + ClientConnection::onUpstreamError
  void fail() {
    outcome_.result = Result::kError;
    if (!outcome_.response_started) {
      outcome_.local_status = 502;
      writeErrorResponse(out_, 502, keep_alive_, head_request_);  // respondError(502)
    }
  }

  bool head_request_;
  bool client_http11_;
  bool keep_alive_;
  BufferPool buffers_{16 * 1024, 8};
  ResponseReader reader_;
  Buffer out_;  // to the client
  bool upstream_started_ = false;
  bool needs_eof_ = false;
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
