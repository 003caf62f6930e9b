// Limits and client timeouts: 413, 414, 431, 501 and 408.
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>

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

// ---- A chunked body over max_body_bytes (issue 15)
//
// 2 MiB sent in chunks of 100000 bytes against max_body_bytes = 1 MiB: the limit falls
// inside the 11th chunk. Whatever the app does, no byte past the limit reaches it (not
// even a chunk size line promising more), and its connection is closed, never pooled.

// A chunked body as it reached the upstream: what its size lines announced, and the data
// that came. A cut body ends inside a chunk or between two.
struct ChunkedPrefix {
  bool wellFormed = true;
  bool complete = false;   // the last chunk arrived
  uint64_t announced = 0;  // sum of the announced chunk sizes
  std::string data;        // the data bytes received
};

ChunkedPrefix decodeChunkedPrefix(std::string_view raw) {
  ChunkedPrefix out;
  size_t pos = raw.find("\r\n\r\n");
  if (pos == std::string_view::npos) {
    out.wellFormed = false;
    return out;
  }
  pos += 4;
  while (pos < raw.size()) {
    size_t eol = raw.find("\r\n", pos);
    if (eol == std::string_view::npos) break;  // cut inside a size line
    const std::string line(raw.substr(pos, eol - pos));
    size_t used = 0;
    uint64_t size = 0;
    try {
      size = std::stoull(line, &used, 16);
    } catch (const std::exception&) {
      used = 0;
    }
    if (line.empty() || used != line.size()) {
      out.wellFormed = false;
      return out;
    }
    pos = eol + 2;
    if (size == 0) {
      out.complete = true;
      return out;
    }
    out.announced += size;
    const size_t take = static_cast<size_t>(std::min<uint64_t>(size, raw.size() - pos));
    out.data.append(raw.substr(pos, take));
    pos += take;
    if (take < size || pos == raw.size()) break;
    if (raw.substr(pos, 2) != "\r\n" && pos + 2 <= raw.size()) out.wellFormed = false;
    pos += 2;
  }
  return out;
}

// Everything the client receives until poolgate closes the connection (EOF or reset),
// or nullopt if it is still open after `timeout`.
std::optional<std::string> readUntilClosed(int fd, Millis timeout) {
  std::string all;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready == 0) return std::nullopt;
    if (ready < 0) continue;
    char buf[16384];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      all.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return all;
  }
}

enum class App {
  kReadsEverything,   // reads the whole body before it answers
  kAnswersEarly,      // answers 200 as soon as the head arrives, then reads the body
  kStreamsItsAnswer,  // sends a head and 100000 of 200000 body bytes at once, then reads
};

struct OverLimitCase {
  const char* name;
  App app;
};

void PrintTo(const OverLimitCase& c, std::ostream* os) { *os << c.name; }

class ChunkedBodyOverLimit : public ProxyTest, public ::testing::WithParamInterface<OverLimitCase> {};

// The chunks of `body` (100000 bytes each), without the last chunk.
std::string chunksOf(std::string_view body) {
  std::string encoded = chunkedEncode(body, 100000);
  encoded.resize(encoded.size() - 5);  // "0\r\n\r\n"
  return encoded;
}

