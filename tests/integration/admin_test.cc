// The admin listener as its own thing: its connections counted apart from proxy
// traffic, admin.allow (403 to the others), the security headers of its answers, and
// the start-up warning for an exposed admin listener (through -t, which binds nothing).
//
// Only loopback addresses are used: a client "from elsewhere" is a client bound to
// another loopback address (127.0.0.2), which the kernel routes like 127.0.0.1.
#include <csignal>
#include <fstream>
#include <regex>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

// A config with one upstream, the admin listener on 127.0.0.1 and `adminExtra` inside
// the admin group (e.g. `allow = [ "127.0.0.1" ];`).
std::string adminConfig(const std::string& upstream, int workers, const std::string& adminExtra) {
  return "workers = " + std::to_string(workers) +
         ";\n"
         "listen = ( { address = \"127.0.0.1:0\"; } );\n"
         "admin = { address = \"127.0.0.1:0\"; " +
         adminExtra +
         " };\n"
         "upstreams = ( { name = \"app\"; servers = ( { address = \"" +
         upstream + "\"; } ); } );\n";
}

// GET `target` on the admin port from the local address `source`.
HttpResponse adminGetFrom(const Poolgate& proxy, const std::string& source, std::string_view target,
                          std::string_view method = "GET") {
  HttpClient client("127.0.0.1", proxy.adminPort(), kIoTimeout, source);
  return client.request(method, target, {{"Connection", "close"}});
}

uint64_t adminSum(const Json& stats, const char* field) {
  return sumOverWorkers(stats, std::string("/admin/") + field);
}

void expectSecurityHeaders(const HttpResponse& r, const std::string& what) {
  EXPECT_EQ(r.header("X-Content-Type-Options").value_or("(none)"), "nosniff") << what;
  EXPECT_EQ(r.header("X-Frame-Options").value_or("(none)"), "DENY") << what;
  const std::string csp = r.header("Content-Security-Policy").value_or("");
  EXPECT_EQ(csp.rfind("default-src 'none';", 0), 0u) << what << ": " << csp;
  EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << what << ": " << csp;
  EXPECT_EQ(csp.find("unsafe"), std::string::npos) << what << ": " << csp;
  EXPECT_EQ(countHeader(r.headers, "Content-Security-Policy"), 1u) << what;
}

// ------------------------------------------------------------------ counting

class AdminCounts : public ProxyTest {};

