// Connection economy: the pool follows demand past max_idle instead of
// closing at release, shrinks back after the load, and retires connections
// before the server's own Keep-Alive timeout or max says it will close them.
#include "tests/integration/harness.h"

namespace pgtest {
namespace {

const Json& firstServer(const Json& stats) { return stats.at("workers").at(0).at("upstreams").at(0).at("servers").at(0); }

class PoolDemand : public ProxyTest {};

// 16 concurrent clients, max_idle = 2. Closing every release beyond two (the
// old rule) made almost every request open a connection; now the connections
// a burst opened carry the load, and none is refused as pool_full.
TEST_F(PoolDemand, LoadAboveMaxIdleReusesInsteadOfChurning) {
  startProxy(1, "pool = { max_idle = 2; trim_after = 1.0; idle_timeout = 60.0; };");
  constexpr size_t kClients = 16, kPerClient = 60;
  std::vector<std::string> errors = runConcurrently(kClients, [&](size_t i) {
    HttpClient client(proxy().proxyPort());
    for (size_t n = 0; n < kPerClient; ++n) {
      HttpResponse r = client.get("/delay/2?c=" + std::to_string(i));
      if (r.status != 200) throw HarnessError("status " + std::to_string(r.status));
    }
  });
  ASSERT_TRUE(errors.empty()) << errors.front();

  Json server = firstServer(proxy().stats());
  const uint64_t opened = server.at("opened_total").get<uint64_t>();
  const uint64_t reused = server.at("reused_total").get<uint64_t>();
  EXPECT_LE(opened, 2 * kClients) << server.dump();
  EXPECT_EQ(opened + reused, kClients * kPerClient);
  EXPECT_EQ(server.at("no_reuse").at("pool_full"), 0) << server.dump();
  EXPECT_GE(server.at("demand").get<uint64_t>(), 3u) << server.dump();  // far above max_idle was in use at once

  // Load over: the surplus idles trim_after, then goes; max_idle stay.
  ASSERT_TRUE(waitUntil(
      [&] { return sumOverWorkers(proxy().stats(), "/upstream/open") == 2 && countEstablished(upstream_.port()) == 2; },
      5s))
      << firstServer(proxy().stats()).dump();
  server = firstServer(proxy().stats());
  EXPECT_EQ(server.at("trimmed_total").get<uint64_t>(), opened - 2) << server.dump();
  EXPECT_EQ(server.at("closed_idle_total"), 0);
}

// `Keep-Alive: timeout=1` (gunicorn says timeout=2): a connection idle past
// 750 ms is not reused, so the request goes on a fresh connection instead of
// racing the server's close.
TEST_F(PoolDemand, UpstreamKeepAliveTimeoutRetiresIdleConnections) {
  upstream_.setHandler([](const UpstreamRequest&, UpstreamConnection& conn) {
    conn.respond(200, "ok", {{"Keep-Alive", "timeout=1"}});
  });
  startProxy(1);
  HttpClient client = connect();
  ASSERT_EQ(client.get("/a").status, 200);
  ASSERT_EQ(client.get("/b").status, 200);  // at once: reused
  EXPECT_EQ(upstream_.connectionCount(), 1u);

  std::this_thread::sleep_for(900ms);  // idle time for the hint to matter, not a synchronisation
  ASSERT_EQ(client.get("/c").status, 200);
  EXPECT_EQ(upstream_.connectionCount(), 2u);
  const Json server = firstServer(proxy().stats());
  EXPECT_EQ(server.at("expired_total"), 1) << server.dump();
  EXPECT_EQ(server.at("retries_total"), 0) << server.dump();
  EXPECT_TRUE(upstream_.waitClosedByPeer(1, 3s)) << "the expired connection was not closed by poolgate";
}

// `Keep-Alive: max=1`: the server takes no further request on the connection.
TEST_F(PoolDemand, UpstreamKeepAliveMaxOneIsNotPooled) {
  upstream_.setHandler([](const UpstreamRequest&, UpstreamConnection& conn) {
    conn.respond(200, "ok", {{"Keep-Alive", "timeout=5, max=1"}});
  });
  startProxy(1);
  HttpClient client = connect();
  for (int i = 0; i < 3; ++i) ASSERT_EQ(client.get("/").status, 200);
  EXPECT_EQ(upstream_.connectionCount(), 3u);
  const Json server = firstServer(proxy().stats());
  EXPECT_EQ(server.at("no_reuse").at("upstream_max"), 3) << server.dump();
  EXPECT_EQ(server.at("retries_total"), 0);
}

}  // namespace
}  // namespace pgtest
