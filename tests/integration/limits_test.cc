// Limits and client timeouts: 413, 414, 431, 501 and 408.
#include "tests/integration/harness.h"

namespace pgtest {
namespace {

// Each refused request contains "poison" so that the upstream's input can be searched.
struct RefusedRequest {
  const char* name;
  const char* limits;  // top-level config
  std::string bytes;
  int status;
  bool checkNothingForwarded;  // false where the head may be forwarded before the refusal
};

void PrintTo(const RefusedRequest& c, std::ostream* os) { *os << c.name; }

std::string manyHeaders(int n) {
  std::string h;
  for (int i = 0; i < n; ++i) h += "X-H" + std::to_string(i) + ": v\r\n";
  return h;
}

class Limits : public ProxyTest, public ::testing::WithParamInterface<RefusedRequest> {};

TEST_P(Limits, RequestIsRefused) {
  const RefusedRequest& c = GetParam();
  startProxy(1, "", c.limits);
  HttpClient client = connect();
  client.trySend(c.bytes);  // poolgate may answer and close before reading everything
  HttpResponse r = client.read();
  expectProxyError(r, c.status);
  if (c.checkNothingForwarded) expectNothingForwardedBefore("poison");
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, Limits,
    ::testing::Values(
        RefusedRequest{"RequestLineTooLong414", "limits = { max_request_line = 1024; };",
                       "GET /poison?" + std::string(2000, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n",
                       414, true},
        RefusedRequest{"HeadTooLarge431", "limits = { max_header_bytes = 4096; };",
                       "GET /poison HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(8000, 'b') +
                           "\r\n\r\n",
                       431, true},
        RefusedRequest{"TooManyHeaders431", "limits = { max_headers = 10; };",
                       "GET /poison HTTP/1.1\r\nHost: a\r\n" + manyHeaders(20) + "\r\n", 431,
                       true},
        RefusedRequest{"ContentLengthTooLarge413", "limits = { max_body_bytes = 1000; };",
                       "POST /poison HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n" +
                           std::string(5000, 'c'),
                       413, true},
        RefusedRequest{"ChunkedBodyTooLarge413", "limits = { max_body_bytes = 1000; };",
                       "POST /poison HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
                           chunkedEncode(std::string(5000, 'c'), 500),
                       413, false},
        RefusedRequest{"UnknownTransferCoding501", "",
                       "POST /poison HTTP/1.1\r\nHost: a\r\n"
                       "Transfer-Encoding: x-unknown, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                       501, true}),
    [](const auto& info) { return std::string(info.param.name); });

class ClientTimeouts : public ProxyTest {};

TEST_F(ClientTimeouts, IncompleteHeadGets408) {
  startProxy(1, "", "timeouts = { client_header = 0.5; };");
  HttpClient client = connect();
  client.send("GET /poison HTTP/1.1\r\nHost: a\r\n");  // no blank line
  auto start = Clock::now();
  HttpResponse r = client.read();
  expectProxyError(r, 408);
  EXPECT_GE(secondsSince(start), 0.4);
  EXPECT_TRUE(client.waitClosed());
  expectNothingForwardedBefore("poison");
}

TEST_F(ClientTimeouts, StalledBodyGets408) {
  startProxy(1, "", "timeouts = { client_body = 0.5; };");
  HttpClient client = connect();
  client.send("POST /slow-body HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789");
  HttpResponse r = client.read();
  expectProxyError(r, 408);
  EXPECT_TRUE(client.waitClosed());
}

TEST_F(ClientTimeouts, IdleKeepAliveClientIsClosed) {
  startProxy(1, "", "timeouts = { client_keepalive = 0.3; };");
  HttpClient client = connect();
  ASSERT_EQ(client.get("/").status, 200);
  auto start = Clock::now();
  EXPECT_TRUE(client.waitClosed(3s)) << "idle client connection still open after 3 s";
  EXPECT_GE(secondsSince(start), 0.2);
}

}  // namespace
}  // namespace pgtest
