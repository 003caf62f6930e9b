// Upstream server names resolved with c-ares against a real DNS server on loopback
// (dnsmasq on an ephemeral port, its records changed during the tests).
//
// What these tests assume of poolgate (README "Health checks and DNS" and the `resolver`
// and `dns.refresh` keys of "Every key and its default"):
//   - `resolver = { servers = ( "127.0.0.1:PORT" ); timeout = 1.0; };` sends every query
//     to that server;
//   - a server `address = "NAME:PORT"` becomes one server per A/AAAA record, each with the
//     configured weight, listed in /stats as its own entry of upstreams[].servers[] with
//     address "127.0.0.2:PORT" (IPv6: "[::1]:PORT");
//   - re-resolved every `dns = { refresh = S; }` (S > 0) or at the record TTL (S = 0);
//   - a failed resolution keeps the last good addresses; a name that never resolved gives
//     503 and a log line naming it;
//   - connections to an address that dropped out finish their request, then are closed.
//
// The DnsHarness tests check the harness itself (dnsmasq, the query client, upstreams on
// other loopback addresses) without poolgate.
#include <algorithm>
#include <cctype>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

// ---------------------------------------------------------------------------------------
// The harness itself

TEST(DnsHarness, DnsmasqAnswersAndFollowsSetRecords) {
  Dnsmasq dns({{"app.test", {"127.0.0.2", "127.0.0.3", "::1"}}}, 1);
  ASSERT_NE(dns.port(), 0);
  EXPECT_EQ(dns.address(), "127.0.0.1:" + std::to_string(dns.port()));

  DnsAnswer a = dnsQuery(dns.port(), "app.test");
  EXPECT_EQ(a.rcode, 0);
  EXPECT_EQ(a.addresses, (std::vector<std::string>{"127.0.0.2", "127.0.0.3"}));
  EXPECT_EQ(a.ttl, 1u);
  DnsAnswer aaaa = dnsQuery(dns.port(), "app.test", /*aaaa=*/true);
  EXPECT_EQ(aaaa.rcode, 0);
  EXPECT_EQ(aaaa.addresses, (std::vector<std::string>{"::1"}));
  EXPECT_EQ(dnsQuery(dns.port(), "missing.test").rcode, 3) << "an unknown name is NXDOMAIN";
  EXPECT_EQ(dnsQuery(dns.port(), "example.com").rcode, 3) << "nothing is forwarded";

  dns.setRecords({{"app.test", {"127.0.0.3"}}, {"other.test", {"127.0.0.4"}}});
  EXPECT_EQ(dnsQuery(dns.port(), "app.test").addresses, (std::vector<std::string>{"127.0.0.3"}));
  EXPECT_TRUE(dnsQuery(dns.port(), "app.test", true).addresses.empty());
  EXPECT_EQ(dnsQuery(dns.port(), "other.test").addresses,
            (std::vector<std::string>{"127.0.0.4"}));

  dns.setRecords({{"other.test", {"127.0.0.4"}}});
  EXPECT_EQ(dnsQuery(dns.port(), "app.test").rcode, 3) << "a dropped name is NXDOMAIN";

  dns.stop();
  EXPECT_FALSE(dns.running());
  EXPECT_THROW(dnsQuery(dns.port(), "other.test", false, 300ms), HarnessError)
      << "a stopped server must not answer";
}

