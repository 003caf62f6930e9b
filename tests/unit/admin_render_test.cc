#include "admin/admin_render.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace poolgate {
namespace {

using nlohmann::json;

constexpr uint64_t kStartedMs = 1'700'000'000'000;
constexpr uint64_t kNowMs = kStartedMs + 12'500;
const char kOddName[] = "we\"ird\\na\nme";  // quote, backslash, newline

template <size_t N>
void setName(char (&to)[N], const char* from) {
  std::memset(to, 0, N);
  std::strncpy(to, from, N - 1);
}

struct ServerSpec {
  const char* address;
  uint32_t upstream;
  bool healthy;
  uint64_t open, idle, active, opened, reused, failed, requests, closed_idle;
  NoReuse reason;
  uint64_t reason_count;
};

// An unhealthy server gets a shared entry whose active check fails: health
// is rendered from the shared verdict, not from the worker's slot.
void setServer(StatsSegment& seg, WorkerSlot& w, uint32_t index, const ServerSpec& s) {
  ServerSlot& slot = w.servers[index];
  setName(slot.address, s.address);
  slot.upstream = s.upstream;
  slot.shared_index = -1;
  if (!s.healthy) {
    slot.shared_index = addSharedServer(seg, "test", s.address);
    ASSERT_GE(slot.shared_index, 0);
    seg.shared[slot.shared_index].health.check = static_cast<uint32_t>(CheckState::kFailing);
  }
  ServerCounters& c = slot.counters;
  EXPECT_EQ(s.open, s.idle + s.active) << "open is derived from idle + active";
  c.idle = s.idle;
  c.active = s.active;
  c.opened_total = s.opened;
  c.reused_total = s.reused;
  c.failed_total = s.failed;
  c.requests_total = s.requests;
  c.closed_idle_total = s.closed_idle;
  c.no_reuse_total[static_cast<int>(s.reason)] = s.reason_count;
  c.no_reuse_total[static_cast<int>(NoReuse::kReusable)] = 777;  // never shown
}

void setWorker(WorkerSlot& w, SlotState state, int32_t pid, uint32_t slot, uint64_t gen,
               uint64_t accepted, uint64_t requests, uint64_t active, uint64_t idle) {
  w.state = static_cast<uint32_t>(state);
  w.pid = pid;
  w.slot = slot;
  w.generation = gen;
  w.started_ms = kStartedMs + 2'000;
  w.accepted = accepted;
  w.requests = requests;
  w.clients_active = active;
  w.clients_idle = idle;
  w.accept_wakeups = accepted + 10;
  w.accept_empty = 3;
  w.admin_accepted = accepted / 10 + 1;  // 11, 13, 3 for the listed workers
  w.admin_active = slot + 1;
  w.admin_denied = gen;
}

struct H2Spec {
  uint64_t connections, streams_open, streams, resets_sent, resets_received, goaways_sent;
};

void setH2(WorkerSlot& w, const H2Spec& h) {
  w.h2_connections = h.connections;
  w.h2_streams_open = h.streams_open;
  w.h2_streams_total = h.streams;
  w.h2_resets_sent_total = h.resets_sent;
  w.h2_resets_received_total = h.resets_received;
  w.h2_goaways_sent_total = h.goaways_sent;
}

// HTTP/2 figures of the listed workers (pid 4001, 5001, 9001), distinct in every field.
constexpr H2Spec kH2Draining = {1, 2, 50, 3, 4, 1};
constexpr H2Spec kH2Pid5001 = {7, 11, 900, 13, 17, 2};
constexpr H2Spec kH2Pid9001 = {2, 5, 30, 1, 0, 6};

// Segment indexes:  0 free (stale data), 2 draining gen 1 slot 0, 5 running gen 2
// slot 1 (two upstreams, servers interleaved), 7 starting, 9 running gen 2 slot 0
// (no upstreams). Listed order must be 2, 9, 5.
std::unique_ptr<StatsSegment> makeSegment() {
  auto seg = std::make_unique<StatsSegment>();
  seg->header.master_pid = 4242;
  seg->header.generation = 2;
  seg->header.started_ms = kStartedMs;
  setName(seg->header.accept_mode, "reuseport");

  {  // stale data in a free slot must not show
    WorkerSlot& w = seg->workers[0];
    setWorker(w, SlotState::kFree, 999, 3, 1, 1000, 1000, 9, 9);
    setH2(w, {100, 100, 100, 100, 100, 100});
    w.upstream_count = 1;
    w.server_count = 1;
    setName(w.upstreams[0].name, "stale");
    setServer(*seg, w, 0, {"10.9.9.9:1", 0, true, 50, 50, 0, 1, 1, 1, 1, 1, NoReuse::kError, 1});
  }
  {
    WorkerSlot& w = seg->workers[2];
    setWorker(w, SlotState::kDraining, 4001, 0, 1, 100, 900, 1, 2);
    setH2(w, kH2Draining);
    w.upstream_count = 1;
    w.server_count = 1;
    setName(w.upstreams[0].name, "app");
    w.upstreams[0].max_idle = 32;
    setServer(*seg, w, 0, {"127.0.0.1:5000", 0, true, 3, 2, 1, 5, 895, 1, 900, 4,
                     NoReuse::kExiting, 2});
  }
  {
    WorkerSlot& w = seg->workers[5];
    setWorker(w, SlotState::kRunning, 5001, 1, 2, 120, 5000, 3, 40);
    setH2(w, kH2Pid5001);
    w.upstream_count = 2;
    w.server_count = 3;
    setName(w.upstreams[0].name, "app");
    w.upstreams[0].max_idle = 32;
    setName(w.upstreams[1].name, kOddName);
    w.upstreams[1].max_idle = 4;
    setServer(*seg, w, 0, {"127.0.0.1:5000", 0, true, 8, 6, 2, 9, 4991, 0, 5000, 7,
                     NoReuse::kUpstreamClose, 5});
    setServer(*seg, w, 1, {"[::1]:7000", 1, false, 1, 0, 1, 2, 10, 3, 12, 0, NoReuse::kPoolFull, 6});
    setServer(*seg, w, 2, {"127.0.0.1:5001", 0, true, 4, 4, 0, 4, 100, 0, 104, 1,
                     NoReuse::kMaxRequests, 1});
  }
  {  // starting: not yet serving, not listed
    WorkerSlot& w = seg->workers[7];
    setWorker(w, SlotState::kStarting, 7001, 2, 2, 0, 0, 0, 0);
    setH2(w, {100, 100, 100, 100, 100, 100});
  }
  {
    WorkerSlot& w = seg->workers[9];
    setWorker(w, SlotState::kRunning, 9001, 0, 2, 20, 30, 0, 5);
    setH2(w, kH2Pid9001);
  }
  return seg;
}

RenderContext context() { return RenderContext{"0.1.0", kNowMs}; }

// ------------------------------------------------------------------ toString

TEST(AdminRender, SlotStateNames) {
  EXPECT_STREQ(toString(SlotState::kFree), "free");
  EXPECT_STREQ(toString(SlotState::kStarting), "starting");
  EXPECT_STREQ(toString(SlotState::kRunning), "running");
  EXPECT_STREQ(toString(SlotState::kDraining), "draining");
  EXPECT_STREQ(toString(static_cast<SlotState>(42)), "unknown");
}

TEST(AdminRender, NoReuseNames) {
  const std::vector<std::string> expected = {
      "reusable",     "response_not_done", "upstream_close", "request_not_sent", "error",
      "max_requests", "max_lifetime",      "exiting",        "unread_bytes",     "pool_full",
      "yielded",      "client_gone",       "retired",        "upstream_max"};
  ASSERT_EQ(expected.size(), static_cast<size_t>(NoReuse::kCount));
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(toString(static_cast<NoReuse>(i)), expected[i]) << i;
  }
  EXPECT_STREQ(toString(NoReuse::kCount), "unknown");
}

