// Error statuses poolgate produces itself: 502, 504 and 400.
#include "tests/integration/harness.h"

namespace pgtest {
namespace {

class UpstreamErrors : public ProxyTest {};

TEST_F(UpstreamErrors, ClosedUpstreamPortGives502) {
  ReservedPort closed;  // bound, not listening: connections are refused
  startProxyWithConfig(proxyConfig(closed.address()), {});
  HttpClient client = connect();
  HttpResponse r = client.get("/");
  expectProxyError(r, 502);
}

// An upstream that is down under load must not fill the disk: a few lines in
// full, then one summary per second and worker, whatever the request rate.
TEST_F(UpstreamErrors, RepeatedConnectFailuresAreSummarisedInTheLog) {
  ReservedPort closed;
  startProxyWithConfig(proxyConfig(closed.address()), {});
  HttpClient client = connect();
  for (int i = 0; i < 400; ++i) expectProxyError(client.get("/"), 502);
  const std::string subject = "upstream " + closed.address() + ": ";
  ASSERT_TRUE(waitUntil([&] { return proxy().log().find("more errors in the last") != std::string::npos; }, 5s))
      << proxy().logTail();
  const std::string log = proxy().log();
  size_t lines = 0;
  for (size_t at = log.find(subject); at != std::string::npos; at = log.find(subject, at + 1)) ++lines;
  EXPECT_LE(lines, 3u + 4u) << proxy().logTail();  // the burst, then a summary a second
  EXPECT_NE(log.find("(last: connect_failed)"), std::string::npos) << proxy().logTail();
}

TEST_F(UpstreamErrors, ReadTimeoutGives504AndConnectionIsNotReused) {
  startProxy(1, "", "timeouts = { upstream_read = 0.5; };");
  HttpClient client = connect();
  auto start = Clock::now();
  HttpResponse r = client.get("/delay/3000");
  double elapsed = secondsSince(start);
  expectProxyError(r, 504);  // (a 200 would mean the timeout never fired)
  EXPECT_GE(elapsed, 0.4);

  // The late response must never be read as the answer to another request.
  ASSERT_TRUE(upstream_.waitForRequests(1));
  const uint64_t slowConn = upstream_.requests().at(0).connection;
  HttpClient next = connect();
  HttpResponse after = next.get("/after");
  ASSERT_EQ(after.status, 200);
  EXPECT_EQ(after.json().at("target"), "/after");
  EXPECT_NE(after.upstreamConnection(), static_cast<long long>(slowConn))
      << "timed-out upstream connection was reused";
}

struct MalformedResponse {
  const char* name;
  const char* bytes;
};

void PrintTo(const MalformedResponse& c, std::ostream* os) { *os << c.name; }

class MalformedUpstreamResponse : public ProxyTest,
                                  public ::testing::WithParamInterface<MalformedResponse> {};

TEST_P(MalformedUpstreamResponse, Gives502AndConnectionIsClosed) {
  const std::string bad = GetParam().bytes;
  upstream_.setHandler([bad](const UpstreamRequest& req, UpstreamConnection& conn) {
    if (req.path() == "/bad") conn.sendRaw(bad);  // then keeps the connection open
    else TestUpstream::standardHandler()(req, conn);
  });
  startProxy();
  HttpClient client = connect();
  HttpResponse r = client.get("/bad");
  expectProxyError(r, 502);
  ASSERT_TRUE(upstream_.waitForRequests(1));
  const uint64_t badConn = upstream_.requests().at(0).connection;
  EXPECT_TRUE(upstream_.waitClosedByPeer(badConn))
      << "poolgate kept the connection that sent a malformed response";

  HttpClient next = connect();
  HttpResponse after = next.get("/good");
  ASSERT_EQ(after.status, 200);
  EXPECT_EQ(after.json().at("target"), "/good");
  EXPECT_NE(after.upstreamConnection(), static_cast<long long>(badConn));
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, MalformedUpstreamResponse,
    ::testing::Values(
        MalformedResponse{"GarbageStatusLine", "THIS IS NOT HTTP\r\n\r\n"},
        MalformedResponse{"BadContentLength",
                          "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello"},
        MalformedResponse{"DifferingContentLengths",
                          "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n"
                          "hello"},
        MalformedResponse{"SpaceInHeaderName",
                          "HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 0\r\n\r\n"}),
    [](const auto& info) { return std::string(info.param.name); });

// Each malformed request contains "poison" so that the upstream's raw input can be
// searched for any part of it.
struct MalformedRequest {
  const char* name;
  const char* bytes;
};

void PrintTo(const MalformedRequest& c, std::ostream* os) { *os << c.name; }

class MalformedClientRequest : public ProxyTest,
                               public ::testing::WithParamInterface<MalformedRequest> {};

TEST_P(MalformedClientRequest, Gets400ClosesAndReachesNoUpstream) {
  startProxy();
  HttpClient client = connect();
  client.trySend(GetParam().bytes);  // poolgate may close before reading it all
  HttpResponse r = client.read();
  expectProxyError(r, 400);
  EXPECT_TRUE(r.connectionClose()) << "400 without Connection: close";
  EXPECT_TRUE(client.waitClosed()) << "connection not closed after 400";

  expectNothingForwardedBefore("poison");
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, MalformedClientRequest,
    ::testing::Values(
        MalformedRequest{"BadRequestLine", "GET /poison HTTP/1.1 extra\r\nHost: a\r\n\r\n"},
        MalformedRequest{"GarbageRequestLine", "poison\r\n\r\n"},
        MalformedRequest{"SpaceInHeaderName",
                         "GET /poison HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n"},
        MalformedRequest{"ContentLengthAndChunked",
                         "POST /poison HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        MalformedRequest{"DifferingContentLengths",
                         "POST /poison HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                         "Content-Length: 6\r\n\r\nhello!"},
        MalformedRequest{"InvalidContentLength",
                         "POST /poison HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"},
        MalformedRequest{"BareLineFeeds", "GET /poison HTTP/1.1\nHost: a\n\n"},
        MalformedRequest{"ObsFold",
                         "GET /poison HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n"},
        MalformedRequest{"InvalidChunkSize",
                         "POST /poison HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                         "\r\nzz\r\nhello\r\n0\r\n\r\n"},
        MalformedRequest{"MissingHostInHttp11", "GET /poison HTTP/1.1\r\n\r\n"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace pgtest