TEST(DnsHarness, UpstreamsShareAPortOnOtherLoopbackAddresses) {
  TestUpstream first(TestUpstream::standardHandler(), "127.0.0.2");
  TestUpstream second(TestUpstream::standardHandler(), "127.0.0.3", first.port());
  ASSERT_EQ(first.port(), second.port());
  EXPECT_EQ(first.address(), "127.0.0.2:" + std::to_string(first.port()));

  HttpClient toFirst("127.0.0.2", first.port());
  HttpClient toSecond("127.0.0.3", first.port());
  EXPECT_EQ(toFirst.get("/one").status, 200);
  EXPECT_EQ(toSecond.get("/two").status, 200);
  EXPECT_EQ(first.requestCount(), 1u);
  EXPECT_EQ(second.requestCount(), 1u);
  EXPECT_EQ(countEstablished("127.0.0.2", first.port()), 1u);
  EXPECT_EQ(countEstablished("127.0.0.3", first.port()), 1u);
  EXPECT_EQ(countEstablished(first.port()), 2u);
  EXPECT_THROW(TestUpstream(TestUpstream::standardHandler(), "127.0.0.2", first.port()),
               HarnessError)
      << "the same address and port twice";

  TestUpstream v6(TestUpstream::standardHandler(), "::1", first.port());
  EXPECT_EQ(v6.address(), "[::1]:" + std::to_string(first.port()));
  HttpClient toV6("::1", first.port());
  EXPECT_EQ(toV6.get("/six").status, 200);
  EXPECT_EQ(countEstablished("::1", first.port()), 1u);
  EXPECT_EQ(countEstablished("127.0.0.2", first.port()), 1u);
}

// ---------------------------------------------------------------------------------------
// poolgate with server names

constexpr char kName[] = "app.test";
const std::string kAddrA = "127.0.0.2";
const std::string kAddrB = "127.0.0.3";

std::string toLower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Appends a status to a list kept short for a failure message.
void note(std::string& list, int status) {
  if (list.size() < 120) list += " " + std::to_string(status);
  else if (list.back() != '.') list += " ...";
}

class Dns : public ::testing::Test {
 protected:
  void TearDown() override {
    if (!HasFailure()) return;
    for (const TestUpstream* u : {a_.get(), b_.get()}) {
      if (!u) continue;
      std::cerr << "---- upstream " << u->address() << ": " << u->connectionCount()
                << " connection(s), " << u->requestCount() << " request(s)\n";
      for (const auto& e : u->errors()) std::cerr << "  error: " << e << "\n";
    }
    if (proxy_ && proxy_->running()) {
      try {
        std::cerr << "---- /stats upstreams ----\n";
        const Json stats = proxy_->stats();  // not a temporary in the range-for
        for (const auto& w : stats.at("workers"))
          std::cerr << "  worker " << w.value("slot", -1) << ": " << w.at("upstreams").dump()
                    << "\n";
      } catch (const std::exception& e) {
        std::cerr << "  (" << e.what() << ")\n";
      }
    }
  }

  // Two upstreams on one port: a_ on 127.0.0.2 and b_ on 127.0.0.3. The port is the
  // kernel's choice for a_; in the unlikely case it is taken on 127.0.0.3, try again.
  void makeUpstreams(UpstreamHandler forA = TestUpstream::standardHandler(),
                     UpstreamHandler forB = TestUpstream::standardHandler()) {
    std::string lastError;
    for (int attempt = 0; attempt < 10; ++attempt) {
      a_ = std::make_unique<TestUpstream>(forA, kAddrA);
      try {
        b_ = std::make_unique<TestUpstream>(forB, kAddrB, a_->port());
        return;
      } catch (const HarnessError& e) {
        lastError = e.what();
        a_.reset();
      }
    }
    FAIL() << "could not bind two upstreams on one port: " << lastError;
  }

  uint16_t port() const { return a_->port(); }
  std::string addressOf(const std::string& ip) const {
    return ip + ":" + std::to_string(port());
  }

