// SIGHUP reload, `-s stop` through the pid file, and every accept mode.
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <atomic>
#include <future>
#include <mutex>
#include <optional>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

uint64_t generationOf(const Poolgate& proxy) {
  return proxy.stats().at("generation").get<uint64_t>();
}

class Reload : public ProxyTest {
 protected:
  // Clients requesting without pause until stopped: four keep-alive ones
  // (reconnecting when told Connection: close) and two opening a connection
  // per request. Any status other than 200, reset or early close is a failure.
  // With `untilRefused`, a refused connect ends a client instead (the
  // listener has closed for a stop): only what was accepted must be answered.
  class BackgroundLoad {
   public:
    explicit BackgroundLoad(Reload& test, bool untilRefused = false) : untilRefused_(untilRefused) {
      result_ = std::async(std::launch::async, [this, &test] {
        return runConcurrently(6, [this, &test](size_t i) { client(test, i); });
      });
    }
    ~BackgroundLoad() {
      done_ = true;
      if (result_.valid()) result_.wait();
    }
    int completed() const { return completed_.load(); }
    int refused() const { return refused_.load(); }
    // Waits until every client has ended by itself (untilRefused).
    bool waitAllEnded(Millis timeout) {
      return result_.wait_for(timeout) == std::future_status::ready;
    }
    void stopAndExpectNoFailure() {
      done_ = true;
      auto errors = result_.get();
      EXPECT_TRUE(errors.empty()) << errors.front();
      std::lock_guard<std::mutex> lock(mutex_);
      EXPECT_EQ(failures_, 0) << "first failure: " << first_failure_;
    }

   private:
    void client(Reload& test, size_t i) {
      const bool keepAlive = i < 4;
      std::optional<HttpClient> connection;
      for (int n = 0; !done_; ++n) {
        if (!connection) {
          try {
            connection.emplace(test.connect());
          } catch (const std::exception& e) {
            if (untilRefused_ && std::string(e.what()).find("refused") != std::string::npos) {
              ++refused_;
              return;
            }
            fail(e.what());
            continue;
          }
        }
        try {
          HttpResponse r = connection->get("/load/" + std::to_string(i) + "/" + std::to_string(n));
          if (r.status != 200) fail("status " + std::to_string(r.status));
          ++completed_;
          if (!keepAlive || r.connectionClose()) connection.reset();
        } catch (const std::exception& e) {
          fail(e.what());
          connection.reset();
        }
      }
    }
    void fail(const std::string& why) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (failures_++ == 0) first_failure_ = why;
    }

    const bool untilRefused_;
    std::atomic<bool> done_{false};
    std::atomic<int> completed_{0};
    std::atomic<int> refused_{0};
    std::mutex mutex_;
    int failures_ = 0;
    std::string first_failure_;
    std::future<std::vector<std::string>> result_;
  };
};

TEST_F(Reload, SighupStartsNewGenerationWithoutLosingInFlightRequest) {
  startProxy(2, "", "shutdown_timeout = 10.0;");
  std::vector<pid_t> before = proxy().runningWorkerPids();
  HttpClient inFlight = connect();
  inFlight.send(serializeRequest("GET", "/delay/800"));
  ASSERT_TRUE(upstream_.waitForRequests(1));

  proxy().signal(SIGHUP);
  ASSERT_TRUE(waitUntil([&] { return generationOf(proxy()) == 2; }, 5s))
      << "generation did not become 2";
  HttpResponse r = inFlight.read();
  EXPECT_EQ(r.status, 200) << "in-flight request lost by the reload";

  EXPECT_TRUE(proxy().waitForRunningWorkers(2, 10s)) << "old workers did not drain away";
  for (pid_t pid : proxy().runningWorkerPids())
    EXPECT_EQ(std::count(before.begin(), before.end(), pid), 0) << "old worker still running";
  EXPECT_EQ(connect().get("/after").status, 200);
}

