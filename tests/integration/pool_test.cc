// The upstream connection pool: what is pooled, what is not, and the keep-alive race.
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <random>
#include <set>
#include <thread>

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

namespace pgtest {
namespace {

// The classic keep-alive race, hit on purpose: the upstream closes connections
// idle for 100 ms while poolgate would keep them 60 s, and clients come back
// after 90 to 110 ms, so that many requests meet a pooled connection the
// server is closing right then. A reused connection that fails before any
// response byte is retried on a fresh one: not one client may see an error.
TEST_F(Pool, KeepAliveRaceGivesNoClientError) {
  upstream_.closeIdleAfter(100ms);
  startProxy(1, "pool = { idle_timeout = 60.0; max_idle = 32; };");
  constexpr size_t kClients = 20;
  constexpr int kRequestsPerClient = 60;  // 1200 requests in about 6 s
  std::atomic<int> failures{0};
  auto errors = runConcurrently(kClients, [&](size_t i) {
    std::mt19937 random(static_cast<unsigned>(i));
    std::uniform_int_distribution<int> gap(90, 110);
    HttpClient client = connect();
    for (int n = 0; n < kRequestsPerClient; ++n) {
      HttpResponse r = client.get("/race/" + std::to_string(i) + "/" + std::to_string(n));
      if (r.status != 200) ++failures;
      if (r.connectionClose()) client = connect();
      // Load spacing, not synchronisation: aim at the upstream's 100 ms close.
      std::this_thread::sleep_for(std::chrono::milliseconds(gap(random)));
    }
  });
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(failures.load(), 0);
  const Json s = proxy().stats();
  EXPECT_EQ(sumOverWorkers(s, "/requests"), kClients * kRequestsPerClient);
  // The race was really met: pooled connections were found closed (at checkout or in use).
  uint64_t closedIdle = 0;
  for (const Json& w : s.at("workers"))
    for (const Json& u : w.at("upstreams"))
      for (const Json& server : u.at("servers")) closedIdle += server.at("closed_idle_total").get<uint64_t>();
  EXPECT_GT(closedIdle, 0u);
}

}  // namespace
}  // namespace pgtest

namespace pgtest {
namespace {

// A client that resets its connection while its request is upstream: the
// upstream connection is closed (never pooled) and /stats says why.
TEST_F(Pool, ClientGoneMidExchangeIsCounted) {
  startProxy();
  {
    HttpClient client = connect();
    client.send(serializeRequest("GET", "/delay/300"));
    ASSERT_TRUE(upstream_.waitForRequests(1));
    linger hard{1, 0};  // close with RST
    ASSERT_EQ(setsockopt(client.fd(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard), 0);
  }
  auto clientGone = [&] {
    uint64_t n = 0;
    const Json stats = proxy().stats();  // (a temporary's member would dangle in the loop)
    for (const Json& w : stats.at("workers"))
      for (const Json& u : w.at("upstreams"))
        for (const Json& server : u.at("servers")) n += server.at("no_reuse").at("client_gone").get<uint64_t>();
    return n;
  };
  EXPECT_TRUE(waitUntil([&] { return clientGone() == 1; }, 3s)) << "no_reuse.client_gone stayed at " << clientGone();
  EXPECT_EQ(upstreamOpenNow(proxy()), 0u) << "the upstream connection of the vanished client was kept";
}

}  // namespace
}  // namespace pgtest