// ------------------------------------------------------------------ JSON

json renderJson(const StatsSegment& seg, std::string* raw = nullptr) {
  std::string out;
  renderStatsJson(seg, context(), out);
  EXPECT_FALSE(out.empty());
  EXPECT_EQ(out.back(), '\n');
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "compact: one line";
  if (raw) *raw = out;
  return json::parse(out);  // throws (fails the test) on invalid JSON or UTF-8
}

void expectCount(const json& obj, const char* key, uint64_t value) {
  ASSERT_TRUE(obj.contains(key)) << key << " in " << obj.dump();
  EXPECT_TRUE(obj[key].is_number_unsigned()) << key << " = " << obj[key].dump();
  EXPECT_EQ(obj[key].get<uint64_t>(), value) << key;
}

TEST(AdminRenderJson, TopLevelFields) {
  auto seg = makeSegment();
  std::string raw;
  const json j = renderJson(*seg, &raw);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["version"], "0.1.0");
  EXPECT_TRUE(j["master_pid"].is_number_integer());
  EXPECT_EQ(j["master_pid"].get<int>(), 4242);
  expectCount(j, "generation", 2);
  ASSERT_TRUE(j["uptime_seconds"].is_number_float());
  EXPECT_DOUBLE_EQ(j["uptime_seconds"].get<double>(), 12.5);
  EXPECT_NE(raw.find("\"uptime_seconds\":12.500,"), std::string::npos) << raw;
  EXPECT_EQ(j["accept_mode"], "reuseport");
  ASSERT_TRUE(j["workers"].is_array());
  ASSERT_TRUE(j["totals"].is_object());
}

TEST(AdminRenderJson, ListsRunningAndDrainingSortedByGenerationThenSlot) {
  auto seg = makeSegment();
  const json j = renderJson(*seg);
  const json& ws = j["workers"];
  ASSERT_EQ(ws.size(), 3u);
  EXPECT_EQ(ws[0]["pid"], 4001);
  EXPECT_EQ(ws[0]["generation"], 1);
  EXPECT_EQ(ws[0]["slot"], 0);
  EXPECT_EQ(ws[0]["state"], "draining");
  EXPECT_EQ(ws[1]["pid"], 9001);
  EXPECT_EQ(ws[1]["slot"], 0);
  EXPECT_EQ(ws[1]["state"], "running");
  EXPECT_EQ(ws[2]["pid"], 5001);
  EXPECT_EQ(ws[2]["slot"], 1);
  EXPECT_EQ(ws[2]["state"], "running");
  for (const json& w : ws) {
    EXPECT_NE(w["pid"], 999) << "free slot listed";
    EXPECT_NE(w["pid"], 7001) << "starting slot listed";
  }
}

