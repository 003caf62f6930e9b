// Idle upstream connections moving between workers under pool.max_conns
// (pool/handover.h, process/handover.h): instead of closing a connection in
// one worker so that another may open one, the socket itself goes to the
// worker whose request has waited longest. What must hold, seen from outside:
// the upstream accepts no more than max_conns connections in all, the kernel
// never shows more, every request is answered, and nothing is leaked or
// counted twice — through reloads, recycling and a graceful stop too.
#include <dirent.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <map>
#include <thread>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

size_t openDescriptors(pid_t pid) {
  DIR* dir = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (dir == nullptr) return 0;
  size_t count = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count;
}

const Json& serverOf(const Json& worker) { return worker.at("upstreams").at(0).at("servers").at(0); }

uint64_t sumServers(const Json& stats, const char* field) {
  uint64_t sum = 0;
  for (const Json& w : stats.at("workers")) sum += serverOf(w).at(field).get<uint64_t>();
  return sum;
}

// Keep-alive clients requesting without pause until stopped (reconnecting
// when told Connection: close); any status but 200 is a failure.
class Load {
 public:
  Load(ProxyTest& test, size_t clients, std::string target, std::function<HttpClient()> connect)
      : target_(std::move(target)) {
    result_ = std::async(std::launch::async, [this, clients, connect] {
      return runConcurrently(clients, [this, connect](size_t i) {
        std::optional<HttpClient> client;
        for (int n = 0; !done_; ++n) {
          if (!client) client.emplace(connect());
          HttpResponse r = client->get(target_ + "?c=" + std::to_string(i) + "&n=" + std::to_string(n));
          if (r.status != 200) ++failures_;
          ++completed_;
          if (r.connectionClose()) client.reset();
        }
      });
    });
    (void)test;
  }
  ~Load() { stop(); }
  int completed() const { return completed_.load(); }
  // Stops the clients; returns the exceptions they ended with.
  std::vector<std::string> stop() {
    done_ = true;
    return result_.valid() ? result_.get() : std::vector<std::string>{};
  }
  int failures() const { return failures_.load(); }

 private:
  std::string target_;
  std::atomic<bool> done_{false};
  std::atomic<int> completed_{0};
  std::atomic<int> failures_{0};
  std::future<std::vector<std::string>> result_;
};

// Samples the kernel's count of established connections to a port.
class PeakSampler {
 public:
  explicit PeakSampler(uint16_t port)
      : thread_([this, port] {
          while (!done_) {
            // Two reads in a row: one read of /proc/net/tcp can see a socket twice.
            const size_t now = std::min(countEstablished(port), countEstablished(port));
            if (now > peak_) peak_ = now;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));  // sampling period
          }
        }) {}
  ~PeakSampler() { stop(); }
  size_t stop() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
    return peak_;
  }

 private:
  std::atomic<bool> done_{false};
  std::atomic<size_t> peak_{0};
  std::thread thread_;
};

class HandOver : public ProxyTest {
 protected:
  void startCapped(std::string_view top = "") {
    startProxy(4, "pool = { max_conns = 4; max_idle = 4; queue_timeout = 10.0; };", top);
  }
  std::function<HttpClient()> connector() {
    return [this] { return connect(); };
  }
  // Quiet: no client left, and (while the same workers run: after a reload
  // the counts of workers gone are gone with them) every socket handed over
  // has arrived.
  bool waitQuiet(bool same_workers = true) {
    return waitUntil(
        [&] {
          const Json s = proxy().stats();
          return sumOverWorkers(s, "/clients/active") == 0 && sumOverWorkers(s, "/clients/idle") == 0 &&
                 (!same_workers || sumServers(s, "handed_total") == sumServers(s, "received_total"));
        },
        5s);
  }
  // poolgate's count of open upstream connections equals the kernel's, and
  // stays within the cap.
  void expectOpenMatchesKernel() {
    size_t kernel = 0;
    uint64_t counted = 0;
    EXPECT_TRUE(waitUntil(
        [&] {
          kernel = std::min(countEstablished(upstream_.port()), countEstablished(upstream_.port()));
          counted = sumOverWorkers(proxy().stats(), "/upstream/open");
          return kernel == counted;
        },
        3s))
        << "kernel " << kernel << ", /stats " << counted;
    EXPECT_LE(counted, 4u);
  }
  // Every place under max_conns is free to take: four requests that each
  // hold a connection 2.5 s all get one at once. A place lost on the way
  // (counted but never freed) would leave the fourth waiting past
  // queue_timeout (2 s) for a 503.
  void expectAllPlacesUsable() {
    std::atomic<int> ok{0};
    auto errors = runConcurrently(4, [&](size_t i) {
      HttpResponse r = connect().get("/delay/2500?place=" + std::to_string(i));
      if (r.status == 200) ++ok;
    });
    EXPECT_TRUE(errors.empty()) << errors.front();
    EXPECT_EQ(ok.load(), 4) << "a place under max_conns was lost";
  }
};