  // One upstream `app` whose server is `name`:PORT, resolved through dns_.
  // `servers` replaces the whole servers list when set.
  std::string config(int workers, const std::string& name = kName,
                     const std::string& dnsGroup = "dns = { refresh = 0.2; };",
                     const std::string& servers = "") const {
    std::string list = servers.empty()
                           ? "( { address = \"" + name + ":" + std::to_string(port()) +
                                 "\"; weight = 1; } )"
                           : servers;
    return "workers = " + std::to_string(workers) +
           ";\n"
           "listen = ( { address = \"127.0.0.1:0\"; } );\n"
           "admin = { address = \"127.0.0.1:0\"; };\n"
           "resolver = { servers = ( \"" +
           dns_->address() +
           "\" ); timeout = 1.0; };\n"
           "upstreams = ( {\n"
           "  name = \"app\";\n"
           "  servers = " +
           list + ";\n  " + dnsGroup +
           "\n"
           "} );\n";
  }

  void startProxy(const std::string& configText) {
    proxy_ = std::make_unique<Poolgate>(configText);
    proxy_->start();
  }

  // GET on a fresh client connection (so that, with several workers, requests spread
  // over them). Returns which upstream received it: 'a', 'b', or '-' for neither
  // (e.g. a 503), with the response.
  std::pair<char, HttpResponse> getAndAttribute(const std::string& target = "/dns") {
    size_t beforeA = a_->requestCount(), beforeB = b_ ? b_->requestCount() : 0;
    HttpResponse r = httpGet(proxy_->proxyPort(), target);
    // An upstream records a request before answering it, so the counts are final here.
    bool toA = a_->requestCount() > beforeA, toB = b_ && b_->requestCount() > beforeB;
    return {toA && !toB ? 'a' : toB && !toA ? 'b' : '-', std::move(r)};
  }

  // Sends requests until both upstreams have received one (bounded): the resolution
  // has reached the worker(s). Every response must be a 200 once the first one is.
  void awaitBothUsed(Millis timeout = 5s) {
    bool seen200 = false;
    std::string failures;
    bool both = waitUntil(
        [&] {
          auto [who, r] = getAndAttribute("/warmup");
          if (r.status == 200) seen200 = true;
          else if (seen200) note(failures, r.status);
          return a_->requestCount() > 0 && b_->requestCount() > 0;
        },
        timeout, 20ms);
    ASSERT_TRUE(both) << kName << " resolves to " << kAddrA << " and " << kAddrB
                      << " but within " << timeout.count() << " ms the upstreams got "
                      << a_->requestCount() << " and " << b_->requestCount()
                      << " requests (is the name resolved, and does each A record become a "
                         "server?)";
    EXPECT_TRUE(failures.empty()) << "non-200 answers after the first 200:" << failures;
  }

  // Every address listed under upstream `app` in a worker's /stats.
  static std::vector<std::string> statsAddresses(const Json& worker) {
    std::vector<std::string> out;
    for (const auto& u : worker.at("upstreams"))
      if (u.at("name") == "app")
        for (const auto& s : u.at("servers")) out.push_back(s.at("address").get<std::string>());
    return out;
  }

  std::unique_ptr<Dnsmasq> dns_;
  std::unique_ptr<TestUpstream> a_, b_;
  std::unique_ptr<Poolgate> proxy_;  // declared last: stopped first
};

// (a) Two A records: two servers, both used, both listed in /stats.
TEST_F(Dns, EachAddressOfANameBecomesAServer) {
  ASSERT_NO_FATAL_FAILURE(makeUpstreams());
  dns_ = std::make_unique<Dnsmasq>(Dnsmasq::Records{{kName, {kAddrA, kAddrB}}});
  startProxy(config(2));
  ASSERT_NO_FATAL_FAILURE(awaitBothUsed());

  // One keep-alive client: one worker, which shares the requests between the two servers.
  size_t startA = a_->requestCount(), startB = b_->requestCount();
  HttpClient client(proxy_->proxyPort());
  for (int i = 0; i < 20; ++i) ASSERT_EQ(client.get("/spread").status, 200) << "request " << i;
  size_t toA = a_->requestCount() - startA, toB = b_->requestCount() - startB;
  EXPECT_EQ(toA + toB, 20u);
  EXPECT_GE(toA, 5u) << "20 requests, equal weights: " << toA << " to " << kAddrA << ", " << toB
                     << " to " << kAddrB;
  EXPECT_GE(toB, 5u) << "20 requests, equal weights: " << toA << " to " << kAddrA << ", " << toB
                     << " to " << kAddrB;

  // Every worker lists each resolved address as a server of its own.
  Json stats = proxy_->stats();
  ASSERT_EQ(stats.at("workers").size(), 2u);
  for (const auto& w : stats.at("workers")) {
    auto listed = statsAddresses(w);
    for (const std::string& want : {addressOf(kAddrA), addressOf(kAddrB)})
      EXPECT_NE(std::find(listed.begin(), listed.end(), want), listed.end())
          << "worker " << w.value("slot", -1) << ": /stats upstreams[app].servers[] has no entry "
          << "with address \"" << want << "\"; it lists " << Json(listed).dump();
  }
}

