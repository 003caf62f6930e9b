// Keep-alive, pipelining, header rewriting and bodyless responses.
#include <algorithm>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

class Forwarding : public ProxyTest {};

TEST_F(Forwarding, KeepAliveRequestsShareOneUpstreamConnection) {
  startProxy();
  HttpClient client = connect();
  HttpResponse first = client.get("/one");
  HttpResponse second = client.get("/two");
  ASSERT_EQ(first.status, 200);
  ASSERT_EQ(second.status, 200);
  EXPECT_EQ(first.json().at("target"), "/one");
  EXPECT_EQ(second.json().at("target"), "/two");
  ASSERT_NE(first.upstreamConnection(), -1) << "X-Connection not passed to the client";
  EXPECT_EQ(first.upstreamConnection(), second.upstreamConnection());
  EXPECT_EQ(upstream_.connectionCount(), 1u);
}

TEST_F(Forwarding, SequentialClientConnectionsReusePooledConnection) {
  startProxy();
  constexpr int kClients = 5;
  std::vector<long long> upstreamConns;
  for (int i = 0; i < kClients; ++i) {
    HttpClient client = connect();
    HttpResponse r = client.get("/seq?i=" + std::to_string(i));
    ASSERT_EQ(r.status, 200);
    upstreamConns.push_back(r.upstreamConnection());
  }
  for (long long c : upstreamConns) EXPECT_EQ(c, upstreamConns.front());
  EXPECT_EQ(upstream_.connectionCount(), 1u);

  Json stats = proxy().stats();
  EXPECT_EQ(sumOverWorkers(stats, "/upstream/opened_total"), 1u);
  EXPECT_EQ(sumOverWorkers(stats, "/upstream/reused_total"), kClients - 1u);
}

TEST_F(Forwarding, PipelinedResponsesComeBackInOrder) {
  startProxy();
  struct Step {
    std::string method, target, body;
  };
  const std::vector<Step> steps = {
      {"GET", "/delay/300?n=0", ""},
      {"POST", "/post?n=1", "pipelined body"},
      {"GET", "/delay/100?n=2", ""},
      {"GET", "/plain?n=3", ""},
      {"GET", "/delay/0?n=4", ""},
  };
  std::string wire;
  for (const auto& s : steps)
    wire += serializeRequest(s.method, s.target, {}, s.body,
                             s.body.empty() ? Framing::kNone : Framing::kContentLength);
  HttpClient client = connect();
  client.send(wire);  // all five in one write
  for (const auto& s : steps) {
    HttpResponse r = client.read(s.method);
    ASSERT_EQ(r.status, 200) << s.target;
    Json j = r.json();
    EXPECT_EQ(j.at("target"), s.target);
    EXPECT_EQ(j.at("body_length"), s.body.size());
  }
  EXPECT_EQ(upstream_.requestCount(), steps.size());
}

TEST_F(Forwarding, AddsForwardedHeadersAndDropsHopByHopRequestHeaders) {
  startProxy();
  HttpClient client = connect();
  HttpResponse r = client.get("/headers", {{"X-Forwarded-For", "203.0.113.7"},
                                           {"Connection", "keep-alive, X-Hop-Custom"},
                                           {"X-Hop-Custom", "secret"},
                                           {"Keep-Alive", "timeout=5"},
                                           {"Proxy-Connection", "keep-alive"},
                                           {"TE", "trailers"},
                                           {"Trailer", "X-Checksum"},
                                           {"Upgrade", "example/1"},
                                           {"X-End-To-End", "kept"}});
  ASSERT_EQ(r.status, 200);
  HttpResponse plain = client.get("/plain");
  ASSERT_EQ(plain.status, 200);
  ASSERT_TRUE(upstream_.waitForRequests(2));

  auto requests = upstream_.requests();
  const UpstreamRequest& req = requests.at(0);
  EXPECT_EQ(headerTokens(req.headers, "X-Forwarded-For"),
            (std::vector<std::string>{"203.0.113.7", "127.0.0.1"}));
  EXPECT_EQ(req.header("X-Forwarded-Proto"), "http");
  auto via = headerTokens(req.headers, "Via");
  EXPECT_NE(std::find(via.begin(), via.end(), "1.1 poolgate"), via.end())
      << "Via: " << req.header("Via").value_or("(none)");
  EXPECT_EQ(req.header("Host"), "localhost");
  EXPECT_EQ(req.header("X-End-To-End"), "kept");
  for (const char* hop : {"X-Hop-Custom", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
                          "Upgrade"})
    EXPECT_FALSE(req.header(hop).has_value()) << hop << " was forwarded";
  auto connection = headerTokens(req.headers, "Connection");
  EXPECT_EQ(std::find(connection.begin(), connection.end(), "x-hop-custom"), connection.end())
      << "Connection still lists the client's hop-by-hop name";

  const UpstreamRequest& second = requests.at(1);
  EXPECT_EQ(headerTokens(second.headers, "X-Forwarded-For"),
            (std::vector<std::string>{"127.0.0.1"}));
}

