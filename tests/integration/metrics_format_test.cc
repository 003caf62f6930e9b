// /metrics of the real binary, parsed strictly as Prometheus text exposition 0.0.4, after
// traffic over two upstreams (one with two servers) and during a reload (draining
// workers next to the new generation), and checked against /stats taken while idle.
//
// Strict means: every line ends with LF (no CR, no blank line, no other comment than
// HELP and TYPE); each family has exactly one HELP and one TYPE, both before its first
// sample; a family's lines are contiguous; metric and label names have the legal syntax
// (no reserved "__" labels); label values use only the \\ \" \n escapes; no duplicate
// label in a sample and no duplicate series; values parse as floats; no timestamps;
// counters end in _total (and only counters do) and are finite and >= 0; per-worker
// series carry worker and pid, per-server series also upstream and server.
#include <signal.h>

#include <charconv>
#include <cmath>
#include <memory>
#include <regex>
#include <set>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

using Labels = std::map<std::string, std::string>;

struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
  size_t line = 0;
};

struct Family {
  std::string name, type, help;
  bool hasHelp = false, hasType = false;
  std::vector<Sample> samples;
};

struct Exposition {
  std::vector<Family> families;
  std::vector<std::string> errors;

  const Family* find(const std::string& name) const {
    for (const auto& f : families)
      if (f.name == name) return &f;
    return nullptr;
  }
  // The samples of `name` whose labels include all of `match`.
  std::vector<const Sample*> select(const std::string& name, const Labels& match) const {
    std::vector<const Sample*> out;
    if (const Family* f = find(name)) {
      for (const auto& s : f->samples) {
        bool ok = true;
        for (const auto& [k, v] : match) {
          auto it = s.labels.find(k);
          ok &= it != s.labels.end() && it->second == v;
        }
        if (ok) out.push_back(&s);
      }
    }
    return out;
  }
};

bool isMetricName(std::string_view s) {
  static const std::regex re("[a-zA-Z_:][a-zA-Z0-9_:]*");
  return std::regex_match(s.begin(), s.end(), re);
}

bool isLabelName(std::string_view s) {
  static const std::regex re("[a-zA-Z_][a-zA-Z0-9_]*");
  return std::regex_match(s.begin(), s.end(), re) && s.rfind("__", 0) != 0;
}

bool validUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

// A float as the format allows it (Go's ParseFloat without hex): decimal or exponent
// notation, or +Inf / -Inf / NaN.
std::optional<double> parseValue(std::string_view s) {
  if (s == "+Inf" || s == "Inf") return INFINITY;
  if (s == "-Inf") return -INFINITY;
  if (s == "NaN") return NAN;
  double v = 0;
  const char* begin = s.data();
  if (!s.empty() && s[0] == '+') ++begin;  // Go accepts a leading '+'
  auto [end, ec] = std::from_chars(begin, s.data() + s.size(), v, std::chars_format::general);
  if (ec != std::errc() || end != s.data() + s.size() || begin == end) return std::nullopt;
  return v;
}

// The HELP text escapes: only \\ and \n.
bool validHelpEscapes(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') continue;
    if (i + 1 >= s.size() || (s[i + 1] != '\\' && s[i + 1] != 'n')) return false;
    ++i;
  }
  return true;
}

// Per-worker and per-server families, by name: the labels each sample must carry.
std::vector<std::string> requiredLabels(const std::string& family) {
  if (family == "poolgate_upstream_connections_bound") return {};
  if (family.rfind("poolgate_upstream_", 0) == 0) return {"worker", "pid", "upstream", "server"};
  if (family.rfind("poolgate_worker_", 0) == 0) return {"worker", "pid"};
  return {};
}

