// The admin listener: /stats fields and invariants, /metrics, /health, the dashboard.
#include <algorithm>
#include <cctype>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

enum class Kind { kString, kCount, kNumber, kBool, kArray, kObject };

bool hasKind(const Json& v, Kind kind) {
  switch (kind) {
    case Kind::kString: return v.is_string();
    case Kind::kCount: return v.is_number_integer() && v.get<long long>() >= 0;
    case Kind::kNumber: return v.is_number();
    case Kind::kBool: return v.is_boolean();
    case Kind::kArray: return v.is_array();
    case Kind::kObject: return v.is_object();
  }
  return false;
}

void expectFields(const Json& object, const std::string& where,
                  std::initializer_list<std::pair<const char*, Kind>> fields) {
  ASSERT_TRUE(object.is_object()) << where << " is not an object";
  for (const auto& [name, kind] : fields) {
    if (!object.contains(name)) {
      ADD_FAILURE() << where << "." << name << " is missing";
      continue;
    }
    EXPECT_TRUE(hasKind(object.at(name), kind))
        << where << "." << name << " has the wrong type: " << object.at(name).dump();
  }
}

constexpr std::initializer_list<std::pair<const char*, Kind>> kHttp2Counts = {
    {"connections", Kind::kCount},         {"streams_open", Kind::kCount},
    {"streams_total", Kind::kCount},       {"resets_sent_total", Kind::kCount},
    {"resets_received_total", Kind::kCount}, {"goaways_sent_total", Kind::kCount}};

constexpr std::initializer_list<std::pair<const char*, Kind>> kConnectionCounts = {
    {"open", Kind::kCount},         {"idle", Kind::kCount},
    {"active", Kind::kCount},       {"opened_total", Kind::kCount},
    {"reused_total", Kind::kCount}, {"failed_total", Kind::kCount}};

uint64_t count(const Json& j, const char* key) { return j.at(key).get<uint64_t>(); }

// open == idle + active for every worker and server; workers add up to the totals.
void expectConsistent(const Json& stats) {
  uint64_t open = 0, idle = 0, active = 0;
  for (const auto& w : stats.at("workers")) {
    const Json& up = w.at("upstream");
    std::string where = "worker " + w.at("pid").dump();
    EXPECT_EQ(count(up, "open"), count(up, "idle") + count(up, "active")) << where;
    uint64_t serversOpen = 0;
    for (const auto& group : w.at("upstreams"))
      for (const auto& s : group.at("servers")) {
        EXPECT_EQ(count(s, "open"), count(s, "idle") + count(s, "active"))
            << where << " server " << s.at("address");
        serversOpen += count(s, "open");
      }
    EXPECT_EQ(count(up, "open"), serversOpen) << where << ": servers do not add up";
    open += count(up, "open");
    idle += count(up, "idle");
    active += count(up, "active");
  }
  const Json& totals = stats.at("totals");
  EXPECT_EQ(count(totals, "upstream_open"), open);
  EXPECT_EQ(count(totals, "upstream_idle"), idle);
  EXPECT_EQ(count(totals, "upstream_active"), active);
}

// `clients` keep-alive connections each sending `perClient` GETs; returns the errors.
std::vector<std::string> runLoad(uint16_t port, size_t clients, size_t perClient) {
  return runConcurrently(clients, [&](size_t i) {
    HttpClient client(port);
    for (size_t n = 0; n < perClient; ++n) {
      HttpResponse r = client.get("/load/" + std::to_string(i) + "/" + std::to_string(n));
      if (r.status != 200) throw HarnessError("status " + std::to_string(r.status));
    }
  });
}

class Stats : public ProxyTest {};

TEST_F(Stats, DocumentHasEverySpecField) {
  startProxy(2);
  ASSERT_EQ(connect().get("/").status, 200);
  Json s = proxy().stats();

  expectFields(s, "stats", {{"version", Kind::kString},
                            {"master_pid", Kind::kCount},
                            {"generation", Kind::kCount},
                            {"uptime_seconds", Kind::kNumber},
                            {"accept_mode", Kind::kString},
                            {"workers", Kind::kArray},
                            {"totals", Kind::kObject}});
  EXPECT_EQ(s.at("master_pid").get<pid_t>(), proxy().pid());
  EXPECT_EQ(s.at("generation"), 1);
  EXPECT_EQ(s.at("accept_mode"), "reuseport");
  ASSERT_EQ(s.at("workers").size(), 2u);

  for (const auto& w : s.at("workers")) {
    std::string where = "worker " + w.value("pid", Json()).dump();
    expectFields(w, where, {{"slot", Kind::kCount},
                            {"pid", Kind::kCount},
                            {"generation", Kind::kCount},
                            {"state", Kind::kString},
                            {"accepted", Kind::kCount},
                            {"requests", Kind::kCount},
                            {"clients", Kind::kObject},
                            {"upstream", Kind::kObject},
                            {"http2", Kind::kObject},
                            {"upstreams", Kind::kArray}});
    EXPECT_EQ(w.at("state"), "running");
    // HTTP/2 clients: none here (an HTTP/1.1 client), every count present and 0.
    expectFields(w.at("http2"), where + ".http2", kHttp2Counts);
    for (const auto& field : kHttp2Counts)
      EXPECT_EQ(w.at("http2").value(field.first, Json(-1)), 0) << where << ".http2." << field.first;
    expectFields(w.at("clients"), where + ".clients",
                 {{"active", Kind::kCount}, {"idle", Kind::kCount}});
    expectFields(w.at("upstream"), where + ".upstream", kConnectionCounts);
    ASSERT_EQ(w.at("upstreams").size(), 1u);
    const Json& group = w.at("upstreams").at(0);
    EXPECT_EQ(group.at("name"), "app");
    ASSERT_EQ(group.at("servers").size(), 1u);
    const Json& server = group.at("servers").at(0);
    expectFields(server, where + ".server", kConnectionCounts);
    expectFields(server, where + ".server", {{"address", Kind::kString},
                                             {"healthy", Kind::kBool},
                                             {"requests_total", Kind::kCount}});
    EXPECT_EQ(server.at("address"), upstream_.address());
  }
  std::vector<long long> slots;
  for (const auto& w : s.at("workers")) slots.push_back(w.at("slot").get<long long>());
  std::sort(slots.begin(), slots.end());
  EXPECT_EQ(slots, (std::vector<long long>{0, 1}));

  expectFields(s.at("totals"), "totals", {{"accepted", Kind::kCount},
                                          {"requests", Kind::kCount},
                                          {"clients_active", Kind::kCount},
                                          {"clients_idle", Kind::kCount},
                                          {"upstream_open", Kind::kCount},
                                          {"upstream_idle", Kind::kCount},
                                          {"upstream_active", Kind::kCount},
                                          {"reuse_ratio", Kind::kNumber},
                                          {"upstream_opened_total", Kind::kCount},
                                          {"upstream_reused_total", Kind::kCount},
                                          {"http2_connections", Kind::kCount},
                                          {"http2_streams_open", Kind::kCount},
                                          {"http2_streams_total", Kind::kCount},
                                          {"http2_resets_sent_total", Kind::kCount},
                                          {"http2_resets_received_total", Kind::kCount},
                                          {"http2_goaways_sent_total", Kind::kCount}});
  for (const char* name : {"http2_connections", "http2_streams_open", "http2_streams_total",
                           "http2_resets_sent_total", "http2_resets_received_total",
                           "http2_goaways_sent_total"})
    EXPECT_EQ(s.at("totals").value(name, Json(-1)), 0) << "totals." << name;
  EXPECT_GE(sumOverWorkers(s, "/requests"), 1u);
  EXPECT_GE(sumOverWorkers(s, "/accepted"), 1u);
  expectConsistent(s);
}