TEST(AdminRenderJson, WorkerFieldsAndSums) {
  auto seg = makeSegment();
  const json j = renderJson(*seg);
  const json& w = j["workers"][2];  // pid 5001

  const std::set<std::string> spec_worker = {"slot",     "pid",     "generation", "state",
                                             "accepted", "requests", "clients",   "upstream",
                                             "upstreams"};
  for (const auto& k : spec_worker) EXPECT_TRUE(w.contains(k)) << k;
  expectCount(w, "slot", 1);
  EXPECT_TRUE(w["pid"].is_number_integer());
  expectCount(w, "generation", 2);
  expectCount(w, "accepted", 120);
  expectCount(w, "requests", 5000);
  expectCount(w["clients"], "active", 3);
  expectCount(w["clients"], "idle", 40);
  EXPECT_EQ(w["clients"].size(), 2u);
  expectCount(w, "accept_wakeups", 130);
  expectCount(w, "accept_empty", 3);
  // The admin listener's connections, apart from the client figures.
  ASSERT_TRUE(w.contains("admin")) << w.dump();
  expectCount(w["admin"], "accepted", 13);
  expectCount(w["admin"], "active", 2);
  expectCount(w["admin"], "denied", 2);
  EXPECT_EQ(w["admin"].size(), 3u);
  ASSERT_TRUE(w["started_seconds_ago"].is_number_float());
  EXPECT_DOUBLE_EQ(w["started_seconds_ago"].get<double>(), 10.5);
  // HTTP/2 clients: what is open now, and the totals.
  ASSERT_TRUE(w.contains("http2")) << w.dump();
  ASSERT_TRUE(w["http2"].is_object()) << w.dump();
  expectCount(w["http2"], "connections", 7);
  expectCount(w["http2"], "streams_open", 11);
  expectCount(w["http2"], "streams_total", 900);
  expectCount(w["http2"], "resets_sent_total", 13);
  expectCount(w["http2"], "resets_received_total", 17);
  expectCount(w["http2"], "goaways_sent_total", 2);
  EXPECT_EQ(w["http2"].size(), 6u);
  expectCount(j["workers"][0]["http2"], "connections", 1);   // pid 4001, draining
  expectCount(j["workers"][0]["http2"], "goaways_sent_total", 1);
  expectCount(j["workers"][1]["http2"], "streams_open", 5);  // pid 9001
  expectCount(j["workers"][1]["http2"], "resets_received_total", 0);

  // upstream = sums over the worker's servers
  const json& up = w["upstream"];
  expectCount(up, "open", 8 + 1 + 4);
  expectCount(up, "idle", 6 + 0 + 4);
  expectCount(up, "active", 2 + 1 + 0);
  expectCount(up, "opened_total", 9 + 2 + 4);
  expectCount(up, "reused_total", 4991 + 10 + 100);
  expectCount(up, "failed_total", 0 + 3 + 0);

  // upstreams in index order, servers grouped under theirs, in server order
  const json& ups = w["upstreams"];
  ASSERT_EQ(ups.size(), 2u);
  EXPECT_EQ(ups[0]["name"], "app");
  expectCount(ups[0], "max_idle", 32);
  ASSERT_EQ(ups[0]["servers"].size(), 2u);
  EXPECT_EQ(ups[0]["servers"][0]["address"], "127.0.0.1:5000");
  EXPECT_EQ(ups[0]["servers"][1]["address"], "127.0.0.1:5001");
  EXPECT_EQ(ups[1]["name"], kOddName);  // escaping round-trips
  ASSERT_EQ(ups[1]["servers"].size(), 1u);

  const json& s = ups[0]["servers"][0];
  EXPECT_EQ(s["address"], "127.0.0.1:5000");
  ASSERT_TRUE(s["healthy"].is_boolean());
  EXPECT_EQ(s["healthy"], true);
  expectCount(s, "open", 8);
  expectCount(s, "idle", 6);
  expectCount(s, "active", 2);
  expectCount(s, "opened_total", 9);
  expectCount(s, "reused_total", 4991);
  expectCount(s, "failed_total", 0);
  expectCount(s, "requests_total", 5000);
  expectCount(s, "closed_idle_total", 7);
  ASSERT_TRUE(s["no_reuse"].is_object());
  EXPECT_EQ(s["no_reuse"].size(), static_cast<size_t>(NoReuse::kCount) - 1);
  EXPECT_FALSE(s["no_reuse"].contains("reusable"));
  expectCount(s["no_reuse"], "upstream_close", 5);
  expectCount(s["no_reuse"], "error", 0);

  const json& v6 = ups[1]["servers"][0];
  EXPECT_EQ(v6["address"], "[::1]:7000");
  EXPECT_EQ(v6["healthy"], false);
  expectCount(v6["no_reuse"], "pool_full", 6);

  // Sums hold for every worker; the one without upstreams has empty arrays.
  for (const json& wk : j["workers"]) {
    uint64_t open = 0, idle = 0, active = 0, opened = 0, reused = 0, failed = 0;
    for (const json& u : wk["upstreams"]) {
      for (const json& sv : u["servers"]) {
        open += sv["open"].get<uint64_t>();
        idle += sv["idle"].get<uint64_t>();
        active += sv["active"].get<uint64_t>();
        opened += sv["opened_total"].get<uint64_t>();
        reused += sv["reused_total"].get<uint64_t>();
        failed += sv["failed_total"].get<uint64_t>();
      }
    }
    EXPECT_EQ(wk["upstream"]["open"], open);
    EXPECT_EQ(wk["upstream"]["idle"], idle);
    EXPECT_EQ(wk["upstream"]["active"], active);
    EXPECT_EQ(wk["upstream"]["opened_total"], opened);
    EXPECT_EQ(wk["upstream"]["reused_total"], reused);
    EXPECT_EQ(wk["upstream"]["failed_total"], failed);
  }
  EXPECT_TRUE(j["workers"][1]["upstreams"].is_array());
  EXPECT_TRUE(j["workers"][1]["upstreams"].empty());
}

