// Pool settings (max_requests, idle_timeout, max_idle, max_conns + queue_timeout) and
// retries to the next server.
#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

class PoolConfig : public ProxyTest {};

TEST_F(PoolConfig, MaxRequestsClosesConnectionAfterN) {
  startProxy(1, "pool = { max_requests = 2; };");
  HttpClient client = connect();
  std::vector<long long> conns;
  for (int i = 0; i < 5; ++i) {
    HttpResponse r = client.get("/n/" + std::to_string(i));
    ASSERT_EQ(r.status, 200);
    conns.push_back(r.upstreamConnection());
  }
  EXPECT_EQ(conns[0], conns[1]);
  EXPECT_NE(conns[1], conns[2]);
  EXPECT_EQ(conns[2], conns[3]);
  EXPECT_NE(conns[3], conns[4]);
}

TEST_F(PoolConfig, IdleTimeoutClosesPooledConnection) {
  startProxy(1, "pool = { idle_timeout = 0.3; };");
  ASSERT_EQ(connect().get("/").status, 200);
  EXPECT_TRUE(upstream_.waitClosedByPeer(1, 3s)) << "idle pooled connection kept past 0.3 s";
  EXPECT_TRUE(waitUntil([&] { return sumOverWorkers(proxy().stats(), "/upstream/open") == 0; },
                        2s));
}

TEST_F(PoolConfig, MaxIdleBoundsPooledConnections) {
  startProxy(1, "pool = { max_idle = 1; };");
  auto errors = runConcurrently(3, [&](size_t) {
    HttpResponse r = connect().get("/delay/300");
    if (r.status != 200) throw HarnessError("status " + std::to_string(r.status));
  });
  ASSERT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(upstream_.connectionCount(), 3u) << "the three requests were not concurrent";
  EXPECT_TRUE(waitUntil(
      [&] {
        return countEstablished(upstream_.port()) == 1 &&
               sumOverWorkers(proxy().stats(), "/upstream/open") == 1;
      },
      3s))
      << "kernel " << countEstablished(upstream_.port()) << ", poolgate "
      << sumOverWorkers(proxy().stats(), "/upstream/open");
}

TEST_F(PoolConfig, MaxConnsQueueTimeoutGives503) {
  auto release = std::make_shared<std::atomic<bool>>(false);
  auto holding = std::make_shared<std::atomic<bool>>(false);
  upstream_.setHandler(TestUpstream::holdingHandler(release, holding));
  startProxy(1, "pool = { max_conns = 1; queue_timeout = 0.3; };");
  HttpClient slow = connect();
  slow.send(serializeRequest("GET", "/hold"));
  ASSERT_TRUE(waitUntil([&] { return holding->load(); }, 5s));

  // The only connection stays busy until we release it: the 503 can only come
  // from queue_timeout.
  HttpResponse queued = connect().get("/queued");
  expectProxyError(queued, 503);
  const Json s = proxy().stats();
  EXPECT_EQ(sumOverWorkers(s, "/upstreams/0/servers/0/queue_timeouts_total"), 1u);
  EXPECT_EQ(sumOverWorkers(s, "/upstreams/0/servers/0/queued"), 0u) << "the timed-out request is still queued";
  release->store(true);
  EXPECT_EQ(slow.read().status, 200);
  EXPECT_EQ(upstream_.connectionCount(), 1u);
}

TEST_F(PoolConfig, MaxConnsWaiterGetsTheReleasedConnection) {
  startProxy(1, "pool = { max_conns = 1; queue_timeout = 5.0; };");
  HttpClient slow = connect();
  slow.send(serializeRequest("GET", "/delay/300"));
  ASSERT_TRUE(upstream_.waitForRequests(1));
  HttpResponse queued = connect().get("/queued");
  EXPECT_EQ(queued.status, 200);
  EXPECT_EQ(slow.read().status, 200);
  EXPECT_EQ(upstream_.connectionCount(), 1u) << "max_conns = 1 exceeded";
}

// The cap holds across workers: 4 workers, max_conns = 4, 64 clients. A
// sampler watches the kernel's count of connections to the upstream the
// whole time; every request must still complete (waiting, not failing).
TEST_F(PoolConfig, MaxConnsHoldsAcrossWorkersUnderLoad) {
  startProxy(4, "pool = { max_conns = 4; max_idle = 4; queue_timeout = 10.0; };");
  std::atomic<bool> done{false};
  std::atomic<size_t> peak{0};
  std::thread sampler([&] {
    while (!done) {
      // /proc/net/tcp is read in pieces while sockets come and go, so one
      // read can see a socket twice; a count must hold for two reads in a row.
      size_t now = std::min(countEstablished(upstream_.port()), countEstablished(upstream_.port()));
      size_t seen = peak.load();
      while (now > seen && !peak.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // sampling period
    }
  });
  std::atomic<int> failures{0};
  auto errors = runConcurrently(64, [&](size_t i) {
    HttpClient client = connect();
    for (int n = 0; n < 10; ++n) {
      HttpResponse r = client.get("/delay/5?c=" + std::to_string(i));
      if (r.status != 200) ++failures;
      if (r.connectionClose()) client = connect();
    }
  });
  done = true;
  sampler.join();
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(peak.load(), 4u) << "the kernel showed more upstream connections than max_conns";
  EXPECT_GE(peak.load(), 1u);
  const Json s = proxy().stats();
  EXPECT_EQ(sumOverWorkers(s, "/requests"), 640u);
  for (const Json& w : s.at("workers")) {
    const Json& server = w.at("upstreams").at(0).at("servers").at(0);
    EXPECT_EQ(server.at("queued").get<uint64_t>(), 0u);
    EXPECT_EQ(server.at("queue_timeouts_total").get<uint64_t>(), 0u);
  }
}

constexpr const char* kTwoServers = R"(
workers = 1;
listen = ( { address = "127.0.0.1:0"; } );
admin = { address = "127.0.0.1:0"; };
upstreams = ( {
  name = "app";
  servers = ( { address = "${DOWN}"; }, { address = "${UP}"; } );
  retries = 1;
  health = { max_fails = 1; fail_timeout = 30.0; };
} );
)";

TEST_F(PoolConfig, ConnectFailureMovesToNextServerAndMarksItDown) {
  ReservedPort down;
  startProxyWithConfig(kTwoServers, {{"DOWN", down.address()}, {"UP", upstream_.address()}});
  for (int i = 0; i < 6; ++i) {
    HttpResponse r = connect().get("/r/" + std::to_string(i));
    EXPECT_EQ(r.status, 200) << "request " << i;
  }
  Json s = proxy().stats();
  const Json& servers = s.at("workers").at(0).at("upstreams").at(0).at("servers");
  for (const auto& server : servers) {
    if (server.at("address") != down.address()) continue;
    EXPECT_GE(server.at("failed_total").get<uint64_t>(), 1u);
    EXPECT_EQ(server.at("healthy"), false);
  }
}

}  // namespace
}  // namespace pgtest