Exposition parseStrict(const std::string& text) {
  Exposition e;
  auto error = [&](size_t line, const std::string& what) {
    e.errors.push_back("line " + std::to_string(line) + ": " + what);
  };
  if (text.empty()) {
    e.errors.push_back("empty exposition");
    return e;
  }
  if (text.back() != '\n') e.errors.push_back("the last line does not end with \\n");
  if (!validUtf8(text)) e.errors.push_back("not valid UTF-8");

  std::map<std::string, size_t> index;  // family name -> position in e.families
  std::set<std::string> closed;         // families whose lines have ended
  std::string current;                  // family of the previous line
  std::set<std::string> series;

  auto familyFor = [&](const std::string& name, size_t line) -> Family& {
    if (name != current) {
      if (!current.empty()) closed.insert(current);
      if (closed.count(name)) error(line, "family " + name + " is not contiguous");
      current = name;
    }
    auto it = index.find(name);
    if (it == index.end()) {
      it = index.emplace(name, e.families.size()).first;
      e.families.push_back(Family{name, "", "", false, false, {}});
    }
    return e.families[it->second];
  };

  size_t lineNo = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    ++lineNo;

    if (line.empty()) {
      error(lineNo, "blank line");
      continue;
    }
    if (line.find('\r') != std::string::npos) error(lineNo, "carriage return");

    if (line[0] == '#') {
      const bool help = line.rfind("# HELP ", 0) == 0, type = line.rfind("# TYPE ", 0) == 0;
      if (!help && !type) {
        error(lineNo, "comment other than HELP/TYPE: " + line);
        continue;
      }
      const std::string rest = line.substr(7);
      const size_t sp = rest.find(' ');
      const std::string name = rest.substr(0, sp);
      const std::string arg = sp == std::string::npos ? "" : rest.substr(sp + 1);
      if (!isMetricName(name)) {
        error(lineNo, "bad metric name in " + line);
        continue;
      }
      Family& f = familyFor(name, lineNo);
      if (!f.samples.empty()) error(lineNo, (help ? "HELP" : "TYPE") + std::string(" after samples of ") + name);
      if (help) {
        if (f.hasHelp) error(lineNo, "second HELP for " + name);
        if (arg.empty()) error(lineNo, "empty HELP for " + name);
        if (!validHelpEscapes(arg)) error(lineNo, "bad escape in HELP of " + name);
        f.hasHelp = true;
        f.help = arg;
      } else {
        if (f.hasType) error(lineNo, "second TYPE for " + name);
        static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary",
                                                     "untyped"};
        if (!kTypes.count(arg)) error(lineNo, "unknown TYPE '" + arg + "' for " + name);
        f.hasType = true;
        f.type = arg;
      }
      continue;
    }

    // name{label="value",...} value
    Sample s;
    s.line = lineNo;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (!isMetricName(s.name)) {
      error(lineNo, "bad metric name: " + line);
      continue;
    }
    bool bad = false;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (!bad && i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        if (eq == std::string::npos) {
          bad = true;
          break;
        }
        std::string label = line.substr(i, eq - i);
        if (!isLabelName(label)) error(lineNo, "bad label name '" + label + "'");
        if (eq + 1 >= line.size() || line[eq + 1] != '"') {
          bad = true;
          break;
        }
        std::string value;
        size_t k = eq + 2;
        bool closedQuote = false;
        for (; k < line.size(); ++k) {
          if (line[k] == '\\') {
            if (k + 1 >= line.size()) break;
            const char c = line[k + 1];
            if (c == '\\') value += '\\';
            else if (c == '"') value += '"';
            else if (c == 'n') value += '\n';
            else error(lineNo, std::string("bad escape \\") + c + " in label " + label);
            ++k;
          } else if (line[k] == '"') {
            closedQuote = true;
            break;
          } else {
            value += line[k];
          }
        }
        if (!closedQuote) {
          bad = true;
          break;
        }
        if (!s.labels.emplace(label, value).second) error(lineNo, "label " + label + " twice");
        i = k + 1;
        if (i < line.size() && line[i] == ',') {
          ++i;
          if (i < line.size() && line[i] == '}') error(lineNo, "trailing comma in labels");
        } else if (i >= line.size() || line[i] != '}') {
          bad = true;
        }
      }
      if (bad || i >= line.size() || line[i] != '}') {
        error(lineNo, "malformed labels: " + line);
        continue;
      }
      ++i;
    }
    if (i >= line.size() || line[i] != ' ') {
      error(lineNo, "no single space before the value: " + line);
      continue;
    }
    const std::string valueText = line.substr(i + 1);
    if (valueText.find(' ') != std::string::npos) {
      error(lineNo, "timestamp or extra field: " + line);
      continue;
    }
    auto v = parseValue(valueText);
    if (!v) {
      error(lineNo, "value is not a float: " + line);
      continue;
    }
    s.value = *v;

    Family& f = familyFor(s.name, lineNo);
    if (!f.hasHelp || !f.hasType) error(lineNo, "sample of " + s.name + " before its HELP and TYPE");
    if (f.type == "counter") {
      if (!std::isfinite(s.value) || s.value < 0) error(lineNo, "counter not finite and >= 0: " + line);
    }
    std::string key = s.name;
    for (const auto& [k, val] : s.labels) key += '\x1f' + k + '=' + val;  // map: sorted
    if (!series.insert(key).second) error(lineNo, "duplicate series: " + line);
    for (const auto& need : requiredLabels(s.name))
      if (!s.labels.count(need)) error(lineNo, "no label " + need + ": " + line);
    if (s.labels.count("pid") && !std::regex_match(s.labels["pid"], std::regex("[1-9][0-9]*")))
      error(lineNo, "pid label is not a pid: " + line);
    f.samples.push_back(std::move(s));
  }

  for (const auto& f : e.families) {
    if (!f.hasHelp) e.errors.push_back("family " + f.name + " has no HELP");
    if (!f.hasType) e.errors.push_back("family " + f.name + " has no TYPE");
    if (f.samples.empty()) e.errors.push_back("family " + f.name + " has no sample");
    const bool total = f.name.size() > 6 && f.name.compare(f.name.size() - 6, 6, "_total") == 0;
    if (f.type == "counter" && !total) e.errors.push_back("counter " + f.name + " does not end in _total");
    if (f.type != "counter" && total) e.errors.push_back(f.type + " " + f.name + " ends in _total");
    if (f.name.rfind("poolgate_", 0) != 0) e.errors.push_back("family " + f.name + " lacks the poolgate_ prefix");
  }
  return e;
}