TEST(AdminRenderJson, Totals) {
  auto seg = makeSegment();
  const json j = renderJson(*seg);
  const json& t = j["totals"];
  expectCount(t, "accepted", 100 + 120 + 20);
  expectCount(t, "requests", 900 + 5000 + 30);
  expectCount(t, "clients_active", 1 + 3 + 0);
  expectCount(t, "clients_idle", 2 + 40 + 5);
  expectCount(t, "upstream_open", 3 + 13);
  expectCount(t, "upstream_idle", 2 + 10);
  expectCount(t, "upstream_active", 1 + 3);
  expectCount(t, "upstream_opened_total", 5 + 15);
  expectCount(t, "upstream_reused_total", 895 + 5101);
  expectCount(t, "upstream_failed_total", 1 + 3);
  expectCount(t, "workers", 3);
  // draining: app 32 x 1 server; pid 5001: app 32 x 2 + odd 4 x 1; pid 9001: none
  expectCount(t, "upstream_bound", 32 + 64 + 4);
  expectCount(t, "admin_accepted", 11 + 13 + 3);
  expectCount(t, "admin_active", 1 + 2 + 1);
  expectCount(t, "admin_denied", 1 + 2 + 2);
  ASSERT_TRUE(t["reuse_ratio"].is_number_float());
  EXPECT_NEAR(t["reuse_ratio"].get<double>(), 5996.0 / (5996.0 + 20.0), 1e-4);
  // HTTP/2: the listed workers only (the free and the starting slot hold 100s).
  expectCount(t, "http2_connections", 1 + 7 + 2);
  expectCount(t, "http2_streams_open", 2 + 11 + 5);
  expectCount(t, "http2_streams_total", 50 + 900 + 30);
  expectCount(t, "http2_resets_sent_total", 3 + 13 + 1);
  expectCount(t, "http2_resets_received_total", 4 + 17 + 0);
  expectCount(t, "http2_goaways_sent_total", 1 + 2 + 6);

  // totals == sums over the listed workers
  uint64_t accepted = 0, open = 0;
  for (const json& w : j["workers"]) {
    accepted += w["accepted"].get<uint64_t>();
    open += w["upstream"]["open"].get<uint64_t>();
  }
  EXPECT_EQ(t["accepted"], accepted);
  EXPECT_EQ(t["upstream_open"], open);
  for (const char* k : {"connections", "streams_open", "streams_total", "resets_sent_total",
                        "resets_received_total", "goaways_sent_total"}) {
    uint64_t sum = 0;
    for (const json& w : j["workers"]) sum += w["http2"][k].get<uint64_t>();
    EXPECT_EQ(t[std::string("http2_") + k], sum) << k;
  }
}

TEST(AdminRenderJson, EmptySegment) {
  auto seg = std::make_unique<StatsSegment>();
  std::string raw;
  const json j = renderJson(*seg, &raw);
  EXPECT_TRUE(j["workers"].is_array());
  EXPECT_TRUE(j["workers"].empty());
  EXPECT_EQ(j["accept_mode"], "");
  EXPECT_EQ(j["uptime_seconds"].get<double>(), 0.0);
  expectCount(j["totals"], "upstream_open", 0);
  expectCount(j["totals"], "workers", 0);
  EXPECT_EQ(j["totals"]["reuse_ratio"].get<double>(), 0.0);
  for (const char* k : {"http2_connections", "http2_streams_open", "http2_streams_total",
                        "http2_resets_sent_total", "http2_resets_received_total",
                        "http2_goaways_sent_total"}) {
    expectCount(j["totals"], k, 0);
  }
}

