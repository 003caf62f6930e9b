// Request and response bodies of several sizes in both framings, and de-chunking for
// HTTP/1.0 clients.
#include "tests/integration/harness.h"

namespace pgtest {
namespace {

constexpr size_t kMiB = 1024 * 1024;

struct BodyCase {
  size_t size;
  Framing framing;
};

std::string describe(const BodyCase& c) {
  std::string size = c.size >= kMiB ? std::to_string(c.size / kMiB) + "MiB"
                                    : std::to_string(c.size) + "B";
  return size + (c.framing == Framing::kChunked ? "_chunked" : "_length");
}
void PrintTo(const BodyCase& c, std::ostream* os) { *os << describe(c); }
std::string bodyCaseName(const ::testing::TestParamInfo<BodyCase>& info) {
  return describe(info.param);
}

const auto kBodyCases = ::testing::Values(
    BodyCase{0, Framing::kContentLength}, BodyCase{0, Framing::kChunked},
    BodyCase{1 * kMiB, Framing::kContentLength}, BodyCase{1 * kMiB, Framing::kChunked},
    BodyCase{50 * kMiB, Framing::kContentLength}, BodyCase{50 * kMiB, Framing::kChunked});

class Bodies : public ProxyTest, public ::testing::WithParamInterface<BodyCase> {
 protected:
  // Posts the case's body through poolgate (started with `extra` config) and
  // checks that the app got it whole; returns the head the upstream received.
  std::string postAndCheck(const std::string& extra) {
    const BodyCase& c = GetParam();
    startProxy(1, "", extra);
    const std::string body = patternBody(c.size, 7);
    HttpClient client(proxy().proxyPort(), 30s);
    HttpResponse r = client.request("POST", "/upload", {}, body, c.framing);
    EXPECT_EQ(r.status, 200) << r.body.substr(0, 200);
    if (r.status != 200) return {};
    Json j = r.json();
    EXPECT_EQ(j.at("body_length"), c.size);
    EXPECT_EQ(j.at("body_checksum"), checksum(body));
    EXPECT_TRUE(upstream_.waitForRequests(1));
    EXPECT_EQ(upstream_.requests().at(0).bodyLength, c.size);
    EXPECT_EQ(client.get("/after").status, 200) << "client connection not usable afterwards";
    const std::string raw = upstream_.rawReceived();
    return raw.substr(0, raw.find("\r\n\r\n"));
  }
};

TEST_P(Bodies, RequestBodyArrivesIntact) {
  const BodyCase& c = GetParam();
  const std::string head = postAndCheck("");
  // Buffered whole (the default), a chunked body too goes with its length.
  EXPECT_EQ(head.find("Transfer-Encoding"), std::string::npos) << head;
  EXPECT_NE(head.find("Content-Length: " + std::to_string(c.size)), std::string::npos) << head;
}

// The same with request buffering off: the body streams to the upstream as it
// comes (chunked stays chunked, re-chunked by poolgate).
TEST_P(Bodies, StreamedRequestBodyArrivesIntact) {
  const BodyCase& c = GetParam();
  const std::string head = postAndCheck("buffering = { request = false; };");
  EXPECT_EQ(head.find("Transfer-Encoding: chunked") != std::string::npos, c.framing == Framing::kChunked) << head;
}

TEST_P(Bodies, ResponseBodyArrivesIntact) {
  const BodyCase& c = GetParam();
  startProxy();
  const std::string path =
      (c.framing == Framing::kChunked ? "/chunked/" : "/size/") + std::to_string(c.size);
  HttpClient client(proxy().proxyPort(), 30s);
  HttpResponse r = client.get(path);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body.size(), c.size);
  EXPECT_EQ(checksum(r.body), checksum(patternBody(c.size, c.size)));
  HttpResponse after = client.get("/after");
  EXPECT_EQ(after.status, 200) << "client connection not usable afterwards";
  EXPECT_EQ(after.upstreamConnection(), r.upstreamConnection())
      << "upstream connection not reused after a complete " << toString(r.framing) << " body";
}

INSTANTIATE_TEST_SUITE_P(Sizes, Bodies, kBodyCases, bodyCaseName);

class BodyFraming : public ProxyTest {};

TEST_F(BodyFraming, Http10ClientGetsDechunkedResponse) {
  startProxy();
  constexpr size_t kSize = 300 * 1024;
  HttpClient client = connect();
  client.send(serializeRequest("GET", "/chunked/" + std::to_string(kSize), {}, {},
                               Framing::kNone, "HTTP/1.0"));
  HttpResponse r = client.read();
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.framing, Framing::kChunked) << "HTTP/1.0 client got a chunked response";
  EXPECT_FALSE(r.has("Transfer-Encoding"));
  EXPECT_EQ(r.body.size(), kSize);
  EXPECT_EQ(checksum(r.body), checksum(patternBody(kSize, kSize)));
  EXPECT_TRUE(client.waitClosed()) << "HTTP/1.0 connection without keep-alive not closed";
}

TEST_F(BodyFraming, CloseDelimitedUpstreamResponseIsRelayedAndNotPooled) {
  constexpr size_t kSize = 200 * 1024;
  const std::string body = patternBody(kSize, 11);
  upstream_.setHandler([&](const UpstreamRequest& req, UpstreamConnection& conn) {
    if (req.path() == "/eof") conn.respondCloseDelimited(200, body);
    else TestUpstream::standardHandler()(req, conn);
  });
  startProxy();
  HttpClient client = connect();
  HttpResponse r = client.get("/eof");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body.size(), kSize);
  EXPECT_EQ(checksum(r.body), checksum(body));

  HttpClient next = connect();  // the first may have been closed (close-delimited)
  HttpResponse after = next.get("/after");
  ASSERT_EQ(after.status, 200);
  EXPECT_NE(after.upstreamConnection(), r.upstreamConnection());
}

}  // namespace
}  // namespace pgtest