TEST_F(Forwarding, DropsHopByHopResponseHeaders) {
  upstream_.setHandler([](const UpstreamRequest&, UpstreamConnection& conn) {
    conn.respond(200, "hello", {{"Connection", "X-Resp-Hop"},
                                {"X-Resp-Hop", "1"},
                                {"Keep-Alive", "timeout=1"},
                                {"Proxy-Connection", "keep-alive"},
                                {"X-Resp-Kept", "yes"}});
  });
  startProxy();
  HttpClient client = connect();
  HttpResponse r = client.get("/");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello");
  EXPECT_EQ(r.header("X-Resp-Kept"), "yes");
  EXPECT_FALSE(r.has("X-Resp-Hop"));
  EXPECT_NE(r.header("Keep-Alive"), std::optional<std::string>("timeout=1"))
      << "the upstream's Keep-Alive was passed through";
  EXPECT_FALSE(r.has("Proxy-Connection"));
  EXPECT_EQ(client.get("/again").status, 200) << "client connection not usable afterwards";
}

// A response that carries no body must leave both connections usable.
struct BodylessCase {
  const char* name;
  const char* method;
  const char* path;
  int status;
};

void PrintTo(const BodylessCase& c, std::ostream* os) { *os << c.name; }

class BodylessResponses : public ProxyTest,
                          public ::testing::WithParamInterface<BodylessCase> {};

TEST_P(BodylessResponses, HaveNoBodyAndKeepConnectionsUsable) {
  const BodylessCase& c = GetParam();
  const std::string resource = patternBody(1000, 3);
  upstream_.setHandler([&](const UpstreamRequest& req, UpstreamConnection& conn) {
    if (req.path() == "/resource") conn.respond(200, resource);  // HEAD: length, no body
    else if (req.path() == "/nocontent") conn.respond(204);
    else if (req.path() == "/notmodified") conn.respond(304, {}, {{"ETag", "\"v1\""}});
    else TestUpstream::standardHandler()(req, conn);
  });
  startProxy();
  HttpClient client = connect();

  HttpResponse r = client.request(c.method, c.path, {{"If-None-Match", "\"v1\""}});
  EXPECT_EQ(r.status, c.status);
  EXPECT_TRUE(r.body.empty());
  if (std::string_view(c.method) == "HEAD" && r.has("Content-Length")) {
    EXPECT_EQ(r.header("Content-Length"), "1000");
  }
  EXPECT_FALSE(r.has("Transfer-Encoding"));
  if (c.status == 204) {
    EXPECT_FALSE(r.has("Content-Length")) << "204 with Content-Length";
  }

  HttpResponse after = client.get("/resource");  // same client connection
  ASSERT_EQ(after.status, 200);
  EXPECT_EQ(after.body.size(), resource.size());
  EXPECT_EQ(checksum(after.body), checksum(resource));
  EXPECT_EQ(after.upstreamConnection(), r.upstreamConnection())
      << "the upstream connection was not reused after a bodyless response";
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, BodylessResponses,
    ::testing::Values(BodylessCase{"Head", "HEAD", "/resource", 200},
                      BodylessCase{"NoContent204", "GET", "/nocontent", 204},
                      BodylessCase{"NotModified304", "GET", "/notmodified", 304}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace pgtest