TEST(AdminRenderJson, EscapesControlAndInvalidUtf8) {
  auto seg = makeSegment();
  WorkerSlot& w = seg->workers[9];
  w.upstream_count = 1;
  w.server_count = 1;
  setName(w.upstreams[0].name, "tab\there\x01\xC3\xA9");  // control chars + valid é
  setServer(*seg, w, 0, {"bad\xFF\xC3", 0, true, 0, 0, 0, 0, 0, 0, 0, 0, NoReuse::kError, 0});
  std::string raw;
  const json j = renderJson(*seg, &raw);
  EXPECT_NE(raw.find("tab\\there\\u0001\xC3\xA9"), std::string::npos) << raw;
  const json& u = j["workers"][1]["upstreams"][0];
  EXPECT_EQ(u["name"], "tab\there\x01\xC3\xA9");
  EXPECT_EQ(u["servers"][0]["address"], "bad\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(AdminRenderJson, FullLengthNameWithoutNul) {
  auto seg = makeSegment();
  WorkerSlot& w = seg->workers[9];
  w.upstream_count = 1;
  std::memset(w.upstreams[0].name, 'x', kNameBytes);  // no terminator
  const json j = renderJson(*seg);
  EXPECT_EQ(j["workers"][1]["upstreams"][0]["name"], std::string(kNameBytes, 'x'));
}

TEST(AdminRenderJson, AppendsToOut) {
  auto seg = makeSegment();
  std::string out = "prefix";
  renderStatsJson(*seg, context(), out);
  EXPECT_EQ(out.rfind("prefix{", 0), 0u);
}

// ------------------------------------------------------------------ Prometheus

// A strict line-by-line checker of the text exposition format 0.0.4, as
// poolgate emits it (counters and gauges only, no timestamps).
struct Exposition {
  std::vector<std::string> errors;
  std::map<std::string, std::string> types;           // family -> type
  std::map<std::string, double> series;               // "name{sorted labels}" -> value
  std::map<std::string, std::vector<std::map<std::string, std::string>>> labels;  // per name
};

bool validMetricName(const std::string& s) {
  static const std::regex re("[a-zA-Z_:][a-zA-Z0-9_:]*");
  return std::regex_match(s, re);
}

bool validLabelName(const std::string& s) {
  static const std::regex re("[a-zA-Z_][a-zA-Z0-9_]*");
  return std::regex_match(s, re) && s.rfind("__", 0) != 0;
}

bool parseValue(const std::string& s, double& v) {
  if (s == "+Inf" || s == "-Inf" || s == "NaN") return true;
  static const std::regex re("[-+]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][-+]?[0-9]+)?");
  if (!std::regex_match(s, re)) return false;
  v = std::stod(s);
  return true;
}

Exposition validate(const std::string& text) {
  Exposition e;
  auto err = [&](size_t line, const std::string& what) {
    e.errors.push_back("line " + std::to_string(line) + ": " + what);
  };
  if (text.empty() || text.back() != '\n') err(0, "must end with a newline");

  std::set<std::string> closed;   // families already finished
  std::set<std::string> helped;   // families with a HELP line
  std::string current;            // family being written
  bool expect_type = false;       // the previous line was HELP
  size_t lineno = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    ++lineno;
    if (line.empty()) { err(lineno, "empty line"); continue; }
    if (line.find('\r') != std::string::npos) err(lineno, "CR");

    if (line[0] == '#') {
      std::istringstream ls(line);
      std::string hash, kind, name;
      ls >> hash >> kind >> name;
      if (hash != "#" || (kind != "HELP" && kind != "TYPE")) { err(lineno, "stray comment"); continue; }
      if (!validMetricName(name)) err(lineno, "bad metric name '" + name + "'");
      const std::string prefix = "# " + kind + " " + name + " ";
      if (line.rfind(prefix, 0) != 0) { err(lineno, "malformed " + kind); continue; }
      const std::string rest = line.substr(prefix.size());
      if (kind == "HELP") {
        if (expect_type) err(lineno, "HELP not followed by TYPE");
        if (helped.count(name) || closed.count(name) || name == current) {
          err(lineno, "family " + name + " appears twice");
        }
        if (!current.empty()) closed.insert(current);
        current = name;
        helped.insert(name);
        if (rest.empty()) err(lineno, "empty HELP");
        for (size_t i = 0; i < rest.size(); ++i) {
          if (rest[i] == '\\') {
            if (i + 1 >= rest.size() || (rest[i + 1] != '\\' && rest[i + 1] != 'n')) {
              err(lineno, "bad escape in HELP");
            }
            ++i;
          }
        }
        expect_type = true;
      } else {
        if (!expect_type || name != current) err(lineno, "TYPE must follow the HELP of " + name);
        if (rest != "counter" && rest != "gauge") err(lineno, "bad type '" + rest + "'");
        if (rest == "counter" && (name.size() < 6 || name.substr(name.size() - 6) != "_total")) {
          err(lineno, "counter " + name + " must end in _total");
        }
        if (e.types.count(name)) err(lineno, "TYPE twice");
        e.types[name] = rest;
        expect_type = false;
      }
      continue;
    }

    if (expect_type) err(lineno, "sample between HELP and TYPE");
    // name
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    const std::string name = line.substr(0, i);
    if (!validMetricName(name)) err(lineno, "bad sample name '" + name + "'");
    if (name != current || !e.types.count(name)) {
      err(lineno, "sample " + name + " outside its family (current " + current + ")");
    }
    // labels
    std::map<std::string, std::string> lab;
    if (i < line.size() && line[i] == '{') {
      ++i;
      bool first = true;
      while (true) {
        if (i >= line.size()) { err(lineno, "unterminated labels"); break; }
        if (line[i] == '}') { ++i; break; }
        if (!first) {
          if (line[i] != ',') { err(lineno, "expected ','"); break; }
          ++i;
        }
        first = false;
        size_t k = i;
        while (k < line.size() && line[k] != '=') ++k;
        const std::string lname = line.substr(i, k - i);
        if (!validLabelName(lname)) err(lineno, "bad label name '" + lname + "'");
        if (k + 1 >= line.size() || line[k + 1] != '"') { err(lineno, "expected '=\"'"); break; }
        i = k + 2;
        std::string value;
        bool closed_quote = false;
        while (i < line.size()) {
          const char c = line[i];
          if (c == '"') { closed_quote = true; ++i; break; }
          if (c == '\\') {
            if (i + 1 >= line.size()) break;
            const char n = line[i + 1];
            if (n == '\\') value += '\\';
            else if (n == '"') value += '"';
            else if (n == 'n') value += '\n';
            else err(lineno, std::string("bad escape \\") + n);
            i += 2;
            continue;
          }
          value += c;
          ++i;
        }
        if (!closed_quote) { err(lineno, "unterminated label value"); break; }
        if (lab.count(lname)) err(lineno, "duplicate label " + lname);
        lab[lname] = value;
      }
    }
    // exactly one space, then a value, nothing else (no timestamp)
    if (i >= line.size() || line[i] != ' ') { err(lineno, "expected ' ' before value"); continue; }
    const std::string value = line.substr(i + 1);
    double v = 0;
    if (!parseValue(value, v)) { err(lineno, "bad value '" + value + "'"); continue; }
    if (e.types[name] == "counter" && v < 0) err(lineno, "negative counter");

    std::string key = name + "{";
    for (const auto& [k, val] : lab) key += k + "=" + val + ",";
    key += "}";
    if (e.series.count(key)) err(lineno, "duplicate series " + key);
    e.series[key] = v;
    e.labels[name].push_back(lab);
  }
  if (expect_type) err(lineno, "HELP at the end without TYPE");
  return e;
}