// One worker: an admin connection is closed in the same event that sent its answer,
// so the next request, served by the same loop, finds it gone.
TEST_F(AdminCounts, StatsPollsAreNotProxyClients) {
  startProxy(1);
  // start() itself polled /health and /stats: all of it admin traffic.
  Json first = proxy().stats();
  const uint64_t base = adminSum(first, "accepted");
  EXPECT_GE(base, 2u);
  for (int call = 0; call < 3; ++call) {
    Json s = call == 0 ? first : proxy().stats();
    const Json& totals = s.at("totals");
    EXPECT_EQ(totals.at("accepted"), 0) << "call " << call << ": " << totals.dump();
    EXPECT_EQ(totals.at("clients_active"), 0) << "call " << call << ": " << totals.dump();
    EXPECT_EQ(totals.at("clients_idle"), 0) << "call " << call << ": " << totals.dump();
    EXPECT_EQ(totals.at("requests"), 0) << "call " << call;
    EXPECT_EQ(sumOverWorkers(s, "/accept_wakeups"), 0u) << "call " << call;
    // The admin figures: each call is one more accepted connection, and the only
    // one open is the one asking.
    EXPECT_EQ(adminSum(s, "accepted"), base + static_cast<uint64_t>(call)) << "call " << call;
    EXPECT_EQ(adminSum(s, "active"), 1u) << "call " << call;
    EXPECT_EQ(adminSum(s, "denied"), 0u) << "call " << call;
    EXPECT_EQ(totals.at("admin_accepted"), adminSum(s, "accepted"));
    EXPECT_EQ(totals.at("admin_active"), 1);
    for (const auto& w : s.at("workers")) {
      ASSERT_TRUE(w.contains("admin") && w.at("admin").is_object()) << w.dump();
      EXPECT_TRUE(w.at("clients").at("active") == 0 && w.at("clients").at("idle") == 0) << w.dump();
    }
  }

  // Proxy traffic shows in the client figures, and not in the admin ones.
  HttpClient client = connect();
  ASSERT_EQ(client.get("/x").status, 200);
  Json after = proxy().stats();
  EXPECT_EQ(after.at("totals").at("accepted"), 1) << after.at("totals").dump();
  EXPECT_EQ(after.at("totals").at("requests"), 1);
  EXPECT_EQ(after.at("totals").at("clients_idle"), 1);  // our keep-alive connection
  EXPECT_EQ(after.at("totals").at("clients_active"), 0);
  EXPECT_EQ(adminSum(after, "accepted"), base + 3);
  EXPECT_EQ(adminSum(after, "active"), 1u);

  // /metrics has the same split; its own connection is the one more accepted.
  HttpResponse metrics = proxy().admin("/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(metricSum(metrics.body, "poolgate_worker_accepted_total"), 1);
  EXPECT_EQ(metricSum(metrics.body, "poolgate_worker_admin_accepted_total"), static_cast<double>(base + 4));
  EXPECT_EQ(metricSum(metrics.body, "poolgate_worker_admin_connections"), 1);
  EXPECT_EQ(metricSum(metrics.body, "poolgate_worker_admin_denied_total"), 0);
}

TEST_F(AdminCounts, KeptAliveAdminConnectionIsAdminActiveNotClientIdle) {
  startProxy(1);
  std::optional<HttpClient> admin;
  admin.emplace(proxy().adminPort());
  ASSERT_EQ(admin->get("/health").status, 200);  // kept alive
  Json s = proxy().stats();
  EXPECT_EQ(adminSum(s, "active"), 2u) << s.at("workers").dump();
  EXPECT_EQ(s.at("totals").at("clients_idle"), 0);
  EXPECT_EQ(s.at("totals").at("clients_active"), 0);
  admin.reset();  // closes it
  EXPECT_TRUE(waitUntil([&] { return adminSum(proxy().stats(), "active") == 1; }, 5s));
}

// ------------------------------------------------------------------ admin.allow

class AdminAllow : public ::testing::Test {
 protected:
  void start(int workers, const std::string& adminExtra, bool reachable = true) {
    proxy_ = std::make_unique<Poolgate>(adminConfig(upstream_.address(), workers, adminExtra));
    if (reachable) {
      proxy_->start();
    } else {
      proxy_->startListening();
    }
  }
  TestUpstream upstream_;
  std::unique_ptr<Poolgate> proxy_;
};

void expectForbidden(const HttpResponse& r, const std::string& what) {
  expectProxyError(r, 403);
  EXPECT_LT(r.body.size(), 64u) << what << ": " << r.body;
  EXPECT_TRUE(r.connectionClose()) << what << ": no Connection: close";
  EXPECT_EQ(r.body.find("workers"), std::string::npos) << what << ": stats leaked";
  expectSecurityHeaders(r, what);
}

TEST_F(AdminAllow, WithoutAllowLoopbackClientsAreServed) {
  start(1, "");
  EXPECT_EQ(adminGetFrom(*proxy_, "127.0.0.1", "/stats").status, 200);
  EXPECT_EQ(adminGetFrom(*proxy_, "127.0.0.2", "/stats").status, 200);  // all of 127/8
  EXPECT_EQ(adminGetFrom(*proxy_, "127.0.0.77", "/health").status, 200);
  EXPECT_EQ(adminSum(proxy_->stats(), "denied"), 0u);
}

TEST_F(AdminAllow, OnlyOtherNetworksListedRefusesLoopback) {
  start(2, "allow = [ \"10.0.0.0/8\", \"fd00::/8\" ];", /*reachable=*/false);
  for (const char* path : {"/stats", "/metrics", "/health", "/", "/nowhere"}) {
    HttpResponse r = adminGetFrom(*proxy_, "127.0.0.1", path);
    expectForbidden(r, path);
  }
  // Not 405 either: the method is not looked at.
  expectForbidden(adminGetFrom(*proxy_, "127.0.0.1", "/stats", "POST"), "POST");
  // The server closes the connection after the 403, even when asked to keep it.
  HttpClient client("127.0.0.1", proxy_->adminPort());
  HttpResponse r = client.get("/stats");
  expectForbidden(r, "keep-alive request");
  EXPECT_TRUE(client.waitClosed(5s)) << "the connection stayed open after the 403";
  // The proxy listener is not affected.
  EXPECT_EQ(httpGet(proxy_->proxyPort(), "/").status, 200);
}

TEST_F(AdminAllow, ListReplacesTheDefaultAndCidrBoundsHold) {
  // 127.0.0.0/31 is 127.0.0.0 and 127.0.0.1; 127.0.0.2 is just outside.
  start(1, "allow = ( \"127.0.0.0/31\", \"127.0.0.9\" );");
  EXPECT_EQ(adminGetFrom(*proxy_, "127.0.0.1", "/stats").status, 200);
  EXPECT_EQ(adminGetFrom(*proxy_, "127.0.0.9", "/health").status, 200);
  expectForbidden(adminGetFrom(*proxy_, "127.0.0.2", "/stats"), "127.0.0.2");
  expectForbidden(adminGetFrom(*proxy_, "127.0.0.8", "/"), "127.0.0.8");
  // Counted: accepted (denied ones included) and denied, per worker.
  Json s = proxy_->stats();
  EXPECT_EQ(adminSum(s, "denied"), 2u) << s.at("workers").dump();
  EXPECT_EQ(s.at("totals").at("admin_denied"), 2);
  EXPECT_EQ(s.at("totals").at("accepted"), 0);
  HttpResponse metrics = adminGetFrom(*proxy_, "127.0.0.1", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(metricSum(metrics.body, "poolgate_worker_admin_denied_total"), 2);
}

// A reload with another list: the new generation's workers apply it, on the same admin
// socket (the port the test read at start keeps answering), and a bad list leaves the
// running one in force.
TEST_F(AdminAllow, ReloadAppliesTheNewList) {
  start(2, "allow = [ \"127.0.0.1\" ];");
  expectForbidden(adminGetFrom(*proxy_, "127.0.0.2", "/stats"), "before the reload");

  std::ofstream(proxy_->configPath()) << adminConfig(upstream_.address(), 2, "allow = [ \"127.0.0.1\", \"127.0.0.2/32\" ];");
  proxy_->signal(SIGHUP);
  ASSERT_TRUE(waitUntil([&] { return proxy_->stats().at("generation") == 2; }, 10s)) << proxy_->logTail();
  // Only generation 2 left (the generation may be counted before its workers are
  // listed: "2 running" alone could still be the old ones).
  ASSERT_TRUE(waitUntil(
      [&] {
        const Json workers = proxy_->stats().at("workers");
        size_t current = 0;
        for (const auto& w : workers) current += w.at("generation") == 2 && w.at("state") == "running" ? 1 : 0;
        return workers.size() == 2 && current == 2;
      },
      15s))
      << "the old generation did not drain away";
  EXPECT_EQ(adminGetFrom(*proxy_, "127.0.0.2", "/stats").status, 200);
  expectForbidden(adminGetFrom(*proxy_, "127.0.0.3", "/stats"), "127.0.0.3 after the reload");

  std::ofstream(proxy_->configPath()) << adminConfig(upstream_.address(), 2, "allow = [ \"127.0.0.300\" ];");
  proxy_->signal(SIGHUP);
  ASSERT_TRUE(waitUntil([&] { return proxy_->log().find("admin.allow[0]") != std::string::npos; }, 10s))
      << proxy_->logTail();
  EXPECT_EQ(proxy_->stats().at("generation"), 2);
  EXPECT_EQ(adminGetFrom(*proxy_, "127.0.0.2", "/health").status, 200);
}

// ------------------------------------------------------------------ headers

class AdminHeaders : public ProxyTest {};

TEST_F(AdminHeaders, EveryAnswerForbidsSniffingFramingAndLoading) {
  startProxy(1);
  for (const char* path : {"/stats", "/metrics", "/health", "/nowhere"}) {
    HttpResponse r = proxy().admin(path);
    expectSecurityHeaders(r, path);
    // Nothing on these pages may load or run anything.
    EXPECT_EQ(r.header("Content-Security-Policy").value_or(""), "default-src 'none'; frame-ancestors 'none'")
        << path;
  }
  HttpClient client(proxy().adminPort());
  HttpResponse wrongMethod = client.request("POST", "/stats", {{"Connection", "close"}}, "x",
                                            Framing::kContentLength);
  EXPECT_EQ(wrongMethod.status, 405);
  expectSecurityHeaders(wrongMethod, "405");

  // The dashboard: its own inline script and style by hash, fetch() to its origin.
  HttpResponse page = proxy().admin("/");
  ASSERT_EQ(page.status, 200);
  expectSecurityHeaders(page, "/");
  const std::string csp = page.header("Content-Security-Policy").value_or("");
  EXPECT_TRUE(std::regex_search(csp, std::regex("script-src 'sha256-[A-Za-z0-9+/]{43}=';"))) << csp;
  EXPECT_TRUE(std::regex_search(csp, std::regex("style-src 'sha256-[A-Za-z0-9+/]{43}=';"))) << csp;
  EXPECT_NE(csp.find("connect-src 'self'"), std::string::npos) << csp;
  // The same policy on every answer (computed once, not per request).
  EXPECT_EQ(proxy().admin("/").header("Content-Security-Policy").value_or(""), csp);

  // Proxied answers are the application's business: none of these are added.
  HttpResponse proxied = httpGet(proxy().proxyPort(), "/");
  EXPECT_FALSE(proxied.has("Content-Security-Policy"));
  EXPECT_FALSE(proxied.has("X-Frame-Options"));
}

// ------------------------------------------------------------------ the warning

class AdminWarning : public ::testing::Test {
 protected:
  CommandResult check(const std::string& admin) {
    const std::string path = dir_.write(
        "poolgate.conf", "workers = 1;\n" + admin +
                             "\nupstreams = ( { name = \"app\"; servers = ( { address = \"127.0.0.1:5000\"; } ); } );\n");
    return runCommand({POOLGATE_BINARY, "-t", "-c", path});
  }
  TempDir dir_;
};

// -t reads the configuration and binds nothing, so a non-loopback address is safe here.
TEST_F(AdminWarning, NonLoopbackAdminWithoutAllowIsWarnedAbout) {
  CommandResult r = check("admin = { address = \"*:9901\"; };");
  EXPECT_EQ(r.status.code(), 0) << r.err;
  EXPECT_NE(r.out.find("configuration ok"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("warning: " + dir_.file("poolgate.conf") + ":2: admin.address:"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("not a loopback address"), std::string::npos) << r.err;

  for (const char* quiet : {"admin = { address = \"127.0.0.1:9901\"; };",
                            "admin = { address = \"[::1]:9901\"; };",
                            "admin = { address = \"*:9901\"; allow = [ \"10.0.0.0/8\" ]; };"}) {
    CommandResult ok = check(quiet);
    EXPECT_EQ(ok.status.code(), 0) << quiet << "\n" << ok.err;
    EXPECT_EQ(ok.err.find("warning"), std::string::npos) << quiet << "\n" << ok.err;
  }
}

TEST_F(AdminWarning, BadAllowEntryIsAnErrorWithFileLineAndKey) {
  CommandResult r = check("admin = { address = \"127.0.0.1:9901\";\n  allow = [ \"::1\", \"10.0.0.1/8\" ]; };");
  EXPECT_EQ(r.status.code(), 1) << r.out << r.err;
  EXPECT_NE(r.err.find(dir_.file("poolgate.conf") + ":3: admin.allow[1]: bad address or CIDR range \"10.0.0.1/8\""),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("configuration has errors"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace pgtest