std::string joinErrors(const Exposition& e, size_t max = 30) {
  std::string out;
  for (size_t i = 0; i < e.errors.size() && i < max; ++i) out += "  " + e.errors[i] + "\n";
  return out;
}

// The validator itself must reject what it claims to reject.
TEST(MetricsFormatValidator, RejectsBadExpositions) {
  const char* bad[] = {
      "# HELP a_total x\n# TYPE a_total counter\na_total 1",                      // no final LF
      "a_total 1\n",                                                              // no HELP/TYPE
      "# HELP a_total x\n# TYPE a_total counter\na_total 1\n\n",                  // blank line
      "# HELP a x\n# TYPE a counter\na 1\n",                                      // counter w/o _total
      "# HELP a_total x\n# TYPE a_total gauge\na_total 1\n",                      // gauge with _total
      "# HELP a x\n# TYPE a gauge\na 1\n# HELP b x\n# TYPE b gauge\nb 1\na 2\n",   // not contiguous
      "# HELP a x\n# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",                   // duplicate series
      "# HELP a x\n# TYPE a gauge\na{x=\"\\t\"} 1\n",                              // bad escape
      "# HELP a x\n# TYPE a gauge\na{__x=\"1\"} 1\n",                              // reserved label
      "# HELP a x\n# TYPE a gauge\na{1x=\"1\"} 1\n",                               // bad label name
      "# HELP a x\n# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n",                        // label twice
      "# HELP a x\n# TYPE a gauge\na 1 1700000000000\n",                          // timestamp
      "# HELP a x\n# TYPE a gauge\na one\n",                                      // not a float
      "# HELP a x\n# TYPE a gauge\na 0x10\n",                                     // hex
      "# HELP a x\n# TYPE a gauge\na{x=\"1\"\n",                                  // unterminated
      "# HELP a x\n# TYPE a gauge\na  1\n",                                       // two spaces
      "# HELP a x\n# TYPE a gauge\n# just a comment\na 1\n",                      // other comment
      "# TYPE a gauge\na 1\n",                                                    // no HELP
      "# HELP a x\n# TYPE a gauge\na 1\n# TYPE a gauge\n",                        // TYPE after sample
      "# HELP a_total x\n# TYPE a_total counter\na_total -1\n",                   // negative counter
      "# HELP a x\n# TYPE a gaug\na 1\n",                                         // unknown type
      "# HELP poolgate_worker_x x\n# TYPE poolgate_worker_x gauge\npoolgate_worker_x{worker=\"0\"} 1\n",  // no pid
  };
  for (const char* text : bad) EXPECT_FALSE(parseStrict(text).errors.empty()) << text;
  Exposition good = parseStrict(
      "# HELP poolgate_a_total x \\\\ \\n y\n# TYPE poolgate_a_total counter\n"
      "poolgate_a_total{x=\"q\\\"\\\\\\n\",y=\"\"} 1.5e3\npoolgate_a_total 0\n"
      "# HELP poolgate_b y\n# TYPE poolgate_b gauge\npoolgate_b -2\npoolgate_b{z=\"1\"} NaN\n");
  EXPECT_TRUE(good.errors.empty()) << joinErrors(good);
  ASSERT_NE(good.find("poolgate_a_total"), nullptr);
  EXPECT_EQ(good.find("poolgate_a_total")->samples.at(0).labels.at("x"), "q\"\\\n");
  EXPECT_EQ(good.find("poolgate_a_total")->samples.at(0).value, 1500);
}