// (b) An address dropped from the records: new requests avoid it at once (within a bounded
// wait), the request in flight on it completes, and then its connections are closed.
TEST_F(Dns, DroppedAddressIsDrainedNotCut) {
  auto release = std::make_shared<std::atomic<bool>>(false);
  auto holding = std::make_shared<std::atomic<bool>>(false);
  ASSERT_NO_FATAL_FAILURE(makeUpstreams(TestUpstream::standardHandler(),
                                        TestUpstream::holdingHandler(release, holding)));
  struct Releaser {  // never leave the upstream thread holding on a failed assertion
    std::shared_ptr<std::atomic<bool>> flag;
    ~Releaser() { *flag = true; }
  } releaser{release};
  dns_ = std::make_unique<Dnsmasq>(Dnsmasq::Records{{kName, {kAddrA, kAddrB}}});
  startProxy(config(2));
  ASSERT_NO_FATAL_FAILURE(awaitBothUsed());
  for (int i = 0; i < 16; ++i) ASSERT_EQ(getAndAttribute("/fill").second.status, 200);
  ASSERT_GT(countEstablished(kAddrB, port()), 0u)
      << "no pooled connection to " << kAddrB << " before the drop: nothing to drain";

  // A /hold request in flight on B. Requests that land on A are answered at once.
  HttpClient held(proxy_->proxyPort());
  bool onB = false;
  for (int attempt = 0; attempt < 20 && !onB; ++attempt) {
    HttpClient c(proxy_->proxyPort());
    size_t beforeA = a_->requestCount();
    c.send(serializeRequest("GET", "/hold"));
    ASSERT_TRUE(waitUntil([&] { return *holding || a_->requestCount() > beforeA; }, 5s))
        << "a /hold request reached neither upstream";
    if (*holding) {
      held = std::move(c);
      onB = true;
    } else {
      ASSERT_EQ(c.read().status, 200);
    }
  }
  ASSERT_TRUE(onB) << "20 requests, none balanced to " << kAddrB;

  dns_->setRecords({{kName, {kAddrA}}});

  // Bounded: once 10 requests in a row (fresh connections, so every worker) went to A,
  // the drop has taken effect. Every one of them must succeed meanwhile.
  size_t streak = 0;
  std::string failures;
  bool dropped = waitUntil(
      [&] {
        auto [who, r] = getAndAttribute("/after-drop");
        if (r.status != 200) note(failures, r.status);
        streak = who == 'a' ? streak + 1 : 0;
        return streak >= 10;
      },
      5s, 10ms);
  ASSERT_TRUE(dropped) << kAddrB << " dropped from the records (refresh 0.2 s, TTL 1 s), but "
                       << "5 s later requests still reached it";
  EXPECT_TRUE(failures.empty()) << "requests failed while " << kAddrB << " dropped out:"
                                << failures;
  size_t bBefore = b_->requestCount();
  for (int i = 0; i < 20; ++i) {
    auto [who, r] = getAndAttribute("/only-a");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(who, 'a') << "request " << i << " after the drop went elsewhere than " << kAddrA;
  }
  EXPECT_EQ(b_->requestCount(), bBefore) << kAddrB << " got requests after it dropped out";

  // The held request was not cut: it completes with the upstream's answer.
  EXPECT_TRUE(*holding);
  *release = true;
  HttpResponse r = held.read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "released") << "the in-flight request on the dropped address was cut";
  long long heldConnection = r.upstreamConnection();
  ASSERT_GT(heldConnection, 0);
  EXPECT_TRUE(b_->waitClosedByPeer(static_cast<uint64_t>(heldConnection), 5s))
      << "poolgate kept (pooled) its connection to the dropped " << kAddrB
      << " after the request on it completed";
  EXPECT_TRUE(waitUntil([&] { return countEstablished(kAddrB, port()) == 0; }, 5s))
      << countEstablished(kAddrB, port()) << " connection(s) to the dropped " << kAddrB
      << " still open: its pooled idle connections were not drained";
  EXPECT_GT(countEstablished(kAddrA, port()), 0u)
      << "the pooled connections to " << kAddrA << ", still in the records, were closed too";
}