// Whether the client has response bytes to read right now.
bool bytesWaiting(const HttpClient& client) {
  pollfd p{client.fd(), POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// Reads from the client until `n` bytes have come (bounded); returns them.
std::string readAtLeast(const HttpClient& client, size_t n, Millis timeout = 10s) {
  std::string got;
  const auto deadline = Clock::now() + timeout;
  while (got.size() < n && Clock::now() < deadline) {
    pollfd p{client.fd(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[16384];
    const ssize_t r = ::recv(client.fd(), buf, sizeof buf, 0);
    if (r <= 0) break;
    got.append(buf, static_cast<size_t>(r));
  }
  return got;
}

TEST_P(ChunkedBodyOverLimit, NothingPastTheLimitReachesTheUpstream) {
  constexpr uint64_t kLimit = 1048576;
  const App app = GetParam().app;
  upstream_.answerBeforeBody(app != App::kReadsEverything);
  if (app == App::kStreamsItsAnswer) {
    upstream_.setHandler([](const UpstreamRequest& req, UpstreamConnection& conn) {
      if (req.path() != "/upload") return TestUpstream::standardHandler()(req, conn);
      conn.sendRaw("HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + std::string(100000, 'r'));
    });
  }
  // Streamed bodies: with request buffering (request_buffering_test.cc) nothing
  // reaches the app before the body has ended, so no answer can come early.
  startProxy(1, "", "limits = { max_body_bytes = 1048576; }; buffering = { request = false; };");

  // The first 500000 bytes, then (once the app has answered, where it does) the rest.
  const std::string body = patternBody(2 * kLimit);
  HttpClient client = connect();
  client.send("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
              chunksOf(body.substr(0, 500000)));
  std::string received;
  if (app == App::kAnswersEarly) {
    // The app's whole answer has reached poolgate: it let go of the connection.
    ASSERT_TRUE(upstream_.waitClosedByPeer(1)) << "poolgate kept the upstream connection";
    EXPECT_FALSE(bytesWaiting(client)) << "the early answer went out before the body had ended";
  }
  if (app == App::kStreamsItsAnswer) {
    received = readAtLeast(client, 64 * 1024);  // more than poolgate holds back
    ASSERT_GE(received.size(), 64u * 1024) << "the streamed answer did not come";
  }
  client.trySend(chunksOf(body.substr(500000)) + "0\r\n\r\n");  // poolgate closes before the end

  if (app == App::kStreamsItsAnswer) {
    // Response bytes had gone out when the limit tripped: the response is cut.
    std::optional<std::string> rest = readUntilClosed(client.fd(), 10s);
    ASSERT_TRUE(rest.has_value()) << "client connection left open";
    received += *rest;
    EXPECT_EQ(received.rfind("HTTP/1.1 200 ", 0), 0u) << received.substr(0, 200);
    const size_t bodyStart = received.find("\r\n\r\n");
    ASSERT_NE(bodyStart, std::string::npos);
    EXPECT_LT(received.size() - bodyStart - 4, 200000u) << "the cut response looks complete";
  } else {
    // No response byte had gone out (an early answer is held back): 413.
    HttpResponse r = client.read();
    expectProxyError(r, 413);
    EXPECT_TRUE(r.connectionClose());
    EXPECT_TRUE(client.waitClosed());
  }

  // The upstream connection was closed, never pooled.
  ASSERT_TRUE(upstream_.waitClosedByPeer(1)) << "poolgate kept the upstream connection";
  const ChunkedPrefix seen = decodeChunkedPrefix(upstream_.rawReceived());
  EXPECT_TRUE(seen.wellFormed);
  EXPECT_FALSE(seen.complete) << "the app received the body as complete";
  EXPECT_LE(seen.announced, kLimit) << "a chunk size line past the limit reached the upstream";
  EXPECT_LE(seen.data.size(), kLimit) << "body bytes past the limit reached the upstream";
  EXPECT_TRUE(seen.data == body.substr(0, seen.data.size())) << "the body prefix is not the client's";
  if (app == App::kReadsEverything) {
    EXPECT_EQ(upstream_.requestCount(), 0u) << "the app saw a complete request";
  } else {
    ASSERT_EQ(upstream_.requestCount(), 1u);
    EXPECT_EQ(upstream_.requests()[0].target, "/upload");
  }

  // The next request goes out on a new upstream connection.
  HttpResponse after = connect().get("/after");
  ASSERT_EQ(after.status, 200);
  EXPECT_NE(after.upstreamConnection(), 1);
}

INSTANTIATE_TEST_SUITE_P(Apps, ChunkedBodyOverLimit,
                         ::testing::Values(OverLimitCase{"AppReadsEverything", App::kReadsEverything},
                                           OverLimitCase{"AppAnswersEarly", App::kAnswersEarly},
                                           OverLimitCase{"AppStreamsItsAnswer", App::kStreamsItsAnswer}),
                         [](const auto& info) { return std::string(info.param.name); });

// Within the limit, an early answer waits until the body has ended (read, and dropped
// once the app has answered), and is then relayed, with Connection: close.
class ChunkedBodyWithinLimit : public ProxyTest {};

TEST_F(ChunkedBodyWithinLimit, EarlyAnswerIsRelayedOnceTheBodyHasEnded) {
  upstream_.answerBeforeBody(true);
  startProxy(1, "", "limits = { max_body_bytes = 1048576; }; buffering = { request = false; };");  // streamed
  const std::string body = patternBody(1000000);
  HttpClient client = connect();
  client.send("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
              chunksOf(body.substr(0, 500000)));
  ASSERT_TRUE(upstream_.waitClosedByPeer(1)) << "poolgate kept the upstream connection";
  EXPECT_FALSE(bytesWaiting(client)) << "the early answer went out before the body had ended";
  client.send(chunksOf(body.substr(500000)) + "0\r\n\r\n");
  HttpResponse r = client.read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json().at("target"), "/upload");
  EXPECT_TRUE(r.connectionClose());
  EXPECT_TRUE(client.waitClosed());
}

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