std::string seriesKey(const std::string& name, std::map<std::string, std::string> lab) {
  std::string key = name + "{";
  for (const auto& [k, v] : lab) key += k + "=" + v + ",";
  return key + "}";
}

TEST(AdminRenderMetrics, ValidatorRejectsBadInput) {
  const char* bad[] = {
      "m 1\n",                                                    // no HELP/TYPE
      "# HELP m x\nm 1\n",                                        // no TYPE
      "# HELP m x\n# TYPE m counter\nm 1\n",                      // counter without _total
      "# HELP m x\n# TYPE m gauge\nm{a=\"1\"} 1\nm{a=\"1\"} 2\n", // duplicate series
      "# HELP m x\n# TYPE m gauge\nm{a=\"1} 1\n",                 // unterminated value
      "# HELP m x\n# TYPE m gauge\nm{a=\"\\t\"} 1\n",             // bad escape
      "# HELP m x\n# TYPE m gauge\nm 1 1700000000\n",             // timestamp
      "# HELP m x\n# TYPE m gauge\nm{1a=\"x\"} 1\n",              // bad label name
      "# HELP m x\n# TYPE m gauge\nm 1\n# HELP n x\n# TYPE n gauge\nn 1\nm 2\n",  // split
      "# HELP m x\n# TYPE m gauge\nm 1",                          // no final newline
  };
  for (const char* text : bad) EXPECT_FALSE(validate(text).errors.empty()) << text;
  EXPECT_TRUE(validate("# HELP m_total x\n# TYPE m_total counter\nm_total{a=\"q\\\"\\\\\\n\"} 1\n")
                  .errors.empty());
}

TEST(AdminRenderMetrics, StrictlyValid) {
  auto seg = makeSegment();
  std::string out;
  renderMetrics(*seg, context(), out);
  const Exposition e = validate(out);
  for (const auto& m : e.errors) ADD_FAILURE() << m;
  EXPECT_TRUE(e.errors.empty()) << out;

  const std::map<std::string, std::string> expected_types = {
      {"poolgate_info", "gauge"},
      {"poolgate_master_generation", "gauge"},
      {"poolgate_uptime_seconds", "gauge"},
      {"poolgate_worker_accepted_total", "counter"},
      {"poolgate_worker_requests_total", "counter"},
      {"poolgate_worker_clients", "gauge"},
      {"poolgate_worker_http2_connections", "gauge"},
      {"poolgate_worker_http2_streams", "gauge"},
      {"poolgate_worker_http2_streams_total", "counter"},
      {"poolgate_worker_http2_resets_total", "counter"},
      {"poolgate_worker_http2_goaways_total", "counter"},
      {"poolgate_upstream_connections", "gauge"},
      {"poolgate_upstream_connections_open", "gauge"},
      {"poolgate_upstream_opened_total", "counter"},
      {"poolgate_upstream_reused_total", "counter"},
      {"poolgate_upstream_failed_total", "counter"},
      {"poolgate_upstream_requests_total", "counter"},
      {"poolgate_upstream_server_healthy", "gauge"},
      {"poolgate_upstream_no_reuse_total", "counter"},
  };
  for (const auto& [name, type] : expected_types) {
    ASSERT_TRUE(e.types.count(name)) << name;
    EXPECT_EQ(e.types.at(name), type) << name;
  }
  for (const auto& [name, type] : e.types) EXPECT_EQ(name.rfind("poolgate_", 0), 0u) << name;
}

