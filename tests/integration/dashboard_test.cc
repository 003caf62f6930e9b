// The admin dashboard in a real browser (Debian's headless `chromium`), the screenshot
// script, and tools/poolgate-top.
//
// The browser is driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
// JSON messages ended by a NUL byte, the browser reads fd 3 and writes fd 4), so the test
// watches the page in real time: it reads the DOM and the canvas pixels while it drives
// load, a reload and an outage through poolgate. One more test uses the plain
// `--dump-dom --virtual-time-budget` mode. Chromium runs in its own process group, with a
// fresh profile; every wait is bounded and the whole group is killed at the end.
//
// Chromium missing is a failure, never a skip: tools/install-deps installs it.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>
#include <optional>
#include <regex>
#include <sstream>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

// tests/integration/dashboard_test.cc -> the repository root.
std::string repoRoot() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().string();
}

std::string tool(std::string_view name) { return repoRoot() + "/tools/" + std::string(name); }

std::optional<std::string> findInPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

constexpr const char* kNoChromium =
    "chromium is not installed: the dashboard is tested in Debian's headless chromium. "
    "Run tools/install-deps (or apt-get install chromium).";

std::string chromiumBinary() { return findInPath("chromium").value_or(""); }

std::vector<std::string> chromiumFlags(const TempDir& profile) {
  return {"--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
          "--no-first-run",
          "--disable-quic",
          "--disable-extensions",
          "--disable-dev-shm-usage",
          "--hide-scrollbars",
          "--mute-audio",
          "--user-data-dir=" + profile.file("profile")};
}

// A browser process group started by spawnGuarded() (so that a killed test takes the
// browser, its zygote and renderers along); stdout and stderr go to files.
// `pipeFd`, when >= 0, becomes both fd 3 and fd 4 of the browser (the DevTools pipe).
class BrowserProcess {
 public:
  BrowserProcess(const std::vector<std::string>& argv, const std::string& out,
                 const std::string& err, int pipeFd = -1) {
    SpawnOptions options;
    options.stdoutPath = out;
    options.stderrPath = err;
    options.truncate = true;
    options.mode = 0600;
    if (pipeFd >= 0) options.dups = {{pipeFd, 3}, {pipeFd, 4}};
    pid_ = spawnGuarded(argv, options);
  }
  ~BrowserProcess() { kill(); }
  BrowserProcess(const BrowserProcess&) = delete;
  BrowserProcess& operator=(const BrowserProcess&) = delete;

  pid_t pid() const { return pid_; }

  // Waits for the leader to exit; true if it did within `timeout`.
  bool wait(Millis timeout) {
    if (reaped_) return true;
    const auto deadline = Clock::now() + timeout;
    while (true) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_ || (r < 0 && errno == ECHILD)) {
        reaped_ = true;
        return true;
      }
      if (Clock::now() >= deadline) return false;
      ::usleep(10'000);  // polling the child's state with a deadline
    }
  }

  // SIGKILL to the whole group (browser, zygote, renderers, GPU process), then reap.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(-pid_, SIGKILL);
    if (!reaped_) {
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      reaped_ = true;
    }
    // The other members are not our children (the browser forked them): wait until the
    // group is empty so that the profile directory can be removed.
    const auto deadline = Clock::now() + 5s;
    while (::kill(-pid_, 0) == 0 && Clock::now() < deadline) ::usleep(10'000);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
};

bool truthy(const Json& v) {
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0;
  if (v.is_string()) return !v.get<std::string>().empty();
  return true;
}

constexpr const char* kRecordViolations = R"JS(
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.effectiveDirective + " blocked " + (e.blockedURI || "") +
                              " " + (e.sample || ""));
});
)JS";

// Headless chromium with a DevTools session attached to its one page. `extraFlags` are
// added to chromiumFlags() (e.g. --ignore-certificate-errors for a test's own certificate).
class Browser {
 public:
  explicit Browser(const std::string& url, int width = 1280, int height = 900,
                   const std::vector<std::string>& extraFlags = {}) {
    const std::string binary = chromiumBinary();
    if (binary.empty()) throw HarnessError(kNoChromium);
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      throw HarnessError(std::string("socketpair: ") + std::strerror(errno));
    // Numbered 10 or more, so that dup2 onto 3 and 4 really duplicates (and clears
    // close-on-exec) in the child.
    fd_ = ::fcntl(sv[0], F_DUPFD_CLOEXEC, 10);
    const int child = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
    ::close(sv[0]);
    ::close(sv[1]);
    std::vector<std::string> argv = {binary};
    for (auto& f : chromiumFlags(profile_)) argv.push_back(f);
    for (auto& f : extraFlags) argv.push_back(f);
    argv.push_back("--remote-debugging-pipe");
    argv.push_back("--window-size=" + std::to_string(width) + "," + std::to_string(height));
    argv.push_back("about:blank");
    try {
      process_ = std::make_unique<BrowserProcess>(argv, profile_.file("stdout"),
                                                  profile_.file("stderr"), child);
    } catch (...) {
      ::close(child);
      throw;
    }
    ::close(child);
    try {
      attach(url, width, height);
    } catch (...) {
      process_->kill();  // the destructor does not run when the constructor throws
      ::close(fd_);
      throw;
    }
  }