TEST_F(HandOver, ConnectionsMoveBetweenWorkersInsteadOfReopening) {
  startCapped();
  ASSERT_TRUE(waitQuiet());
  std::map<pid_t, size_t> fds_before;
  const Json before = proxy().stats();
  for (const Json& w : before.at("workers")) {
    const pid_t pid = w.at("pid").get<pid_t>();
    fds_before[pid] = openDescriptors(pid) - w.at("upstream").at("open").get<size_t>();
  }
  const size_t master_fds = openDescriptors(proxy().pid());

  PeakSampler sampler(upstream_.port());
  {
    Load load(*this, 64, "/delay/2", connector());
    ASSERT_TRUE(waitUntil([&] { return load.completed() >= 3000; }, 60s)) << load.completed();
    auto errors = load.stop();
    EXPECT_TRUE(errors.empty()) << errors.front();
    EXPECT_EQ(load.failures(), 0);
  }
  const size_t peak = sampler.stop();
  EXPECT_LE(peak, 4u) << "the kernel showed more upstream connections than max_conns";
  EXPECT_LE(upstream_.connectionCount(), 4u) << "connections were closed and reopened";

  ASSERT_TRUE(waitQuiet()) << proxy().stats().dump();
  const Json s = proxy().stats();
  EXPECT_GT(sumServers(s, "handed_total"), 0u) << "64 clients over 4 workers and no hand-over?";
  EXPECT_EQ(sumServers(s, "opened_total"), upstream_.connectionCount());
  EXPECT_EQ(sumServers(s, "queue_timeouts_total"), 0u);
  EXPECT_EQ(s.at("workers").at(0).at("upstreams").at(0).at("servers").at(0).at("no_reuse").at("yielded"), 0);
  expectOpenMatchesKernel();

  // No descriptor leaked: a worker holds what it held before plus its open
  // upstream connections (give or take the /stats connection it may be
  // closing: a leak per hand-over would show in the thousands); the master
  // passes sockets on and keeps none.
  for (const Json& w : s.at("workers")) {
    const pid_t pid = w.at("pid").get<pid_t>();
    ASSERT_TRUE(fds_before.count(pid)) << "worker " << pid << " was replaced";
    const long long now = static_cast<long long>(openDescriptors(pid) - w.at("upstream").at("open").get<size_t>());
    EXPECT_NEAR(now, static_cast<long long>(fds_before[pid]), 1) << "worker " << pid;
  }
  EXPECT_EQ(openDescriptors(proxy().pid()), master_fds);
  expectAllPlacesUsable();
}

// Reloads and worker recycling while sockets travel between workers: old
// workers drain and exit, sometimes with sockets on their way to or from
// them. No request fails, the cap holds, and afterwards every place is
// usable again (none lost in flight) and /stats agrees with the kernel.
TEST_F(HandOver, ReloadsAndRecyclingUnderLoadLoseNoPlace) {
  startProxy(4, "pool = { max_conns = 4; max_idle = 4; queue_timeout = 2.0; };",
             "max_requests_per_worker = 400; shutdown_timeout = 10.0;");
  const size_t master_fds = openDescriptors(proxy().pid());
  PeakSampler sampler(upstream_.port());
  {
    Load load(*this, 32, "/delay/1", connector());
    for (uint64_t generation = 2; generation <= 3; ++generation) {
      const int before = load.completed();
      ASSERT_TRUE(waitUntil([&] { return load.completed() >= before + 600; }, 30s));
      proxy().signal(SIGHUP);
      ASSERT_TRUE(waitUntil([&] { return proxy().stats().at("generation").get<uint64_t>() == generation; }, 5s));
    }
    const int before = load.completed();
    ASSERT_TRUE(waitUntil([&] { return load.completed() >= before + 600; }, 30s));
    auto errors = load.stop();
    EXPECT_TRUE(errors.empty()) << errors.front();
    EXPECT_EQ(load.failures(), 0);
  }
  EXPECT_LE(sampler.stop(), 4u) << "the kernel showed more upstream connections than max_conns";
  ASSERT_TRUE(proxy().waitForRunningWorkers(4, 15s)) << proxy().stats().dump();
  ASSERT_TRUE(waitQuiet(/*same_workers=*/false)) << proxy().stats().dump();
  expectOpenMatchesKernel();
  EXPECT_EQ(openDescriptors(proxy().pid()), master_fds) << "the master kept descriptors";
  expectAllPlacesUsable();
}