TEST(AdminRenderMetrics, Values) {
  auto seg = makeSegment();
  std::string out;
  renderMetrics(*seg, context(), out);
  const Exposition e = validate(out);
  ASSERT_TRUE(e.errors.empty());
  auto value = [&](const std::string& name, const std::map<std::string, std::string>& lab) {
    const auto it = e.series.find(seriesKey(name, lab));
    EXPECT_NE(it, e.series.end()) << seriesKey(name, lab) << "\n" << out;
    return it == e.series.end() ? -1.0 : it->second;
  };
  const std::map<std::string, std::string> w5 = {{"worker", "1"}, {"pid", "5001"}, {"generation", "2"}};
  auto with = [](std::map<std::string, std::string> base,
                 std::initializer_list<std::pair<const std::string, std::string>> more) {
    for (const auto& kv : more) base[kv.first] = kv.second;
    return base;
  };

  EXPECT_EQ(value("poolgate_info", {{"version", "0.1.0"}, {"accept_mode", "reuseport"}}), 1);
  EXPECT_EQ(value("poolgate_master_generation", {}), 2);
  EXPECT_DOUBLE_EQ(value("poolgate_uptime_seconds", {}), 12.5);
  EXPECT_EQ(value("poolgate_worker_accepted_total", w5), 120);
  EXPECT_EQ(value("poolgate_worker_requests_total", w5), 5000);
  EXPECT_EQ(value("poolgate_worker_clients", with(w5, {{"state", "active"}})), 3);
  EXPECT_EQ(value("poolgate_worker_clients", with(w5, {{"state", "idle"}})), 40);
  EXPECT_EQ(value("poolgate_worker_admin_accepted_total", w5), 13);
  EXPECT_EQ(value("poolgate_worker_admin_connections", w5), 2);
  EXPECT_EQ(value("poolgate_worker_admin_denied_total", w5), 2);
  EXPECT_EQ(value("poolgate_worker_http2_connections", w5), 7);
  EXPECT_EQ(value("poolgate_worker_http2_streams", w5), 11);
  EXPECT_EQ(value("poolgate_worker_http2_streams_total", w5), 900);
  EXPECT_EQ(value("poolgate_worker_http2_resets_total", with(w5, {{"direction", "sent"}})), 13);
  EXPECT_EQ(value("poolgate_worker_http2_resets_total", with(w5, {{"direction", "received"}})), 17);
  EXPECT_EQ(value("poolgate_worker_http2_goaways_total", w5), 2);
  const std::map<std::string, std::string> w4 = {{"worker", "0"}, {"pid", "4001"}, {"generation", "1"}};
  const std::map<std::string, std::string> w9 = {{"worker", "0"}, {"pid", "9001"}, {"generation", "2"}};
  EXPECT_EQ(value("poolgate_worker_http2_connections", w4), 1);
  EXPECT_EQ(value("poolgate_worker_http2_streams", w9), 5);
  EXPECT_EQ(value("poolgate_worker_http2_resets_total", with(w4, {{"direction", "received"}})), 4);
  EXPECT_EQ(value("poolgate_worker_http2_goaways_total", w9), 6);

  const auto s0 = with(w5, {{"upstream", "app"}, {"server", "127.0.0.1:5000"}});
  EXPECT_EQ(value("poolgate_upstream_connections", with(s0, {{"state", "idle"}})), 6);
  EXPECT_EQ(value("poolgate_upstream_connections", with(s0, {{"state", "active"}})), 2);
  EXPECT_EQ(value("poolgate_upstream_connections_open", s0), 8);
  EXPECT_EQ(value("poolgate_upstream_opened_total", s0), 9);
  EXPECT_EQ(value("poolgate_upstream_reused_total", s0), 4991);
  EXPECT_EQ(value("poolgate_upstream_failed_total", s0), 0);
  EXPECT_EQ(value("poolgate_upstream_requests_total", s0), 5000);
  EXPECT_EQ(value("poolgate_upstream_server_healthy", s0), 1);
  EXPECT_EQ(value("poolgate_upstream_no_reuse_total", with(s0, {{"reason", "upstream_close"}})), 5);

  // the odd name, escaped in the text, parses back
  const auto s1 = with(w5, {{"upstream", kOddName}, {"server", "[::1]:7000"}});
  EXPECT_EQ(value("poolgate_upstream_server_healthy", s1), 0);
  EXPECT_EQ(value("poolgate_upstream_no_reuse_total", with(s1, {{"reason", "pool_full"}})), 6);
  EXPECT_NE(out.find("upstream=\"we\\\"ird\\\\na\\nme\""), std::string::npos);

  // per-worker series carry worker/pid/generation; per-server ones add upstream/server
  for (const auto& lab : e.labels.at("poolgate_worker_accepted_total")) {
    EXPECT_EQ(lab.size(), 3u);
    EXPECT_TRUE(lab.count("worker") && lab.count("pid") && lab.count("generation"));
  }
  for (const auto& lab : e.labels.at("poolgate_upstream_opened_total")) {
    EXPECT_EQ(lab.size(), 5u);
    EXPECT_TRUE(lab.count("upstream") && lab.count("server"));
  }
  EXPECT_EQ(e.labels.at("poolgate_worker_accepted_total").size(), 3u);  // live workers only
  for (const char* family : {"poolgate_worker_http2_connections", "poolgate_worker_http2_streams",
                             "poolgate_worker_http2_streams_total", "poolgate_worker_http2_goaways_total"}) {
    ASSERT_TRUE(e.labels.count(family)) << family;
    EXPECT_EQ(e.labels.at(family).size(), 3u) << family;
    for (const auto& lab : e.labels.at(family)) EXPECT_EQ(lab.size(), 3u) << family;
  }
  // Resets: one series per worker and direction, the direction the only extra label.
  ASSERT_TRUE(e.labels.count("poolgate_worker_http2_resets_total"));
  EXPECT_EQ(e.labels.at("poolgate_worker_http2_resets_total").size(), 6u);
  for (const auto& lab : e.labels.at("poolgate_worker_http2_resets_total")) {
    EXPECT_EQ(lab.size(), 4u);
    ASSERT_TRUE(lab.count("direction"));
    EXPECT_TRUE(lab.at("direction") == "sent" || lab.at("direction") == "received") << lab.at("direction");
  }
  EXPECT_EQ(e.labels.at("poolgate_upstream_opened_total").size(), 4u);  // 1 + 3 + 0 servers
  EXPECT_EQ(e.labels.at("poolgate_upstream_no_reuse_total").size(),
            4u * (static_cast<size_t>(NoReuse::kCount) - 1));  // no "reusable"
  EXPECT_EQ(out.find("reason=\"reusable\""), std::string::npos);
  EXPECT_EQ(out.find("pid=\"999\""), std::string::npos);
  EXPECT_EQ(out.find("pid=\"7001\""), std::string::npos);
}

