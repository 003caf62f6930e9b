// The upstream connection pool: what is pooled, what is not, and the keep-alive race.
#include <memory>
#include <set>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

uint64_t upstreamOpenNow(const Poolgate& proxy) {
  return sumOverWorkers(proxy.stats(), "/upstream/open");
}

class Pool : public ProxyTest {};

TEST_F(Pool, UpstreamConnectionCloseIsNotPooled) {
  startProxy();
  HttpClient client = connect();
  std::set<long long> upstreamConns;
  for (uint64_t i = 0; i < 3; ++i) {
    HttpResponse r = client.get("/close");
    ASSERT_EQ(r.status, 200);
    upstreamConns.insert(r.upstreamConnection());
    EXPECT_EQ(sumOverWorkers(proxy().stats(), "/upstream/opened_total"), i + 1)
        << "every request after a Connection: close answer needs a new connection";
    if (r.connectionClose()) client = connect();  // poolgate may close the client too
  }
  EXPECT_EQ(upstreamConns.size(), 3u);
  EXPECT_EQ(upstream_.connectionCount(), 3u);
  EXPECT_EQ(sumOverWorkers(proxy().stats(), "/upstream/reused_total"), 0u);
}

// The upstream closes (FIN, or RST when the parameter is true) connections idle for
// 200 ms. Once the kernel shows the connection gone, the next request must still work.
class IdleClosedByUpstream : public ProxyTest, public ::testing::WithParamInterface<bool> {};

TEST_P(IdleClosedByUpstream, IsNoticedAndNextRequestSucceeds) {
  upstream_.closeIdleAfter(200ms, /*withReset=*/GetParam());
  startProxy();
  HttpClient client = connect();
  for (int round = 0; round < 4; ++round) {
    HttpResponse r = client.get("/round/" + std::to_string(round));
    ASSERT_EQ(r.status, 200) << "round " << round << ": " << r.body;
    EXPECT_EQ(r.json().at("target"), "/round/" + std::to_string(round));
    ASSERT_TRUE(waitUntil([&] { return countEstablished(upstream_.port()) == 0; }, 5s))
        << "the upstream did not close its idle connection";
    EXPECT_TRUE(waitUntil([&] { return upstreamOpenNow(proxy()) == 0; }, 3s))
        << "round " << round << ": poolgate still counts the closed connection as open";
  }
  EXPECT_TRUE(upstream_.errors().empty());
}

INSTANTIATE_TEST_SUITE_P(CloseKinds, IdleClosedByUpstream, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Reset" : "Fin"; });

// The keep-alive race: the upstream drops a pooled connection just as a request is sent
// on it, before any response byte (RST when the parameter is true, else FIN).
class StaleConnection : public ProxyTest, public ::testing::WithParamInterface<bool> {
 protected:
  // The second request on any connection is dropped, once.
  void armTrap() {
    auto sprung = sprung_;
    bool reset = GetParam();
    upstream_.setHandler([sprung, reset](const UpstreamRequest& req, UpstreamConnection& conn) {
      if (req.indexOnConnection == 1 && !sprung->exchange(true)) {
        if (reset) conn.reset();
        else conn.closeWithoutResponse();
        return;
      }
      TestUpstream::standardHandler()(req, conn);
    });
  }
  std::shared_ptr<std::atomic<bool>> sprung_ = std::make_shared<std::atomic<bool>>(false);
};

TEST_P(StaleConnection, IdempotentRequestIsRetriedOnFreshConnection) {
  armTrap();
  startProxy();
  HttpClient client = connect();
  HttpResponse first = client.get("/first");
  ASSERT_EQ(first.status, 200);
  HttpResponse second = client.get("/second");
  ASSERT_TRUE(sprung_->load()) << "the second request did not reuse the pooled connection";
  EXPECT_EQ(second.status, 200) << second.body;
  if (second.status == 200) {
    EXPECT_EQ(second.json().at("target"), "/second");
    EXPECT_NE(second.upstreamConnection(), first.upstreamConnection());
  }
}

TEST_P(StaleConnection, PostWhoseBodyWasSentIsNotRetried) {
  armTrap();
  startProxy();
  HttpClient client = connect();
  ASSERT_EQ(client.get("/first").status, 200);
  HttpResponse r = client.request("POST", "/post", {}, "payload", Framing::kContentLength);
  ASSERT_TRUE(sprung_->load()) << "the POST did not reuse the pooled connection";
  EXPECT_EQ(r.status, 502);
  size_t posts = 0;
  for (const auto& req : upstream_.requests()) posts += req.path() == "/post";
  EXPECT_EQ(posts, 1u) << "a non-idempotent request whose body was sent was re-sent";
}

INSTANTIATE_TEST_SUITE_P(DropKinds, StaleConnection, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Reset" : "Fin"; });

}  // namespace
}  // namespace pgtest