// SIGQUIT while connections move: every request on a connection poolgate
// accepted is answered, the master exits 0 and no worker is left behind.
TEST_F(HandOver, GracefulStopWhileConnectionsMove) {
  startCapped("shutdown_timeout = 10.0;");
  std::atomic<int> answered{0}, refused{0};
  auto clients = std::async(std::launch::async, [&] {
    return runConcurrently(32, [&](size_t i) {
      std::optional<HttpClient> client;
      for (int n = 0;; ++n) {
        if (!client) {
          try {
            client.emplace(connect());
          } catch (const std::exception& e) {
            if (std::string(e.what()).find("refused") == std::string::npos) throw;
            ++refused;
            return;  // the listeners have closed
          }
        }
        HttpResponse r = client->get("/delay/2?c=" + std::to_string(i) + "&n=" + std::to_string(n));
        if (r.status != 200) throw HarnessError("status " + std::to_string(r.status));
        ++answered;
        if (r.connectionClose()) client.reset();
      }
    });
  });
  ASSERT_TRUE(waitUntil([&] { return answered.load() >= 500; }, 30s));
  ASSERT_GT(sumServers(proxy().stats(), "handed_total"), 0u);
  ExitStatus status = proxy().stop(SIGQUIT);
  EXPECT_TRUE(status.exited() && status.code() == 0) << status.describe();
  ASSERT_EQ(clients.wait_for(10s), std::future_status::ready) << "clients still served after the master exited";
  auto errors = clients.get();
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(refused.load(), 32) << "every client ends on a refused connect";
}

// Binary upgrade (SIGUSR2) while connections move: the new master starts
// its own workers with their own shared segment (two instances, each under
// its own cap, while both run); the old one drains on SIGQUIT. No request
// fails, and the new instance alone keeps to the cap with every place usable.
TEST_F(HandOver, BinaryUpgradeWhileConnectionsMove) {
  startProxy(4, "pool = { max_conns = 4; max_idle = 4; queue_timeout = 10.0; };",
             "pid_file = \"${DIR}/poolgate.pid\"; shutdown_timeout = 10.0;");
  const std::string pid_file = proxy().dir().file("poolgate.pid");
  const pid_t old_master = proxy().pid();
  pid_t new_master = 0;
  {
    Load load(*this, 32, "/delay/1", connector());
    ASSERT_TRUE(waitUntil([&] { return load.completed() >= 500; }, 30s));
    proxy().signal(SIGUSR2);
    ASSERT_TRUE(waitUntil(
        [&] {
          const std::string current = readFile(pid_file);
          if (readFile(pid_file + ".oldbin").empty() || current.empty()) return false;
          new_master = std::stoi(current);
          return new_master != old_master;
        },
        10s));
    ASSERT_TRUE(waitUntil([&] { return proxy().stats().at("master_pid").get<pid_t>() == new_master; }, 5s));
    proxy().signal(SIGQUIT);  // the old master drains and leaves
    std::optional<ExitStatus> old = proxy().waitExit(15s);
    ASSERT_TRUE(old.has_value()) << "old master still running 15 s after SIGQUIT";
    EXPECT_TRUE(old->exited() && old->code() == 0) << old->describe();
    PeakSampler sampler(upstream_.port());
    const int before = load.completed();
    ASSERT_TRUE(waitUntil([&] { return load.completed() >= before + 500; }, 30s));
    auto errors = load.stop();
    EXPECT_TRUE(errors.empty()) << errors.front();
    EXPECT_EQ(load.failures(), 0);
    EXPECT_LE(sampler.stop(), 4u) << "the new instance alone went over max_conns";
  }
  EXPECT_GT(sumServers(proxy().stats(), "handed_total"), 0u);
  expectAllPlacesUsable();
  ::kill(new_master, SIGTERM);
  EXPECT_TRUE(waitUntil([&] { return processGone(new_master); }, 10s)) << "new master still running";
}

}  // namespace
}  // namespace pgtest