// (b') The address changes altogether: requests move to the new one.
TEST_F(Dns, ChangedAddressIsFollowed) {
  ASSERT_NO_FATAL_FAILURE(makeUpstreams());
  dns_ = std::make_unique<Dnsmasq>(Dnsmasq::Records{{kName, {kAddrA}}});
  startProxy(config(1));
  ASSERT_TRUE(waitUntil([&] { return getAndAttribute().second.status == 200; }, 5s))
      << kName << " -> " << kAddrA << " never answered";
  EXPECT_EQ(b_->requestCount(), 0u);

  dns_->setRecords({{kName, {kAddrB}}});
  std::string failures;
  bool moved = waitUntil(
      [&] {
        auto [who, r] = getAndAttribute("/moving");
        if (r.status != 200) note(failures, r.status);
        return who == 'b';
      },
      5s, 10ms);
  ASSERT_TRUE(moved) << kName << " now resolves to " << kAddrB << " only, but 5 s later no "
                     << "request had reached it";
  EXPECT_TRUE(failures.empty()) << "requests failed while the address changed:" << failures;
  for (int i = 0; i < 10; ++i) {
    auto [who, r] = getAndAttribute("/moved");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(who, 'b') << "request " << i << " went to the old address";
  }
  EXPECT_TRUE(waitUntil([&] { return countEstablished(kAddrA, port()) == 0; }, 5s))
      << "connections to the old address " << kAddrA << " still open";
}

// (b'') With dns.refresh = 0 the record TTL (1 s here) drives re-resolution.
TEST_F(Dns, RecordTtlDrivesRefreshWhenRefreshIsZero) {
  ASSERT_NO_FATAL_FAILURE(makeUpstreams());
  dns_ = std::make_unique<Dnsmasq>(Dnsmasq::Records{{kName, {kAddrA}}}, /*ttlSeconds=*/1);
  startProxy(config(1, kName, "dns = { refresh = 0.0; };"));
  ASSERT_TRUE(waitUntil([&] { return getAndAttribute().second.status == 200; }, 5s));

  dns_->setRecords({{kName, {kAddrB}}});
  bool moved = waitUntil([&] { return getAndAttribute("/ttl").first == 'b'; }, 6s, 20ms);
  ASSERT_TRUE(moved) << "the record's TTL is 1 s and dns.refresh is 0, but 6 s after the "
                     << "change no request had reached the new address " << kAddrB;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(getAndAttribute("/ttl-after").first, 'b');
}

