// Routes by host and longest prefix; 404 when nothing matches.
#include "tests/integration/harness.h"

namespace pgtest {
namespace {

constexpr const char* kTwoUpstreams = R"(
workers = 1;
listen = ( { address = "127.0.0.1:0"; } );
admin = { address = "127.0.0.1:0"; };
upstreams = (
  { name = "a"; servers = ( { address = "${A}"; } ); },
  { name = "b"; servers = ( { address = "${B}"; } ); }
);
)";

class Routing : public ::testing::Test {
 protected:
  void start(const std::string& routes) {
    proxy_ = std::make_unique<Poolgate>(std::string(kTwoUpstreams) + routes,
                                        std::map<std::string, std::string>{
                                            {"A", a_.address()}, {"B", b_.address()}});
    proxy_->start();
  }
  // Sends GET target with Host and returns which upstream answered: "a", "b", or the
  // status code when poolgate answered itself.
  std::string routeOf(HttpClient& client, const std::string& host, const std::string& target) {
    size_t beforeA = a_.requestCount(), beforeB = b_.requestCount();
    HttpResponse r = client.get(target, {{"Host", host}});
    if (r.status != 200) return std::to_string(r.status);
    bool toA = a_.requestCount() > beforeA, toB = b_.requestCount() > beforeB;
    if (toA == toB) return "ambiguous";
    return toA ? "a" : "b";
  }

  TestUpstream a_, b_;
  std::unique_ptr<Poolgate> proxy_;
};

TEST_F(Routing, ByHostAndLongestPrefix) {
  start(R"(
routes = (
  { host = "b.example"; prefix = "/"; upstream = "b"; },
  { host = "*"; prefix = "/"; upstream = "a"; },
  { host = "*"; prefix = "/api/"; upstream = "b"; }
);
)");
  HttpClient client(proxy_->proxyPort());
  EXPECT_EQ(routeOf(client, "b.example", "/x"), "b");
  EXPECT_EQ(routeOf(client, "other.example", "/x"), "a");
  EXPECT_EQ(routeOf(client, "other.example", "/api/v1/items"), "b")
      << "the longer prefix /api/ must win over / listed before it";
  EXPECT_EQ(routeOf(client, "other.example", "/apix"), "a");
  EXPECT_EQ(routeOf(client, "b.example:8080", "/x"), "b") << "Host port must not matter";
}

TEST_F(Routing, NoMatchingRouteGives404) {
  start(R"(
routes = (
  { host = "app.example"; prefix = "/"; upstream = "a"; },
  { host = "*"; prefix = "/api/"; upstream = "b"; }
);
)");
  HttpClient client(proxy_->proxyPort());
  HttpResponse r = client.get("/elsewhere", {{"Host", "other.example"}});
  EXPECT_EQ(r.status, 404);
  auto type = r.header("Content-Type");
  EXPECT_TRUE(type && type->rfind("text/plain", 0) == 0) << type.value_or("(none)");
  EXPECT_EQ(a_.requestCount() + b_.requestCount(), 0u);

  if (r.connectionClose()) client = HttpClient(proxy_->proxyPort());
  EXPECT_EQ(routeOf(client, "app.example", "/x"), "a");
  EXPECT_EQ(routeOf(client, "other.example", "/api/x"), "b");
}

}  // namespace
}  // namespace pgtest