  ~Browser() {
    if (process_) {
      try {
        if (fd_ >= 0) send({{"id", ++nextId_}, {"method", "Browser.close"}});
      } catch (const std::exception&) {
      }
      process_->wait(3s);
      process_->kill();
    }
    if (fd_ >= 0) ::close(fd_);
  }
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;

 private:
  // Attaches a DevTools session to the page target and loads `url` in it.
  void attach(const std::string& url, int width, int height) {
    // The page target (about:blank) appears shortly after start-up.
    std::string target;
    const auto deadline = Clock::now() + 30s;
    while (target.empty()) {
      Json infos = call("Target.getTargets", Json::object(), 30s, false).at("targetInfos");
      for (const auto& t : infos)
        if (t.value("type", "") == "page") target = t.at("targetId").get<std::string>();
      if (target.empty()) {
        if (Clock::now() > deadline) throw HarnessError("chromium opened no page within 30 s");
        waitReadable(50ms);
      }
    }
    session_ = call("Target.attachToTarget", {{"targetId", target}, {"flatten", true}}, 10s, false)
                   .at("sessionId")
                   .get<std::string>();
    call("Emulation.setDeviceMetricsOverride",
         {{"width", width}, {"height", height}, {"deviceScaleFactor", 1}, {"mobile", false}});
    // Every Content-Security-Policy violation of the page, recorded from before its own
    // script runs (DevTools-injected scripts are not subject to the page's policy).
    call("Page.enable");
    call("Page.addScriptToEvaluateOnNewDocument", {{"source", kRecordViolations}});
    Json nav = call("Page.navigate", {{"url", url}}, 20s);
    if (nav.contains("errorText"))
      throw HarnessError("chromium cannot load " + url + ": " + nav["errorText"].dump());
  }

 public:
  // Sends one command and returns its result; throws on a protocol error or timeout.
  Json call(const std::string& method, Json params = Json::object(), Millis timeout = 10s,
            bool inSession = true) {
    const int id = ++nextId_;
    Json message = {{"id", id}, {"method", method}, {"params", std::move(params)}};
    if (inSession && !session_.empty()) message["sessionId"] = session_;
    send(message);
    const auto deadline = Clock::now() + timeout;
    while (true) {
      size_t end;
      while ((end = buf_.find('\0')) != std::string::npos) {
        Json answer = Json::parse(buf_.substr(0, end), nullptr, false);
        buf_.erase(0, end + 1);
        if (!answer.is_object() || answer.value("id", -1) != id) continue;  // events
        if (answer.contains("error"))
          throw HarnessError("DevTools " + method + ": " + answer["error"].dump());
        return answer.value("result", Json::object());
      }
      const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
      if (left <= 0ms) throw HarnessError("DevTools " + method + ": no answer in time" + stderrTail());
      if (!waitReadable(left)) continue;
      char chunk[65536];
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw HarnessError("chromium closed the DevTools pipe (exited?)" + stderrTail());
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

  // The value of a JavaScript expression in the page.
  Json evaluate(const std::string& expression, Millis timeout = 10s) {
    Json r = call("Runtime.evaluate", {{"expression", expression}, {"returnByValue", true}}, timeout);
    if (r.contains("exceptionDetails"))
      throw HarnessError("JavaScript exception: " + r["exceptionDetails"].dump());
    return r.value("result", Json::object()).value("value", Json());
  }

  // Polls `expression` until it is truthy (bounded); returns that value, or the last
  // value seen (falsy) on timeout.
  Json waitFor(const std::string& expression, Millis timeout) {
    Json last;
    waitUntil(
        [&] {
          last = evaluate(expression);
          return truthy(last);
        },
        timeout, 50ms);
    return last;
  }

  std::string stderrTail() const {
    return "\nchromium stderr (tail):\n" + tailLines(readFile(profile_.file("stderr")), 15);
  }

 private:
  void send(const Json& message) {
    std::string data = message.dump();
    data.push_back('\0');
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw HarnessError("cannot write to chromium's DevTools pipe" + stderrTail());
      off += static_cast<size_t>(n);
    }
  }

  bool waitReadable(Millis timeout) {
    pollfd p{fd_, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
    return rc > 0;
  }

  TempDir profile_;
  std::unique_ptr<BrowserProcess> process_;
  int fd_ = -1;
  int nextId_ = 0;
  std::string buf_;
  std::string session_;
};

// What the test reads from the page: the page's own report (data-* attributes) and,
// independently, the pixels of every canvas: `ink` = non-transparent pixels, `colour` =
// saturated pixels (the series; grid lines and labels are grey).
constexpr const char* kProbe = R"JS((function () {
  var b = document.body;
  if (!b) return null;
  function n(v) { return v === undefined || v === null ? 0 : Number(v); }
  var charts = Array.prototype.map.call(document.querySelectorAll("canvas"), function (c) {
    var ink = 0, colour = 0;
    if (c.width && c.height) {
      var d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      for (var i = 0; i < d.length; i += 4) {
        if (!d[i + 3]) continue;
        ink++;
        var hi = Math.max(d[i], d[i + 1], d[i + 2]), lo = Math.min(d[i], d[i + 1], d[i + 2]);
        if (hi - lo > 40) colour++;
      }
    }
    return {id: c.parentNode.getAttribute("data-chart"), ink: ink, colour: colour,
            points: n(c.getAttribute("data-points"))};
  });
  var rows = Array.prototype.map.call(document.querySelectorAll("#rows tr.w"), function (r) {
    return {pid: r.getAttribute("data-pid"), state: r.getAttribute("data-state"),
            cells: Array.prototype.map.call(r.cells, function (c) { return c.textContent; })};
  });
  return {state: b.getAttribute("data-state"), polls: n(b.getAttribute("data-polls")),
          errors: n(b.getAttribute("data-errors")), requests: n(b.getAttribute("data-requests")),
          rps: n(b.getAttribute("data-rps")), workers: n(b.getAttribute("data-workers")),
          draining: n(b.getAttribute("data-draining")), points: n(b.getAttribute("data-points")),
          drawError: b.getAttribute("data-draw-error"), title: document.title,
          header: document.getElementById("hdr").textContent,
          totals: document.getElementById("tot").textContent,
          error: document.getElementById("err").textContent,
          external: document.querySelectorAll("script[src],link[href],img,iframe,object,embed").length,
          violations: window.__cspViolations === undefined ? null : window.__cspViolations,
          charts: charts, rows: rows,
          servers: Array.prototype.map.call(document.querySelectorAll("#rows tr.srv"),
                                            function (r) { return r.textContent; })};
})())JS";