// (c) The DNS server goes away: the last good addresses stay in use.
TEST_F(Dns, LastGoodAddressesStayWhenTheDnsServerStops) {
  ASSERT_NO_FATAL_FAILURE(makeUpstreams());
  dns_ = std::make_unique<Dnsmasq>(Dnsmasq::Records{{kName, {kAddrA, kAddrB}}});
  startProxy(config(1));
  ASSERT_NO_FATAL_FAILURE(awaitBothUsed());

  dns_->stop();
  // Nothing may change, so this is a bounded stretch of time rather than a condition:
  // 1.2 s is 6 refresh periods of 0.2 s, each one a failed resolution.
  size_t startA = a_->requestCount(), startB = b_->requestCount();
  const auto start = Clock::now();
  int sent = 0;
  std::string failures;
  while (Clock::now() - start < 1200ms || sent < 10) {
    HttpResponse r = getAndAttribute("/dns-down").second;
    ++sent;
    if (r.status != 200) note(failures, r.status);
    std::this_thread::sleep_for(50ms);  // pacing over the refresh periods, not a sync
  }
  EXPECT_TRUE(failures.empty()) << "with the DNS server down, " << sent << " requests over "
                                << secondsSince(start) << " s got non-200:" << failures;
  EXPECT_GT(a_->requestCount(), startA) << kAddrA << " was dropped when resolution failed";
  EXPECT_GT(b_->requestCount(), startB) << kAddrB << " was dropped when resolution failed";
  EXPECT_TRUE(proxy_->running());
}