TEST_F(Reload, InvalidConfigKeepsRunningGeneration) {
  startProxy(1);
  std::vector<pid_t> before = proxy().runningWorkerPids();
  proxy().dir().write("poolgate.conf", "workers = 1;\nworkers = ;\n");
  proxy().signal(SIGHUP);
  // The master logs why the reload failed (file:line); wait for that before looking.
  ASSERT_TRUE(waitUntil(
      [&] { return proxy().log().find("poolgate.conf:2") != std::string::npos; }, 5s))
      << "the reason (poolgate.conf:2: ...) was not logged after SIGHUP with a broken config";
  EXPECT_EQ(generationOf(proxy()), 1u);
  EXPECT_EQ(proxy().runningWorkerPids(), before);
  EXPECT_EQ(connect().get("/still-serving").status, 200);
}

// Ten reloads in a row under continuous load from keep-alive and short-lived
// clients, changing the worker count and the upstream list: every request
// gets its answer, no connection is reset.
TEST_F(Reload, TenReloadsUnderLoadLoseNothing) {
  TestUpstream second;
  startProxy(2, "", "shutdown_timeout = 10.0;");
  BackgroundLoad load(*this);
  for (int reload = 1; reload <= 10; ++reload) {
    const int workers = 1 + reload % 3;
    std::string servers = "{ address = \"" + upstream_.address() + "\"; }";
    if (reload % 2 == 0) servers += ", { address = \"" + second.address() + "\"; }";
    // Port 0 again: the same address text keeps the same (already bound) sockets.
    const std::string config = "workers = " + std::to_string(workers) + ";\n" +
                               "listen = ( { address = \"127.0.0.1:0\"; } );\n"
                               "admin = { address = \"127.0.0.1:0\"; };\n"
                               "shutdown_timeout = 10.0;\n"
                               "upstreams = ( { name = \"app\"; servers = ( " + servers + " ); } );\n";
    proxy().dir().write("poolgate.conf", config);
    const int before = load.completed();
    proxy().signal(SIGHUP);
    ASSERT_TRUE(waitUntil([&] { return generationOf(proxy()) == uint64_t(reload) + 1; }, 5s))
        << "reload " << reload << " did not take effect:\n" << config;
    ASSERT_TRUE(proxy().waitForRunningWorkers(size_t(workers), 10s)) << "reload " << reload;
    // Some traffic under each generation before the next reload.
    ASSERT_TRUE(waitUntil([&] { return load.completed() >= before + 20; }, 5s));
  }
  load.stopAndExpectNoFailure();
  EXPECT_GT(load.completed(), 200);
}

// SIGQUIT under the same load: every request on a connection poolgate
// accepted is answered; afterwards connects are refused (the listening
// sockets are closed, not left queueing for nobody) and the master exits 0.
TEST_F(Reload, GracefulStopUnderLoadAnswersEverythingAccepted) {
  startProxy(2, "", "shutdown_timeout = 10.0;");
  BackgroundLoad load(*this, /*untilRefused=*/true);
  ASSERT_TRUE(waitUntil([&] { return load.completed() >= 200; }, 10s));
  ExitStatus status = proxy().stop(SIGQUIT);
  EXPECT_TRUE(status.exited() && status.code() == 0) << status.describe();
  ASSERT_TRUE(load.waitAllEnded(10s)) << "clients still served after the master exited";
  load.stopAndExpectNoFailure();
  EXPECT_EQ(load.refused(), 6) << "every client ends on a refused connect";
}

TEST_F(Reload, SignalStopThroughPidFile) {
  startProxy(1, "", "pid_file = \"${DIR}/poolgate.pid\";");
  std::string pidText = readFile(proxy().dir().file("poolgate.pid"));
  ASSERT_FALSE(pidText.empty()) << "no pid file";
  EXPECT_EQ(std::stoi(pidText), proxy().pid());

  CommandResult r = runCommand({POOLGATE_BINARY, "-c", proxy().configPath(), "-s", "stop"});
  EXPECT_EQ(r.status.code(), 0) << r.err;
  auto status = proxy().waitExit(10s);
  ASSERT_TRUE(status.has_value()) << "master still running after -s stop";
  EXPECT_EQ(status->code(), 0) << status->describe();
}