constexpr const char* kConfig = R"(
workers = 2;
shutdown_timeout = 20.0;
listen = ( { address = "127.0.0.1:0"; } );
admin = { address = "127.0.0.1:0"; };
upstreams = (
  { name = "app"; servers = ( { address = "${A}"; }, { address = "${B}"; } );
    pool = { max_idle = 3; }; },
  { name = "other"; servers = ( { address = "${C}"; } ); pool = { max_idle = 2; }; }
);
routes = (
  { host = "*"; prefix = "/other/"; upstream = "other"; },
  { host = "*"; prefix = "/"; upstream = "app"; }
);
)";

class MetricsFormat : public ::testing::Test {
 protected:
  void start() {
    proxy_ = std::make_unique<Poolgate>(
        kConfig, std::map<std::string, std::string>{
                     {"A", a_.address()}, {"B", b_.address()}, {"C", c_.address()}});
    proxy_->start();
  }
  // Several keep-alive clients, to both upstreams.
  void traffic() {
    auto errors = runConcurrently(4, [&](size_t i) {
      HttpClient client(proxy_->proxyPort());
      for (int n = 0; n < 15; ++n) {
        const std::string target = (n % 3 == 0 ? "/other/" : "/app/") + std::to_string(i) + "/" +
                                   std::to_string(n);
        HttpResponse r = client.get(target);
        if (r.status != 200) throw HarnessError(target + ": status " + std::to_string(r.status));
      }
    });
    ASSERT_TRUE(errors.empty()) << errors.front();
  }
  Exposition metrics() {
    HttpResponse r = proxy_->admin("/metrics");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("Content-Type").value_or(""), "text/plain; version=0.0.4; charset=utf-8");
    Exposition e = parseStrict(r.body);
    EXPECT_TRUE(e.errors.empty()) << e.errors.size() << " violations:\n"
                                  << joinErrors(e) << "--- /metrics:\n" << r.body.substr(0, 6000);
    return e;
  }

  TestUpstream a_, b_, c_;
  std::unique_ptr<Poolgate> proxy_;  // after the upstreams: stopped first
};

double only(const Exposition& e, const std::string& name, const Labels& match) {
  auto s = e.select(name, match);
  if (s.size() != 1) {
    ADD_FAILURE() << name << " with the given labels: " << s.size() << " samples, want 1";
    return -1;
  }
  return s.front()->value;
}

