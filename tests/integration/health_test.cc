// Upstream health shared by all workers: passive failures counted once for the
// whole instance, active checks run by the master (not once per worker), and
// the verdict visible in every worker's /stats.
#include <atomic>
#include <memory>
#include <string>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

// Every worker's /stats entry for `address`: (healthy, check) pairs.
std::vector<Json> serverEntries(const Json& stats, const std::string& address) {
  std::vector<Json> entries;
  for (const Json& worker : stats.at("workers")) {
    for (const Json& upstream : worker.at("upstreams")) {
      for (const Json& server : upstream.at("servers")) {
        if (server.at("address") == address) entries.push_back(server);
      }
    }
  }
  return entries;
}

bool allWorkersSay(const Poolgate& proxy, const std::string& address, bool healthy, size_t workers) {
  auto entries = serverEntries(proxy.stats(), address);
  if (entries.size() != workers) return false;
  for (const Json& entry : entries) {
    if (entry.at("healthy").get<bool>() != healthy) return false;
  }
  return true;
}

uint64_t sumOverServers(const Json& stats, const std::string& address, const std::string& field) {
  uint64_t sum = 0;
  for (const Json& entry : serverEntries(stats, address)) sum += entry.at(field).get<uint64_t>();
  return sum;
}

class Health : public ProxyTest {};

// max_fails = 1: the first connect failure, in whichever worker, takes the
// address out for every worker. With per-worker health each of the four
// workers would try (and fail) once; shared, the instance tries once.
TEST_F(Health, PassiveFailureMarksTheServerDownForAllWorkers) {
  ReservedPort dead;
  const std::string config =
      "workers = 4;\n"
      "listen = ( { address = \"127.0.0.1:0\"; } );\n"
      "admin = { address = \"127.0.0.1:0\"; };\n"
      "upstreams = ( { name = \"app\"; retries = 1;\n"
      "  servers = ( { address = \"" + dead.address() + "\"; }, { address = \"" + upstream_.address() + "\"; } );\n"
      "  health = { max_fails = 1; fail_timeout = 60.0; }; } );\n";
  startProxyWithConfig(config, {});

  // Fresh connections, one after another: they land on different workers.
  for (int i = 0; i < 24; ++i) {
    HttpResponse r = httpGet(proxy().proxyPort(), "/passive/" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << "request " << i << " (a failed connect is retried on the other server)";
  }
  Json stats = proxy().stats();
  EXPECT_EQ(sumOverServers(stats, dead.address(), "fails_total"), 1u)
      << "the dead server was tried more than once: health is not shared";
  EXPECT_EQ(sumOverServers(stats, dead.address(), "retries_total"), 1u);
  EXPECT_TRUE(allWorkersSay(proxy(), dead.address(), false, 4)) << stats.dump(1);
  EXPECT_TRUE(allWorkersSay(proxy(), upstream_.address(), true, 4));
  EXPECT_EQ(upstream_.requestCount(), 24u);
}

// The active check takes even a lone server out (passive health never does):
// requests get 503 at once, without any attempt reaching the upstream, until
// the check passes again.
TEST_F(Health, ActiveCheckTakesTheServerOutAndBack) {
  auto checkStatus = std::make_shared<std::atomic<int>>(200);
  auto proxied = std::make_shared<std::atomic<int>>(0);
  auto standard = TestUpstream::standardHandler();
  upstream_.setHandler([=](const UpstreamRequest& req, UpstreamConnection& conn) {
    if (req.path() == "/healthz") {
      conn.respond(checkStatus->load(), "check\n", {{"Connection", "close"}});
      return;
    }
    ++*proxied;
    standard(req, conn);
  });
  startProxy(2, "health = { check_path = \"/healthz\"; check_interval = 0.2; };");
  const std::string address = upstream_.address();
  ASSERT_TRUE(waitUntil([&] { return serverEntries(proxy().stats(), address).at(0).at("check") == "passing"; }, 5s));
  EXPECT_EQ(connect().get("/before").status, 200);

  checkStatus->store(500);
  ASSERT_TRUE(waitUntil([&] { return allWorkersSay(proxy(), address, false, 2); }, 5s))
      << "the failing check did not take the server out in every worker";
  const int before = proxied->load();
  for (int i = 0; i < 4; ++i) {
    HttpResponse r = connect().get("/while-failing");
    expectProxyError(r, 503);
  }
  EXPECT_EQ(proxied->load(), before) << "a request was sent to a server failing its check";
  EXPECT_NE(proxy().log().find("fails its health check (GET /healthz: status 500)"), std::string::npos)
      << proxy().logTail();

  checkStatus->store(200);
  ASSERT_TRUE(waitUntil([&] { return allWorkersSay(proxy(), address, true, 2); }, 5s));
  EXPECT_EQ(connect().get("/after").status, 200);
  EXPECT_NE(proxy().log().find("passes its health check again"), std::string::npos);
}

// One checker for the instance: the upstream sees exactly the checks the
// shared counter reports (four workers checking would make it about four times as many).
TEST_F(Health, ChecksRunOncePerInstanceNotPerWorker) {
  auto checks = std::make_shared<std::atomic<int>>(0);
  auto standard = TestUpstream::standardHandler();
  upstream_.setHandler([=](const UpstreamRequest& req, UpstreamConnection& conn) {
    if (req.path() == "/healthz") {
      ++*checks;
      EXPECT_EQ(req.header("User-Agent").value_or(""), "poolgate-health-check");
      conn.respond(204, "", {{"Connection", "close"}});
      return;
    }
    standard(req, conn);
  });
  startProxy(4, "health = { check_path = \"/healthz\"; check_interval = 0.1; };");
  ASSERT_TRUE(waitUntil([&] { return checks->load() >= 10; }, 10s));
  // checks_total is counted by the checker; every worker shows the same figure.
  Json stats = proxy().stats();
  auto entries = serverEntries(stats, upstream_.address());
  ASSERT_EQ(entries.size(), 4u);
  const int seen = checks->load();
  ASSERT_TRUE(waitUntil([&] {
    auto now = serverEntries(proxy().stats(), upstream_.address());
    return now.at(0).contains("checks_total") && now.at(0).at("checks_total").get<int>() >= seen;
  }, 5s)) << stats.dump(1);
  for (const Json& entry : serverEntries(proxy().stats(), upstream_.address())) {
    const int counted = entry.at("checks_total").get<int>();
    EXPECT_LE(counted, checks->load()) << "more checks counted than the upstream received";
    EXPECT_GE(counted + 1, checks->load()) << "the upstream received more checks than the one checker made";
  }
}

}  // namespace
}  // namespace pgtest