TEST_F(Stats, OpenConnectionsMatchKernelAfterLoad) {
  constexpr size_t kWorkers = 2, kMaxIdle = 4;
  startProxy(kWorkers, "pool = { max_idle = 4; };");
  auto errors = runLoad(proxy().proxyPort(), 8, 200);
  ASSERT_TRUE(errors.empty()) << errors.front();

  // Quiescent: nothing active, and poolgate's count equals the kernel's.
  Json s;
  size_t kernel = 0;
  bool agreed = waitUntil(
      [&] {
        s = proxy().stats();
        kernel = countEstablished(upstream_.port());
        // (the surplus of a burst is trimmed back to max_idle after trim_after)
        bool trimmed = true;
        for (const auto& w : s.at("workers")) trimmed = trimmed && count(w.at("upstream"), "open") <= kMaxIdle;
        return count(s.at("totals"), "upstream_active") == 0 &&
               sumOverWorkers(s, "/upstream/open") == kernel && trimmed;
      },
      5s, 50ms);
  EXPECT_TRUE(agreed) << "poolgate says " << sumOverWorkers(s, "/upstream/open")
                      << " open upstream connections, the kernel shows " << kernel;
  EXPECT_LE(kernel, kWorkers * kMaxIdle);
  for (const auto& w : s.at("workers"))
    EXPECT_LE(count(w.at("upstream"), "open"), kMaxIdle) << "worker " << w.at("pid");
  expectConsistent(s);
  EXPECT_GE(sumOverWorkers(s, "/requests"), 8u * 200u);
}

TEST_F(Stats, ReuseRatioAfterTenThousandKeepAliveRequests) {
  startProxy(2);
  auto errors = runLoad(proxy().proxyPort(), 8, 1250);
  ASSERT_TRUE(errors.empty()) << errors.front();
  Json s = proxy().stats();
  double opened = static_cast<double>(sumOverWorkers(s, "/upstream/opened_total"));
  double reused = static_cast<double>(sumOverWorkers(s, "/upstream/reused_total"));
  ASSERT_GT(opened + reused, 0);
  EXPECT_GE(reused / (reused + opened), 0.99) << "opened " << opened << ", reused " << reused;
  EXPECT_GE(opened + reused, 10000);
  if (s.at("totals").contains("reuse_ratio")) {
    EXPECT_NEAR(s.at("totals").at("reuse_ratio").get<double>(), reused / (reused + opened),
                0.001);
  }
  EXPECT_EQ(upstream_.requestCount(), 10000u);
}

class Admin : public ProxyTest {};

TEST_F(Admin, HealthAnswers200) {
  startProxy();
  EXPECT_EQ(proxy().admin("/health").status, 200);
}

TEST_F(Admin, MetricsIsPrometheusText) {
  startProxy();
  ASSERT_EQ(connect().get("/").status, 200);
  HttpResponse r = proxy().admin("/metrics");
  ASSERT_EQ(r.status, 200);
  auto type = r.header("Content-Type");
  EXPECT_TRUE(type && type->rfind("text/plain", 0) == 0) << type.value_or("(none)");
  EXPECT_NE(r.body.find("# TYPE "), std::string::npos);
}

TEST_F(Admin, RootIsHtmlDashboard) {
  startProxy();
  HttpResponse r = proxy().admin("/");
  ASSERT_EQ(r.status, 200);
  auto type = r.header("Content-Type");
  EXPECT_TRUE(type && type->rfind("text/html", 0) == 0) << type.value_or("(none)");
  std::string body = r.body;
  std::transform(body.begin(), body.end(), body.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  EXPECT_NE(body.find("<html"), std::string::npos);
}

}  // namespace
}  // namespace pgtest