TEST_F(MetricsFormat, StrictAfterTrafficAndAgreesWithStats) {
  start();
  traffic();
  // Idle from here on: /stats and /metrics describe the same state (admin requests are
  // not counted as requests).
  Json stats = proxy_->stats();
  Exposition e = metrics();

  for (const char* family :
       {"poolgate_info", "poolgate_master_generation", "poolgate_uptime_seconds",
        "poolgate_workers", "poolgate_worker_accepted_total", "poolgate_worker_requests_total",
        "poolgate_worker_clients", "poolgate_worker_draining", "poolgate_upstream_connections",
        "poolgate_upstream_connections_open", "poolgate_upstream_opened_total",
        "poolgate_upstream_reused_total", "poolgate_upstream_failed_total",
        "poolgate_upstream_requests_total", "poolgate_upstream_connections_bound",
        "poolgate_worker_admin_accepted_total", "poolgate_worker_admin_connections",
        "poolgate_worker_admin_denied_total", "poolgate_worker_http2_connections",
        "poolgate_worker_http2_streams", "poolgate_worker_http2_streams_total",
        "poolgate_worker_http2_resets_total", "poolgate_worker_http2_goaways_total"})
    EXPECT_NE(e.find(family), nullptr) << "no family " << family;
  EXPECT_EQ(only(e, "poolgate_master_generation", {}), 1);
  EXPECT_EQ(only(e, "poolgate_workers", {{"state", "running"}}), 2);
  EXPECT_EQ(only(e, "poolgate_upstream_connections_bound", {}),
            stats.at("totals").at("upstream_bound").get<double>());
  EXPECT_EQ(stats.at("totals").at("upstream_bound"), 2 * (3 * 2 + 2 * 1));

  double requests = 0, adminTotal = 0;
  for (const auto& w : stats.at("workers")) {
    const Labels wl = {{"worker", std::to_string(w.at("slot").get<long long>())},
                       {"pid", std::to_string(w.at("pid").get<long long>())},
                       {"generation", std::to_string(w.at("generation").get<long long>())}};
    const std::string who = "worker pid " + wl.at("pid");
    EXPECT_EQ(only(e, "poolgate_worker_requests_total", wl), w.at("requests").get<double>()) << who;
    // Admin connections are counted apart, so the proxy's figures agree exactly; the
    // admin ones differ by the /metrics request itself, in whichever worker took it.
    EXPECT_EQ(only(e, "poolgate_worker_accepted_total", wl), w.at("accepted").get<double>()) << who;
    const double adminAccepted = only(e, "poolgate_worker_admin_accepted_total", wl);
    EXPECT_GE(adminAccepted, w.at("admin").at("accepted").get<double>()) << who;
    EXPECT_LE(adminAccepted, w.at("admin").at("accepted").get<double>() + 1) << who;
    EXPECT_LE(only(e, "poolgate_worker_admin_connections", wl), 1) << who;
    EXPECT_EQ(only(e, "poolgate_worker_admin_denied_total", wl), 0) << who;
    adminTotal += adminAccepted;
    EXPECT_EQ(only(e, "poolgate_worker_draining", wl), 0) << who;
    // HTTP/2: the same figures as /stats (all 0: these clients speak HTTP/1.1).
    const Json& h2 = w.at("http2");
    EXPECT_EQ(only(e, "poolgate_worker_http2_connections", wl), h2.at("connections").get<double>()) << who;
    EXPECT_EQ(only(e, "poolgate_worker_http2_streams", wl), h2.at("streams_open").get<double>()) << who;
    EXPECT_EQ(only(e, "poolgate_worker_http2_streams_total", wl), h2.at("streams_total").get<double>()) << who;
    Labels sent = wl, received = wl;
    sent["direction"] = "sent";
    received["direction"] = "received";
    EXPECT_EQ(only(e, "poolgate_worker_http2_resets_total", sent), h2.at("resets_sent_total").get<double>()) << who;
    EXPECT_EQ(only(e, "poolgate_worker_http2_resets_total", received),
              h2.at("resets_received_total").get<double>()) << who;
    EXPECT_EQ(only(e, "poolgate_worker_http2_goaways_total", wl), h2.at("goaways_sent_total").get<double>()) << who;
    EXPECT_EQ(h2.at("streams_total"), 0) << who;
    requests += only(e, "poolgate_worker_requests_total", wl);
    size_t servers = 0;
    for (const auto& g : w.at("upstreams")) {
      for (const auto& s : g.at("servers")) {
        Labels sl = wl;
        sl["upstream"] = g.at("name").get<std::string>();
        sl["server"] = s.at("address").get<std::string>();
        const std::string where = who + " " + sl["upstream"] + " " + sl["server"];
        ++servers;
        EXPECT_EQ(only(e, "poolgate_upstream_opened_total", sl), s.at("opened_total").get<double>()) << where;
        EXPECT_EQ(only(e, "poolgate_upstream_reused_total", sl), s.at("reused_total").get<double>()) << where;
        EXPECT_EQ(only(e, "poolgate_upstream_requests_total", sl), s.at("requests_total").get<double>()) << where;
        EXPECT_EQ(only(e, "poolgate_upstream_connections_open", sl), s.at("open").get<double>()) << where;
        Labels idle = sl, active = sl;
        idle["state"] = "idle";
        active["state"] = "active";
        EXPECT_EQ(only(e, "poolgate_upstream_connections", idle), s.at("idle").get<double>()) << where;
        EXPECT_EQ(only(e, "poolgate_upstream_connections", active), s.at("active").get<double>()) << where;
      }
    }
    EXPECT_EQ(servers, 3u) << who;
  }
  EXPECT_EQ(requests, 60);
  EXPECT_EQ(requests, stats.at("totals").at("requests").get<double>());
  EXPECT_EQ(adminTotal, stats.at("totals").at("admin_accepted").get<double>() + 1);
  EXPECT_EQ(only(e, "poolgate_worker_accepted_total", {{"worker", "0"}}) +
                only(e, "poolgate_worker_accepted_total", {{"worker", "1"}}),
            4) << "the 4 proxy clients, and nothing else";
  // Every per-server family has one series per worker and server, no more.
  for (const char* family : {"poolgate_upstream_opened_total", "poolgate_upstream_reused_total",
                             "poolgate_upstream_connections_open"}) {
    ASSERT_NE(e.find(family), nullptr);
    EXPECT_EQ(e.find(family)->samples.size(), 2u * 3u) << family;
  }
}