// (d) A name that does not resolve at start: poolgate starts, says so, answers 503, and
// serves once the record appears.
TEST_F(Dns, UnresolvedNameAtStartGives503UntilTheRecordAppears) {
  ASSERT_NO_FATAL_FAILURE(makeUpstreams());
  const std::string late = "late.test";
  dns_ = std::make_unique<Dnsmasq>(Dnsmasq::Records{{"other.test", {kAddrB}}});
  ASSERT_EQ(dnsQuery(dns_->port(), late).rcode, 3) << "the test needs NXDOMAIN for " << late;
  startProxy(config(1, late));

  // The log names the server and says that it did not resolve.
  auto failureLogged = [&] {
    std::istringstream lines(proxy_->log());
    std::string line;
    while (std::getline(lines, line)) {
      std::string l = toLower(line);
      if (l.find(late) == std::string::npos) continue;
      for (const char* word : {"nxdomain", "not found", "does not exist", "no such", "fail",
                               "error", "could not", "cannot"})
        if (l.find(word) != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_TRUE(waitUntil(failureLogged, 5s))
      << "no log line names " << late << " with why it did not resolve";

  HttpResponse r = httpGet(proxy_->proxyPort(), "/unresolved");
  expectProxyError(r, 503);
  EXPECT_EQ(a_->requestCount() + b_->requestCount(), 0u);

  dns_->setRecords({{"other.test", {kAddrB}}, {late, {kAddrA}}});
  std::string statuses;
  bool served = waitUntil(
      [&] {
        auto [who, resp] = getAndAttribute("/resolved");
        if (resp.status != 200 && resp.status != 503) note(statuses, resp.status);
        return resp.status == 200 && who == 'a';
      },
      5s, 20ms);
  EXPECT_TRUE(served) << late << " now resolves to " << kAddrA
                      << " (refresh 0.2 s) but 5 s later requests were still not served";
  EXPECT_TRUE(statuses.empty()) << "statuses other than 503 then 200:" << statuses;
  EXPECT_TRUE(proxy_->running());
}

// AAAA records become servers too ([::1]:PORT next to 127.0.0.2:PORT).
TEST_F(Dns, AaaaRecordsBecomeServers) {
  a_ = std::make_unique<TestUpstream>(TestUpstream::standardHandler(), kAddrA);
  std::unique_ptr<TestUpstream> v6;
  try {
    v6 = std::make_unique<TestUpstream>(TestUpstream::standardHandler(), "::1", a_->port());
  } catch (const HarnessError& e) {
    GTEST_SKIP() << "cannot bind [::1]:" << a_->port() << ": " << e.what();
  }
  dns_ = std::make_unique<Dnsmasq>(Dnsmasq::Records{{kName, {kAddrA, "::1"}}});
  startProxy(config(1));
  bool both = waitUntil(
      [&] {
        httpGet(proxy_->proxyPort(), "/v6");
        return a_->requestCount() > 0 && v6->requestCount() > 0;
      },
      5s, 20ms);
  ASSERT_TRUE(both) << kName << " has A " << kAddrA << " and AAAA ::1; requests reached them "
                    << a_->requestCount() << " and " << v6->requestCount() << " times";
  auto listed = statsAddresses(proxy_->stats().at("workers").at(0));
  EXPECT_NE(std::find(listed.begin(), listed.end(), "[::1]:" + std::to_string(port())),
            listed.end())
      << "/stats has no server \"[::1]:" << port() << "\"; it lists " << Json(listed).dump();
  HttpClient client(proxy_->proxyPort());
  for (int i = 0; i < 6; ++i) EXPECT_EQ(client.get("/v6-keepalive").status, 200);
  proxy_.reset();  // before v6 goes
}

// Each address gets the configured weight; names and numeric servers mix in one group.
TEST_F(Dns, EachAddressGetsTheConfiguredWeight) {
  ASSERT_NO_FATAL_FAILURE(makeUpstreams());
  TestUpstream numeric;  // 127.0.0.1 on its own port, weight 1
  dns_ = std::make_unique<Dnsmasq>(Dnsmasq::Records{{kName, {kAddrA, kAddrB}}});
  std::string servers = "( { address = \"" + std::string(kName) + ":" + std::to_string(port()) +
                        "\"; weight = 3; }, { address = \"" + numeric.address() +
                        "\"; weight = 1; } )";
  startProxy(config(1, kName, "dns = { refresh = 0.2; };", servers));
  ASSERT_NO_FATAL_FAILURE(awaitBothUsed());

  size_t startA = a_->requestCount(), startB = b_->requestCount(),
         startN = numeric.requestCount();
  HttpClient client(proxy_->proxyPort());
  for (int i = 0; i < 70; ++i) ASSERT_EQ(client.get("/weighted").status, 200);
  size_t toA = a_->requestCount() - startA, toB = b_->requestCount() - startB,
         toN = numeric.requestCount() - startN;
  // Weights 3, 3, 1 over 70 requests: 30, 30, 10 (a little slack for where the smooth
  // round robin's cycle starts after the set changed).
  std::string seen = std::to_string(toA) + " / " + std::to_string(toB) + " / " +
                     std::to_string(toN) + " (" + kAddrA + " / " + kAddrB + " / numeric)";
  EXPECT_EQ(toA + toB + toN, 70u) << seen;
  EXPECT_NEAR(static_cast<double>(toA), 30.0, 3.0) << seen;
  EXPECT_NEAR(static_cast<double>(toB), 30.0, 3.0) << seen;
  EXPECT_NEAR(static_cast<double>(toN), 10.0, 3.0) << seen;
  proxy_.reset();  // before `numeric` goes
}

// (e) `poolgate -t` accepts server names and the resolver settings.
TEST(DnsConfig, CheckAcceptsNamedServersAndResolver) {
  TempDir dir;
  std::string path = dir.write(
      "named.conf",
      "workers = 1;\n"
      "listen = ( { address = \"127.0.0.1:0\"; } );\n"
      "resolver = { servers = ( \"127.0.0.1:5353\" ); timeout = 1.0; };\n"
      "upstreams = ( { name = \"app\";\n"
      "  servers = ( { address = \"app.test:8080\"; weight = 2; },\n"
      "              { address = \"127.0.0.1:5000\"; } );\n"
      "  dns = { refresh = 0.2; }; } );\n");
  CommandResult r = runCommand({POOLGATE_BINARY, "-t", "-c", path});
  EXPECT_EQ(r.status.code(), 0) << r.status.describe() << "\n" << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("configuration ok"), std::string::npos) << r.out << r.err;
}

}  // namespace
}  // namespace pgtest