const Json* chartById(const Json& probe, const std::string& id) {
  for (const auto& c : probe.at("charts"))
    if (c.value("id", "") == id) return &c;
  return nullptr;
}

const Json* upstreamChart(const Json& probe) {
  for (const auto& c : probe.at("charts"))
    if (c.value("id", "").rfind("upstream:", 0) == 0) return &c;
  return nullptr;
}

// A condition over the probe, polled in the page until true (bounded). Returns the last
// probe (for the assertions and failure messages).
Json waitForProbe(Browser& browser, const std::function<bool(const Json&)>& condition,
                  Millis timeout) {
  Json last;
  waitUntil(
      [&] {
        last = browser.evaluate(kProbe);
        return last.is_object() && condition(last);
      },
      timeout, 100ms);
  return last;
}

class Dashboard : public ProxyTest {
 protected:
  std::string adminUrl() const {
    return "http://127.0.0.1:" + std::to_string(proxy_->adminPort()) + "/";
  }
};

// Keep-alive clients sending GETs until told to stop (bounded by `limit`).
class Load {
 public:
  Load(uint16_t port, size_t clients, Millis limit = 30s) {
    result_ = std::async(std::launch::async, [this, port, clients, limit] {
      const auto deadline = Clock::now() + limit;
      return runConcurrently(clients, [&](size_t i) {
        HttpClient client(port);
        for (int n = 0; !stop_ && Clock::now() < deadline; ++n) {
          HttpResponse r = client.get("/load/" + std::to_string(i) + "/" + std::to_string(n));
          if (r.status != 200) throw HarnessError("status " + std::to_string(r.status));
          ++completed_;
        }
      });
    });
  }
  ~Load() { finish(); }
  std::vector<std::string> finish() {
    stop_ = true;
    return result_.valid() ? result_.get() : std::vector<std::string>{};
  }
  uint64_t completed() const { return completed_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> completed_{0};
  std::future<std::vector<std::string>> result_;
};

TEST_F(Dashboard, ChromiumShowsChartsThatFollowLoadReloadAndOutage) {
  ASSERT_FALSE(chromiumBinary().empty()) << kNoChromium;

  // /hold keeps a request in flight until released: it holds an old worker in the
  // draining state during the reload below.
  auto release = std::make_shared<std::atomic<bool>>(false);
  auto holding = std::make_shared<std::atomic<bool>>(false);
  upstream_.setHandler(TestUpstream::holdingHandler(release, holding));
  startProxy(2, "pool = { max_idle = 4; };", "shutdown_timeout = 20.0;");

  Browser browser(adminUrl());

  // 1. The page loads, polls /stats and draws every chart, before any traffic.
  Json idle = waitForProbe(
      browser, [](const Json& p) { return p.at("state") == "ok" && p.at("polls") >= 2; }, 30s);
  ASSERT_TRUE(idle.is_object()) << "the page did not run its script" << browser.stderrTail();
  ASSERT_EQ(idle.at("state"), "ok") << "the page never read /stats: " << idle.dump();
  EXPECT_TRUE(idle.at("drawError").is_null()) << idle.dump();
  EXPECT_NE(idle.at("title").get<std::string>().find("poolgate"), std::string::npos);
  EXPECT_EQ(idle.at("external"), 0) << "the page loads external resources";
  // The page runs under its Content-Security-Policy without breaking it.
  ASSERT_TRUE(idle.at("violations").is_array()) << "the violation recorder did not run";
  EXPECT_TRUE(idle.at("violations").empty()) << idle.at("violations").dump();
  EXPECT_EQ(idle.at("requests"), 0);
  EXPECT_EQ(idle.at("workers"), 2);
  // The admin listener is plain HTTP/1.1, and the page says it came over that.
  EXPECT_EQ(browser.evaluate("document.getElementById('proto').textContent"), "protocol http/1.1");
  // Response buffering, summed over the workers: nothing buffered yet.
  EXPECT_NE(idle.at("totals").get<std::string>().find("buffered 0 \u00b7 to disk 0 \u00b7 in memory 0 KiB"),
            std::string::npos)
      << idle.at("totals");
  // HTTP/2 clients, summed in the totals and per worker in the table (columns "h2 conns"
  // and "h2 streams", after "cl idle"): none yet.
  EXPECT_NE(idle.at("totals").get<std::string>().find("HTTP/2 connections 0 \u00b7 streams 0"),
            std::string::npos)
      << idle.at("totals");
  ASSERT_EQ(idle.at("rows").size(), 2u) << idle.dump();
  for (const auto& row : idle.at("rows")) {
    EXPECT_EQ(row.at("state"), "running");
    ASSERT_GE(row.at("cells").size(), 14u) << row.dump();
    EXPECT_EQ(row.at("cells").at(12), "0") << "h2 conns: " << row.dump();
    EXPECT_EQ(row.at("cells").at(13), "0") << "h2 streams: " << row.dump();
  }
  std::vector<std::string> ids;
  for (const auto& c : idle.at("charts")) {
    ids.push_back(c.value("id", ""));
    EXPECT_GT(c.at("ink"), 100) << "blank canvas: " << c.dump();
    // Every chart but reuse % (no request yet: no ratio) has points, zeros included.
    if (c.value("id", "") != "reuse") {
      EXPECT_GT(c.at("points"), 0) << "nothing plotted: " << c.dump();
    }
  }
  for (const char* id : {"clients", "rps", "reuse", "aps", "ops"})
    EXPECT_NE(std::find(ids.begin(), ids.end(), id), ids.end()) << "no chart " << id;
  const Json* up = upstreamChart(idle);
  ASSERT_NE(up, nullptr) << "no upstream chart: " << idle.dump();
  EXPECT_EQ(up->at("id"), "upstream:app \u2192 " + upstream_.address());
  // The bound, 2 workers x max_idle 4, is drawn (dashed red) and written.
  EXPECT_GT(up->at("colour"), 20) << "no bound line on the upstream chart: " << up->dump();
  EXPECT_NE(idle.at("totals").get<std::string>().find("bound 8"), std::string::npos)
      << idle.at("totals");
  const uint64_t idleClientColour = chartById(idle, "clients")->at("colour").get<uint64_t>();
  const uint64_t idleUpstreamColour = up->at("colour").get<uint64_t>();
  const uint64_t idleRpsColour = chartById(idle, "rps")->at("colour").get<uint64_t>();

  // 2. Load starts: requests/s rises, the connection areas fill.
  {
    Load load(proxy().proxyPort(), 6);
    std::vector<HttpClient> idleClients;  // keep-alive, between requests: "idle" clients
    for (int i = 0; i < 3; ++i) {
      idleClients.push_back(connect());
      ASSERT_EQ(idleClients.back().get("/idle").status, 200);
    }
    Json busy = waitForProbe(
        browser,
        [&](const Json& p) {
          const Json* u = upstreamChart(p);
          return p.at("rps") > 0 && p.at("requests") > 0 && u != nullptr &&
                 chartById(p, "clients")->at("colour") > idleClientColour + 200 &&
                 u->at("colour") > idleUpstreamColour + 200 &&
                 chartById(p, "rps")->at("colour") > idleRpsColour + 20;
        },
        20s);
    EXPECT_GT(busy.at("rps"), 0) << busy.dump();
    EXPECT_GT(busy.at("requests"), 0) << busy.dump();
    EXPECT_GT(chartById(busy, "clients")->at("colour"), idleClientColour + 200)
        << "client connections not drawn: " << busy.dump();
    ASSERT_NE(upstreamChart(busy), nullptr);
    EXPECT_GT(upstreamChart(busy)->at("colour"), idleUpstreamColour + 200)
        << "upstream connections not drawn: " << busy.dump();
    EXPECT_GT(chartById(busy, "rps")->at("colour"), idleRpsColour + 20)
        << "requests/s not drawn: " << busy.dump();
    EXPECT_GT(busy.at("points"), idle.at("points"));
    EXPECT_GT(chartById(busy, "reuse")->at("points"), 0) << "reuse % not plotted: " << busy.dump();
    // Each server row names the pool's demand (peak of concurrent requests):
    // under load at least one worker's is above zero.
    bool demandShown = false;
    for (const auto& row : busy.at("servers")) {
      const std::string text = row.get<std::string>();
      const size_t at = text.find("demand ");
      demandShown = demandShown || (at != std::string::npos && at + 7 < text.size() && text[at + 7] >= '1' &&
                                    text[at + 7] <= '9');
    }
    EXPECT_TRUE(demandShown) << busy.at("servers").dump();
    auto errors = load.finish();
    ASSERT_TRUE(errors.empty()) << errors.front();
    EXPECT_GT(load.completed(), 0u);
  }

  // 3. A reload while a request is in flight: the old worker that carries it is shown
  //    draining, next to the new generation, until the request completes.
  HttpClient held = connect();
  held.send(serializeRequest("GET", "/hold"));
  ASSERT_TRUE(waitUntil([&] { return holding->load(); }, 10s)) << "/hold never reached the upstream";
  proxy().signal(SIGHUP);
  Json draining = waitForProbe(
      browser,
      [](const Json& p) {
        bool rowDraining = false;
        for (const auto& r : p.at("rows")) rowDraining |= r.at("state") == "draining";
        return p.at("draining") >= 1 && rowDraining &&
               p.at("header").get<std::string>().find("generation 2") != std::string::npos;
      },
      15s);
  EXPECT_GE(draining.at("draining"), 1) << "no draining worker shown: " << draining.dump();
  EXPECT_NE(draining.at("header").get<std::string>().find("draining"), std::string::npos)
      << draining.at("header");
  *release = true;
  EXPECT_EQ(held.read().status, 200);
  Json drained = waitForProbe(
      browser, [](const Json& p) { return p.at("draining") == 0 && p.at("workers") == 2; }, 20s);
  EXPECT_EQ(drained.at("draining"), 0) << drained.dump();
  EXPECT_EQ(drained.at("rows").size(), 2u) << drained.dump();

  // 4. /stats goes away: the page says so, keeps its charts and keeps polling.
  proxy().stop();
  Json outage = waitForProbe(
      browser, [](const Json& p) { return p.at("state") == "error" && p.at("errors") >= 1; }, 15s);
  EXPECT_EQ(outage.at("state"), "error") << outage.dump();
  EXPECT_NE(outage.at("error").get<std::string>().find("unavailable"), std::string::npos)
      << outage.dump();
  for (const auto& c : outage.at("charts")) EXPECT_GT(c.at("ink"), 100) << c.dump();
  const auto errorsBefore = outage.at("errors").get<long long>();
  Json later = waitForProbe(
      browser, [&](const Json& p) { return p.at("errors") > errorsBefore; }, 10s);
  EXPECT_GT(later.at("errors"), errorsBefore) << "the page stopped polling after a failure";

  // 5. Through all of it, nothing the page did was refused by its policy. And the
  // policy is really enforced, and a violation really shows: an inline style attribute
  // (what the swatches used to be) is refused and recorded.
  EXPECT_TRUE(later.at("violations").is_array() && later.at("violations").empty())
      << later.at("violations").dump();
  browser.evaluate(
      "document.body.insertAdjacentHTML('beforeend', '<div id=\"csp-probe\" style=\"width:7px\"></div>')");
  Json refused = browser.waitFor("window.__cspViolations.length > 0 && window.__cspViolations", 5s);
  ASSERT_TRUE(refused.is_array()) << "an inline style attribute was not reported as a violation";
  EXPECT_NE(refused.dump().find("style-src"), std::string::npos) << refused.dump();
  EXPECT_NE(browser.evaluate("getComputedStyle(document.getElementById('csp-probe')).width"), "7px")
      << "the inline style was applied: no Content-Security-Policy in force";
}

// The dashboard over HTTPS with ALPN h2, the way an operator serves it: the admin listener
// speaks plain HTTP/1.1 and has no TLS, so a TLS listener with `http2 = true` has
// poolgate's own admin listener as its upstream. Chromium loads the page over h2 and the
// page's /stats polls go over the same h2 connection, through the proxy (one worker: it
// is both the h2 front and the admin server it forwards to). The page says which
// protocol it came over (#proto), and /stats, read directly from the admin listener,
// counts the HTTP/2 connection and its streams.
TEST_F(Dashboard, LoadsOverHttpsWithAlpnH2) {
  ASSERT_FALSE(chromiumBinary().empty()) << kNoChromium;

  // A self-signed certificate for 127.0.0.1; only this test's browser is told to accept
  // it (--ignore-certificate-errors).
  const SelfSignedCertificate pki("127.0.0.1", "IP:127.0.0.1");
  auto config = [&](const std::string& upstream) {
    return "workers = 1;\n"
           "listen = ( { address = \"127.0.0.1:0\"; http2 = true;\n"
           "             tls = { certificates = ( { cert = \"" + pki.cert() + "\"; key = \"" +
           pki.key() + "\"; } ); }; } );\n"
           "admin = { address = \"127.0.0.1:0\"; };\n"
           "upstreams = ( { name = \"admin\"; servers = ( { address = \"" + upstream + "\"; } ); } );\n";
  };
  // The admin port is known once poolgate listens (port 0, from its log): start with the
  // test upstream, then reload with the admin listener as the upstream. The same address
  // text ("127.0.0.1:0") keeps the same bound sockets across a reload.
  startProxyWithConfig(config(upstream_.address()), {});
  const std::string adminAddress = "127.0.0.1:" + std::to_string(proxy().adminPort());
  proxy().dir().write("poolgate.conf", config(adminAddress));
  proxy().signal(SIGHUP);
  ASSERT_TRUE(waitUntil(
      [&] {
        Json st = proxy().stats();
        return st.at("generation") == 2 && st.at("workers").size() == 1 &&
               st.at("workers").at(0).at("state") == "running";
      },
      15s))
      << "the reload onto the admin upstream did not take effect";
  const Json before = proxy().stats().at("totals");
  ASSERT_EQ(before.at("http2_connections"), 0) << before.dump();

  const std::string url = "https://127.0.0.1:" + std::to_string(proxy().proxyPort()) + "/";
  Browser browser(url, 1280, 900, {"--ignore-certificate-errors"});

  // The page loads, polls /stats (over h2, through the proxy) and draws every chart.
  Json ready = waitForProbe(
      browser,
      [](const Json& p) {
        if (p.at("state") != "ok" || p.at("polls") < 3 || p.at("points") <= 0) return false;
        for (const auto& c : p.at("charts"))
          if (c.at("ink") <= 100) return false;
        return true;
      },
      30s);
  ASSERT_TRUE(ready.is_object()) << "the page did not run its script" << browser.stderrTail();
  ASSERT_EQ(ready.at("state"), "ok") << "the page never read /stats over h2: " << ready.dump();
  EXPECT_GE(ready.at("polls"), 3) << ready.dump();
  EXPECT_GT(ready.at("points"), 0) << ready.dump();
  EXPECT_GE(ready.at("charts").size(), 6u) << ready.dump();
  for (const auto& c : ready.at("charts")) EXPECT_GT(c.at("ink"), 100) << "blank canvas: " << c.dump();
  EXPECT_TRUE(ready.at("drawError").is_null()) << ready.dump();
  ASSERT_TRUE(ready.at("violations").is_array()) << "the violation recorder did not run";
  EXPECT_TRUE(ready.at("violations").empty()) << ready.at("violations").dump();
  EXPECT_EQ(ready.at("workers"), 1) << ready.dump();

  // The document came over h2, and the page says so.
  EXPECT_EQ(browser.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol"), "h2");
  EXPECT_EQ(browser.evaluate("document.getElementById('proto').textContent"), "protocol h2");
  EXPECT_EQ(browser.evaluate("document.body.getAttribute('data-protocol')"), "h2");
  // So did every /stats poll.
  Json polled = browser.evaluate(
      "performance.getEntriesByType('resource')"
      ".filter(function (e) { return new URL(e.name).pathname === '/stats'; })"
      ".map(function (e) { return e.nextHopProtocol; })");
  ASSERT_TRUE(polled.is_array()) << polled.dump();
  EXPECT_GE(polled.size(), 3u) << polled.dump();
  for (const auto& p : polled) EXPECT_EQ(p, "h2") << polled.dump();
  // The page's own totals count its HTTP/2 connection (it polls through it).
  const std::string totals = ready.at("totals").get<std::string>();
  EXPECT_TRUE(std::regex_search(totals, std::regex("HTTP/2 connections [1-9]"))) << totals;

  // poolgate's /stats, read directly from the admin listener: the HTTP/2 connection is
  // open, and it carried the document and every poll as streams, each one a request on
  // the proxy listener.
  const auto polls = ready.at("polls").get<uint64_t>();
  const Json after = proxy().stats();
  const Json& t = after.at("totals");
  EXPECT_GE(t.at("http2_connections").get<uint64_t>(), 1u) << t.dump();
  EXPECT_GE(t.at("http2_streams_total").get<uint64_t>(),
            before.at("http2_streams_total").get<uint64_t>() + polls + 1)
      << t.dump();
  EXPECT_GE(t.at("requests").get<uint64_t>(), before.at("requests").get<uint64_t>() + polls + 1) << t.dump();
  EXPECT_EQ(sumOverWorkers(after, "/http2/connections"), t.at("http2_connections").get<uint64_t>()) << after.dump();
  EXPECT_GE(sumOverWorkers(after, "/http2/streams_total"), polls + 1) << after.dump();
}

// The plain command-line way: --dump-dom after a virtual-time budget, while load runs.
TEST_F(Dashboard, DumpDomAfterVirtualTimeShowsDrawnCharts) {
  const std::string binary = chromiumBinary();
  ASSERT_FALSE(binary.empty()) << kNoChromium;
  startProxy(2);
  Load load(proxy().proxyPort(), 2);
  ASSERT_TRUE(waitUntil([&] { return load.completed() >= 10; }, 10s));

  TempDir dir;
  std::vector<std::string> argv = {binary};
  for (auto& f : chromiumFlags(dir)) argv.push_back(f);
  argv.push_back("--virtual-time-budget=5000");
  argv.push_back("--dump-dom");
  argv.push_back(adminUrl());
  BrowserProcess chromium(argv, dir.file("dom.html"), dir.file("stderr"));
  const bool exited = chromium.wait(45s);
  chromium.kill();
  auto errors = load.finish();
  ASSERT_TRUE(exited) << "chromium --dump-dom did not finish within 45 s\n"
                      << tailLines(readFile(dir.file("stderr")), 15);
  ASSERT_TRUE(errors.empty()) << errors.front();

  const std::string dom = readFile(dir.file("dom.html"));
  std::smatch body;
  ASSERT_TRUE(std::regex_search(dom, body, std::regex("<body[^>]*>")))
      << "no <body> in the dumped DOM:\n"
      << dom.substr(0, 2000) << tailLines(readFile(dir.file("stderr")), 15);
  const std::string tag = body.str();
  auto attr = [&](const std::string& name) -> long long {
    std::smatch m;
    if (!std::regex_search(tag, m, std::regex(" " + name + "=\"([0-9.]+)\""))) return -1;
    return static_cast<long long>(std::stod(m[1].str()));
  };
  EXPECT_NE(tag.find("data-state=\"ok\""), std::string::npos) << tag;
  EXPECT_GE(attr("data-polls"), 3) << tag;
  EXPECT_GT(attr("data-requests"), 0) << tag;
  EXPECT_GT(attr("data-points"), 0) << tag;
  EXPECT_GT(attr("data-ink"), 1000) << tag;
  EXPECT_EQ(attr("data-workers"), 2) << tag;
  EXPECT_EQ(tag.find("data-draw-error"), std::string::npos) << tag;
  // One canvas per chart, each drawn.
  std::regex canvas("<canvas[^>]*data-ink=\"([0-9]+)\"[^>]*>");
  size_t canvases = 0;
  for (auto it = std::sregex_iterator(dom.begin(), dom.end(), canvas); it != std::sregex_iterator();
       ++it, ++canvases)
    EXPECT_GT(std::stoll((*it)[1].str()), 100) << it->str();
  EXPECT_GE(canvases, 6u);
}

bool isPng(const std::string& data, uint32_t* width, uint32_t* height) {
  static const std::string kSignature("\x89PNG\r\n\x1a\n", 8);
  if (data.size() < 33 || data.compare(0, 8, kSignature) != 0 || data.compare(12, 4, "IHDR") != 0)
    return false;
  auto be32 = [&](size_t at) {
    return (uint32_t{static_cast<unsigned char>(data[at])} << 24) |
           (uint32_t{static_cast<unsigned char>(data[at + 1])} << 16) |
           (uint32_t{static_cast<unsigned char>(data[at + 2])} << 8) |
           uint32_t{static_cast<unsigned char>(data[at + 3])};
  };
  *width = be32(16);
  *height = be32(20);
  return true;
}

TEST_F(Dashboard, ScreenshotToolWritesPng) {
  ASSERT_FALSE(chromiumBinary().empty()) << kNoChromium;
  startProxy(1);
  ASSERT_EQ(connect().get("/").status, 200);
  TempDir dir;
  const std::string out = dir.file("dashboard.png");
  CommandResult r = runCommand(
      {tool("dashboard-screenshot"), "--wait", "1", "--size", "1024x700", adminUrl(), out},
      60s);
  ASSERT_EQ(r.status.code(), 0) << r.status.describe() << "\n" << r.out << r.err;
  uint32_t width = 0, height = 0;
  const std::string png = readFile(out);
  ASSERT_TRUE(isPng(png, &width, &height)) << "not a PNG (" << png.size() << " bytes)";
  EXPECT_EQ(width, 1024u);
  EXPECT_EQ(height, 700u);
  EXPECT_GT(png.size(), 10'000u) << "suspiciously small screenshot";
}

// ---------------------------------------------------------------------- poolgate-top

class PoolgateTop : public ProxyTest {};

std::vector<std::string> splitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream in(line);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

TEST_F(PoolgateTop, OnceShowsOneRowPerWorkerAndPerServer) {
  startProxy(2, "pool = { max_idle = 4; };");
  {
    HttpClient client = connect();
    for (int i = 0; i < 20; ++i) ASSERT_EQ(client.get("/top/" + std::to_string(i)).status, 200);
  }
  Json stats = proxy().stats();
  const std::string url = "http://127.0.0.1:" + std::to_string(proxy().adminPort());
  CommandResult r = runCommand({tool("poolgate-top"), "--once", url}, 20s);
  ASSERT_EQ(r.status.code(), 0) << r.status.describe() << "\n" << r.out << r.err;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << "--once must print no control codes";
  std::vector<std::string> lines = splitLines(r.out);
  ASSERT_GE(lines.size(), 4u) << r.out;
  EXPECT_EQ(lines[0].rfind("poolgate ", 0), 0u) << r.out;
  EXPECT_NE(lines[0].find("master " + std::to_string(proxy().pid())), std::string::npos) << r.out;

  const std::vector<std::string> columns = {"worker",   "pid",     "gen",       "state",
                                            "cl_active", "cl_idle", "sv_active", "sv_idle",
                                            "sv_open",  "sv_opened", "reuse%",  "req/s", "queued",
                                            "demand",   "handed",  "recvd"};
  size_t header = lines.size();
  for (size_t i = 0; i < lines.size(); ++i)
    if (words(lines[i]) == columns) header = i;
  ASSERT_LT(header, lines.size()) << "no column header line:\n" << r.out;

  // Worker rows (pid in column 2) each followed by their server rows.
  size_t workerRows = 0, serverRows = 0;
  uint64_t opened = 0;
  for (const auto& w : stats.at("workers")) {
    const std::string pid = std::to_string(w.at("pid").get<long long>());
    size_t at = lines.size();
    for (size_t i = header + 1; i < lines.size(); ++i) {
      auto ws = words(lines[i]);
      if (ws.size() == columns.size() && ws[1] == pid) at = i;
    }
    ASSERT_LT(at, lines.size()) << "no row for worker " << pid << ":\n" << r.out;
    ++workerRows;
    auto ws = words(lines[at]);
    EXPECT_EQ(ws[0], std::to_string(w.at("slot").get<long long>()));
    EXPECT_EQ(ws[2], std::to_string(w.at("generation").get<long long>()));
    EXPECT_EQ(ws[3], "running");
    // Between this poll and ours nothing was sent: the upstream counts are the same.
    EXPECT_EQ(ws[9], std::to_string(w.at("upstream").at("opened_total").get<long long>())) << lines[at];
    EXPECT_EQ(ws[8], std::to_string(w.at("upstream").at("open").get<long long>())) << lines[at];
    EXPECT_EQ(ws[11], "-") << "req/s needs two polls";
    // queued: the worker's, else the sum over its servers, else '-' when /stats has none.
    std::string queued = "-";
    if (w.contains("queued")) {
      queued = std::to_string(w.at("queued").get<long long>());
    } else {
      long long sum = 0;
      bool any = false;
      for (const auto& g : w.at("upstreams"))
        for (const auto& s : g.at("servers"))
          if (s.contains("queued")) {
            any = true;
            sum += s.at("queued").get<long long>();
          }
      if (any) queued = std::to_string(sum);
    }
    EXPECT_EQ(ws[12], queued) << lines[at];
    // demand: the sum of the worker's servers' demand (a worker that served nothing: 0).
    long long demand = 0;
    for (const auto& u : w.at("upstreams"))
      for (const auto& s : u.at("servers")) demand += s.at("demand").get<long long>();
    EXPECT_EQ(ws[13], std::to_string(demand)) << lines[at];
    // handed / recvd: the sums of the servers' handed_total and received_total.
    long long handed = 0, received = 0;
    for (const auto& u : w.at("upstreams"))
      for (const auto& s : u.at("servers")) {
        handed += s.at("handed_total").get<long long>();
        received += s.at("received_total").get<long long>();
      }
    EXPECT_EQ(ws[14], std::to_string(handed)) << lines[at];
    EXPECT_EQ(ws[15], std::to_string(received)) << lines[at];
    opened += w.at("upstream").at("opened_total").get<uint64_t>();
    ASSERT_LT(at + 1, lines.size());
    auto sv = words(lines[at + 1]);
    ASSERT_GE(sv.size(), 2u) << lines[at + 1];
    EXPECT_EQ(sv[0], "app") << lines[at + 1];
    EXPECT_EQ(sv[1], upstream_.address()) << lines[at + 1];
    ++serverRows;
  }
  EXPECT_EQ(workerRows, 2u);
  EXPECT_EQ(serverRows, 2u);
  EXPECT_GE(opened, 1u);
  EXPECT_NE(r.out.find("bound 8"), std::string::npos) << r.out;
}

TEST_F(PoolgateTop, OnceFailsClearlyWithoutStats) {
  ReservedPort nobody;
  CommandResult r = runCommand(
      {tool("poolgate-top"), "--once", "http://" + nobody.address()}, 20s);
  EXPECT_EQ(r.status.code(), 1) << r.status.describe() << "\n" << r.out << r.err;
  EXPECT_NE(r.err.find("cannot read"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace pgtest