// During a reload the old worker (draining) and its successor share a slot number: their
// series must still differ (pid, generation), and the draining state must show.
TEST_F(MetricsFormat, StrictWhileOldWorkersDrain) {
  auto release = std::make_shared<std::atomic<bool>>(false);
  auto holding = std::make_shared<std::atomic<bool>>(false);
  // /hold stays in flight until released, on whichever server of "app" it reaches.
  auto hold = TestUpstream::holdingHandler(release, holding);
  a_.setHandler(hold);
  b_.setHandler(hold);
  start();
  traffic();
  HttpClient held(proxy_->proxyPort());
  held.send(serializeRequest("GET", "/hold"));
  ASSERT_TRUE(waitUntil([&] { return holding->load(); }, 10s))
      << "/hold never reached the upstream";

  proxy_->signal(SIGHUP);
  ASSERT_TRUE(waitUntil(
      [&] {
        Json s = proxy_->stats();
        size_t running = 0, old_running = 0, draining = 0;
        for (const auto& w : s.at("workers")) {
          running += w.at("state") == "running" && w.at("generation") == 2;
          old_running += w.at("state") == "running" && w.at("generation") == 1;  // SIGQUIT not yet seen
          draining += w.at("state") == "draining";
        }
        return running == 2 && old_running == 0 && draining >= 1;
      },
      10s))
      << "no draining worker next to two new ones";

  Exposition e = metrics();
  EXPECT_EQ(only(e, "poolgate_master_generation", {}), 2);
  EXPECT_GE(only(e, "poolgate_workers", {{"state", "draining"}}), 1);
  EXPECT_EQ(only(e, "poolgate_workers", {{"state", "running"}}), 2);
  auto drainingSeries = e.select("poolgate_worker_draining", {{"generation", "1"}});
  ASSERT_FALSE(drainingSeries.empty());
  for (const Sample* s : drainingSeries) EXPECT_EQ(s->value, 1) << "line " << s->line;
  for (const Sample* s : e.select("poolgate_worker_draining", {{"generation", "2"}}))
    EXPECT_EQ(s->value, 0) << "line " << s->line;
  // Slot numbers repeat across generations; pids never do.
  std::set<std::string> pids;
  for (const auto& s : e.find("poolgate_worker_requests_total")->samples)
    EXPECT_TRUE(pids.insert(s.labels.at("pid")).second) << "pid twice: line " << s.line;
  EXPECT_GE(pids.size(), 3u);

  *release = true;
  EXPECT_EQ(held.read().status, 200);
}

}  // namespace
}  // namespace pgtest