TEST(AdminRenderMetrics, EmptySegmentIsValid) {
  auto seg = std::make_unique<StatsSegment>();
  std::string out;
  renderMetrics(*seg, context(), out);
  const Exposition e = validate(out);
  for (const auto& m : e.errors) ADD_FAILURE() << m;
}

// ------------------------------------------------------------------ dashboard

TEST(AdminRenderDashboard, SelfContainedAndPollsStats) {
  std::string out;
  renderDashboard(RenderContext{"1.2<b>&", kNowMs}, out);
  EXPECT_EQ(out.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(out.find("<canvas"), std::string::npos);
  EXPECT_NE(out.find("fetch(\"/stats\""), std::string::npos);
  EXPECT_EQ(out.find("http://"), std::string::npos);
  EXPECT_EQ(out.find("https://"), std::string::npos);
  EXPECT_EQ(out.find("src="), std::string::npos);  // no external script/image
  EXPECT_EQ(out.find("<link"), std::string::npos);
  EXPECT_EQ(out.find("@import"), std::string::npos);
  EXPECT_NE(out.find("<title>poolgate 1.2&lt;b&gt;&amp;</title>"), std::string::npos);
  EXPECT_EQ(out.find("1.2<b>"), std::string::npos);
  EXPECT_NE(out.find("draining"), std::string::npos);
  EXPECT_NE(out.find("</html>"), std::string::npos);
}

// The worker table has the HTTP/2 columns, read from each worker's "http2" object, and
// the totals line the HTTP/2 totals.
TEST(AdminRenderDashboard, ShowsHttp2ConnectionsAndStreams) {
  std::string page;
  renderDashboard(RenderContext{"0.1.0", kNowMs}, page);
  const size_t h2conns = page.find("<th>h2 conns</th>");
  const size_t h2streams = page.find("<th>h2 streams</th>");
  ASSERT_NE(h2conns, std::string::npos);
  ASSERT_NE(h2streams, std::string::npos);
  EXPECT_LT(page.find("<th>cl idle</th>"), h2conns);
  EXPECT_LT(h2conns, h2streams);
  EXPECT_LT(h2streams, page.find("<th>sv active</th>"));
  EXPECT_NE(page.find("w.http2"), std::string::npos);
  EXPECT_NE(page.find("td(w2.connections) + td(w2.streams_open)"), std::string::npos);
  EXPECT_NE(page.find("t.http2_connections"), std::string::npos);
  EXPECT_NE(page.find("t.http2_streams_open"), std::string::npos);
}

// The text between `open` and `close`, found independently of the renderer.
std::string inner(const std::string& page, const std::string& open, const std::string& close) {
  const size_t begin = page.find(open);
  const size_t end = page.find(close, begin);
  if (begin == std::string::npos || end == std::string::npos) return "<missing>";
  return page.substr(begin + open.size(), end - begin - open.size());
}

std::string sha256Source(const std::string& text) {
  unsigned char digest[32];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  unsigned char b64[64] = {};
  EVP_EncodeBlock(b64, digest, sizeof digest);
  return "'sha256-" + std::string(reinterpret_cast<char*>(b64)) + "'";
}

size_t occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(AdminRenderDashboard, PolicyHashesTheServedScriptAndStyle) {
  std::string page;
  renderDashboard(RenderContext{"0.1.0", kNowMs}, page);
  const std::string policy = dashboardContentSecurityPolicy();
  // One inline script and one inline style, each admitted by its own hash, and nothing
  // else: no inline style attribute or event handler (a policy with hashes refuses them).
  EXPECT_EQ(occurrences(page, "<script"), 1u);
  EXPECT_EQ(occurrences(page, "<style"), 1u);
  EXPECT_EQ(occurrences(page, "style=\""), 0u);
  EXPECT_EQ(occurrences(page, " onclick="), 0u);
  EXPECT_EQ(occurrences(page, " onload="), 0u);
  EXPECT_EQ(occurrences(page, "eval("), 0u);
  const std::string script = sha256Source(inner(page, "<script>", "</script>"));
  const std::string style = sha256Source(inner(page, "<style>", "</style>"));
  EXPECT_NE(policy.find("script-src " + script + ";"), std::string::npos) << policy;
  EXPECT_NE(policy.find("style-src " + style + ";"), std::string::npos) << policy;
  EXPECT_EQ(policy.rfind("default-src 'none';", 0), 0u) << policy;
  EXPECT_NE(policy.find("connect-src 'self'"), std::string::npos) << policy;
  EXPECT_NE(policy.find("frame-ancestors 'none'"), std::string::npos) << policy;
  EXPECT_EQ(policy.find("unsafe"), std::string::npos) << policy;
  EXPECT_EQ(policy.find('\n'), std::string::npos);
  EXPECT_EQ(policy.find('\r'), std::string::npos);
}

}  // namespace
}  // namespace poolgate
