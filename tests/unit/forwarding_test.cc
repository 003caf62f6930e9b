// Header rewriting: what the upstream and the client receive.
#include "http/forwarding.h"

#include <gtest/gtest.h>

#include <string>

namespace poolgate {
namespace {

class NullHandler : public HttpHandler {
 public:
  int onHeadersComplete() override { return 0; }
  int onBody(const char*, size_t) override { return 0; }
  int onChunkHeader(uint64_t) override { return 0; }
  int onChunkComplete() override { return 0; }
  int onMessageComplete() override { return HPE_PAUSED; }
};

// Parses `text` (one message head, maybe a body) and keeps it for the slices.
struct Parsed {
  Parsed(llhttp_type_t type, std::string message) : text(std::move(message)), parser(type, handler, 100) {}
  bool parse() {
    size_t consumed = 0;
    llhttp_errno_t err = parser.execute(text.data(), text.data(), text.size(), &consumed);
    return err == HPE_OK || err == HPE_PAUSED;
  }
  std::string text;
  NullHandler handler;
  HttpParser parser;
};

std::string forwarded(const std::string& request, ForwardContext context = {"10.0.0.9", "http", "app:80", ""}) {
  Parsed p(HTTP_REQUEST, request);
  EXPECT_TRUE(p.parse());
  BufferPool pool;
  Buffer out(pool);
  writeForwardedRequestHead(out, p.parser, p.text.data(), context);
  return std::string(out.data(), out.size());
}

std::string toClient(const std::string& response, bool head_request, bool client_http11, bool keep_alive,
                     Framing* framing_out = nullptr) {
  Parsed p(HTTP_RESPONSE, response);
  if (head_request) p.parser.setNoBodyExpected(true);
  EXPECT_TRUE(p.parse());
  BufferPool pool;
  Buffer out(pool);
  Framing framing = chooseResponseFraming(p.parser, head_request, client_http11);
  if (framing_out) *framing_out = framing;
  writeClientResponseHead(out, p.parser, p.text.data(), framing, keep_alive, client_http11);
  return std::string(out.data(), out.size());
}

// Request buffering writes the head in two halves: the fields when the head
// arrives, the framing once the body's length is known.
std::string forwardedInHalves(const std::string& request, std::string_view fallback_host, bool chunked,
                              bool has_length, uint64_t length) {
  Parsed p(HTTP_REQUEST, request);
  EXPECT_TRUE(p.parse());
  BufferPool pool;
  Buffer out(pool);
  writeForwardedRequestFields(out, p.parser, p.text.data(), {"10.0.0.9", "http", fallback_host, ""});
  endForwardedRequestHead(out, chunked, has_length, length);
  return std::string(out.data(), out.size());
}

TEST(ForwardRequestInHalves, ChunkedBodyCollectedWholeGoesWithItsLength) {
  const std::string request = "POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(forwardedInHalves(request, "app:80", false, true, 12345),
            "POST /u HTTP/1.1\r\nHost: h\r\n"
            "X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\nVia: 1.1 poolgate\r\n"
            "Content-Length: 12345\r\n\r\n");
  // A body that outgrew the spool streams on as chunks.
  EXPECT_EQ(forwardedInHalves(request, "app:80", true, false, 0),
            "POST /u HTTP/1.1\r\nHost: h\r\n"
            "X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\nVia: 1.1 poolgate\r\n"
            "Transfer-Encoding: chunked\r\n\r\n");
}

TEST(ForwardRequestInHalves, TheWholeIsWhatOneCallWrites) {
  const std::string request = "PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
  EXPECT_EQ(forwardedInHalves(request, "app:80", false, true, 3), forwarded(request));
}

TEST(ForwardRequestInHalves, NoFallbackHostLeavesHostToTheCaller) {
  // HTTP/1.0 without Host, collected before a server is chosen: no Host line yet.
  const std::string out = forwardedInHalves("POST /u HTTP/1.0\r\nContent-Length: 1\r\n\r\n", "", false, true, 1);
  EXPECT_EQ(out.find("Host:"), std::string::npos) << out;
  EXPECT_NE(out.find("Content-Length: 1\r\n\r\n"), std::string::npos) << out;
}

TEST(ForwardRequest, AddsForwardingHeadersAndKeepsEndToEndOnes) {
  std::string out = forwarded("GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n");
  EXPECT_EQ(out,
            "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
            "X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\nVia: 1.1 poolgate\r\n\r\n");
}

TEST(ForwardRequest, DropsHopByHopAndConnectionListedHeaders) {
  std::string out = forwarded(
      "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\n"
      "Proxy-Connection: x\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: websocket\r\nX-Secret: s\r\n"
      "X-Kept: k\r\n\r\n");
  for (const char* gone : {"Connection:", "Keep-Alive:", "Proxy-Connection:", "TE:", "Trailer:", "Upgrade:",
                           "X-Secret:"}) {
    EXPECT_EQ(out.find(gone), std::string::npos) << gone << " in\n" << out;
  }
  EXPECT_NE(out.find("X-Kept: k\r\n"), std::string::npos);
}

TEST(ForwardRequest, AppendsToEarlierForwardedForAndVia) {
  std::string out = forwarded(
      "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\n"
      "Via: 1.0 edge\r\nX-Forwarded-Proto: https\r\n\r\n");
  EXPECT_NE(out.find("X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Via: 1.0 edge, 1.1 poolgate\r\n"), std::string::npos) << out;
  // Our own view of the scheme replaces the client's claim.
  EXPECT_NE(out.find("X-Forwarded-Proto: http\r\n"), std::string::npos);
  EXPECT_EQ(out.find("https"), std::string::npos);
}

TEST(ForwardRequest, ReframesBodies) {
  std::string with_length = forwarded("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n");
  EXPECT_NE(with_length.find("Content-Length: 5\r\n"), std::string::npos);
  std::string chunked = forwarded("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_NE(chunked.find("Transfer-Encoding: chunked\r\n"), std::string::npos);
  EXPECT_EQ(chunked.find("Content-Length"), std::string::npos);
}

TEST(ForwardRequest, Http10GetsHostAndHttp11) {
  std::string out = forwarded("GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(out.rfind("GET / HTTP/1.1\r\nHost: app:80\r\n", 0), 0u) << out;
}

TEST(ForwardRequest, ExpectIsNotForwarded) {
  std::string out = forwarded("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
  EXPECT_EQ(out.find("Expect"), std::string::npos);
}

TEST(ClientResponse, LengthIsPassedAndHopByHopDropped) {
  Framing framing;
  std::string out = toClient(
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nKeep-Alive: timeout=5\r\nConnection: X-Drop\r\n"
      "X-Drop: 1\r\nX-App: a\r\n\r\nabc",
      false, true, true, &framing);
  EXPECT_EQ(framing, Framing::kLength);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nX-App: a\r\nContent-Length: 3\r\n\r\n");
}

TEST(ClientResponse, ChunkedUpstreamIsRechunkedFor11AndCloseDelimitedFor10) {
  const std::string response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  Framing framing;
  std::string out11 = toClient(response, false, true, true, &framing);
  EXPECT_EQ(framing, Framing::kChunked);
  EXPECT_EQ(out11, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  std::string out10 = toClient(response, false, false, false, &framing);
  EXPECT_EQ(framing, Framing::kClose);
  EXPECT_EQ(out10, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
}

TEST(ClientResponse, NoBodyForHead204And304) {
  Framing framing;
  std::string head = toClient("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true, true, true, &framing);
  EXPECT_EQ(framing, Framing::kNone);
  EXPECT_NE(head.find("Content-Length: 10\r\n"), std::string::npos);
  toClient("HTTP/1.1 204 No Content\r\n\r\n", false, true, true, &framing);
  EXPECT_EQ(framing, Framing::kNone);
  toClient("HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", false, true, true, &framing);
  EXPECT_EQ(framing, Framing::kNone);
}

// The field rule an HTTP/2 stream applies to the upstream's parsed head is the one
// writeClientResponseHead() applies: the names the first passes are exactly those the
// second writes from the upstream (its own framing fields aside).
TEST(ClientResponse, FieldsPassedAloneAreTheOnesWrittenAsText) {
  const std::string response =
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\n"
      "Keep-Alive: timeout=5\r\nProxy-Connection: x\r\nX-App: a\r\nSet-Cookie: s=1\r\n\r\nabc";
  Parsed p(HTTP_RESPONSE, response);
  ASSERT_TRUE(p.parse());
  const HttpHead& head = p.parser.head();
  std::string passed;
  for (const HeaderSlice& h : head.headers) {
    const std::string_view name = h.name.view(p.text.data());
    if (isClientResponseField(head, p.text.data(), name, Framing::kLength)) passed += std::string(name) + ";";
  }
  EXPECT_EQ(passed, "X-App;Set-Cookie;");
  EXPECT_EQ(toClient(response, false, true, true),
            "HTTP/1.1 200 OK\r\nX-App: a\r\nSet-Cookie: s=1\r\nContent-Length: 3\r\n\r\n");
  // Content-Length goes as received only where we do not frame a body (HEAD, 304).
  for (const HeaderSlice& h : head.headers) {
    const std::string_view name = h.name.view(p.text.data());
    if (name == "Content-Length") {
      EXPECT_TRUE(isClientResponseField(head, p.text.data(), name, Framing::kNone));
      EXPECT_FALSE(isClientResponseField(head, p.text.data(), name, Framing::kBare));
    }
  }
}

TEST(ClientResponse, KeepAliveHeaderForHttp10Clients) {
  std::string out = toClient("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, false, true);
  EXPECT_NE(out.find("Connection: keep-alive\r\n"), std::string::npos);
  std::string closing = toClient("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, true, false);
  EXPECT_NE(closing.find("Connection: close\r\n"), std::string::npos);
}

TEST(ClientResponse, MissingReasonGetsTheStandardOne) {
  std::string out = toClient("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", false, true, true);
  EXPECT_EQ(out.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << out;
}

}  // namespace
}  // namespace poolgate