TEST_F(Reload, BinaryUpgradeHandsOverListeners) {
  startProxy(2, "", "pid_file = \"${DIR}/poolgate.pid\";");
  const std::string pidFile = proxy().dir().file("poolgate.pid");
  const pid_t oldMaster = proxy().pid();
  BackgroundLoad load(*this);
  ASSERT_TRUE(waitUntil([&] { return load.completed() >= 20; }, 5s));
  proxy().signal(SIGUSR2);

  pid_t newMaster = 0;
  bool upgraded = waitUntil(
      [&] {
        std::string oldbin = readFile(pidFile + ".oldbin");
        std::string current = readFile(pidFile);
        if (oldbin.empty() || current.empty() || std::stoi(oldbin) != oldMaster) return false;
        newMaster = std::stoi(current);
        return newMaster != oldMaster;
      },
      10s);
  ASSERT_TRUE(upgraded) << "pid file not moved to .oldbin with a new master's pid";
  EXPECT_TRUE(waitUntil(
      [&] { return proxy().stats().at("master_pid").get<pid_t>() == newMaster; }, 5s))
      << "the new master's workers do not answer on the inherited admin port";
  EXPECT_EQ(connect().get("/after-upgrade").status, 200);

  // The operator retires the old master: it drains; the new one serves on.
  const int before = load.completed();
  proxy().signal(SIGQUIT);
  std::optional<ExitStatus> old = proxy().waitExit(15s);
  ASSERT_TRUE(old.has_value()) << "old master still running 15 s after SIGQUIT";
  EXPECT_TRUE(old->exited() && old->code() == 0) << old->describe();
  ASSERT_TRUE(waitUntil([&] { return load.completed() >= before + 50; }, 5s)) << "no traffic after the old master left";
  load.stopAndExpectNoFailure();

  ::kill(newMaster, SIGTERM);
  EXPECT_TRUE(waitUntil([&] { return processGone(newMaster); }, 10s))
      << "new master still running after SIGTERM";
}

class AcceptModes : public ProxyTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(AcceptModes, ServeConcurrentClients) {
  startProxy(2, "", std::string("accept_mode = \"") + GetParam() + "\";");
  auto errors = runConcurrently(20, [&](size_t i) {
    HttpClient client = connect();
    for (int n = 0; n < 5; ++n) {
      HttpResponse r = client.get("/m/" + std::to_string(i));
      if (r.status != 200) throw HarnessError("status " + std::to_string(r.status));
    }
  });
  EXPECT_TRUE(errors.empty()) << errors.front();
  Json s = proxy().stats();
  EXPECT_EQ(s.at("accept_mode"), GetParam());
  EXPECT_EQ(proxy().log().find("not implemented"), std::string::npos)
      << "the log says this mode is not implemented (another mode is in use)";
  EXPECT_GE(sumOverWorkers(s, "/accepted"), 20u);
}

// The kernel's view of each model: reuseport has a listening socket per
// worker; the shared-socket models (exclusive, shared, mutex) have one.
size_t countListening(uint16_t port) {
  size_t count = 0;
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    size_t colon = local.rfind(':');
    if (colon != std::string::npos && std::strtoul(local.c_str() + colon + 1, nullptr, 16) == port &&
        state == "0A") {
      ++count;
    }
  }
  return count;
}

TEST_P(AcceptModes, ListeningSocketsMatchTheModel) {
  startProxy(3, "", std::string("accept_mode = \"") + GetParam() + "\";");
  const size_t expected = std::string(GetParam()) == "reuseport" ? 3 : 1;
  EXPECT_EQ(countListening(proxy().proxyPort()), expected);
}

// Descriptor passing: the master hands each connection to the worker with
// the fewest active clients, so four slow requests opened one after another
// land two and two on two workers (the kernel's hash would not promise that).
TEST_F(Reload, HandoffGoesToTheLeastBusyWorker) {
  startProxy(2, "", "accept_mode = \"handoff\";");
  std::vector<HttpClient> clients;
  for (size_t i = 0; i < 4; ++i) {
    clients.push_back(connect());
    clients.back().send(serializeRequest("GET", "/delay/600"));
    ASSERT_TRUE(upstream_.waitForRequests(i + 1));
  }
  for (HttpClient& client : clients) EXPECT_EQ(client.read().status, 200);
  const Json stats = proxy().stats();
  for (const Json& worker : stats.at("workers")) EXPECT_EQ(worker.at("requests").get<uint64_t>(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Modes, AcceptModes,
                         ::testing::Values("reuseport", "exclusive", "shared", "mutex", "handoff"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace pgtest
