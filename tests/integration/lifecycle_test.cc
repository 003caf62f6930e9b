// Process supervision and signals.
#include <atomic>
#include <optional>
#include <signal.h>

#include <algorithm>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

class Workers : public ProxyTest {};

TEST_F(Workers, KilledWorkerIsReplacedAtOnce) {
  startProxy(2);
  std::vector<pid_t> before = proxy().runningWorkerPids();
  ASSERT_EQ(before.size(), 2u);
  const pid_t victim = before.front();

  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  pid_t replacement = 0;
  bool replaced = waitUntil(
      [&] {
        for (pid_t pid : proxy().runningWorkerPids())
          if (std::find(before.begin(), before.end(), pid) == before.end()) replacement = pid;
        return replacement != 0;
      },
      3s, 10ms);
  ASSERT_TRUE(replaced) << "no new worker pid in /stats 3 s after SIGKILL";

  EXPECT_TRUE(proxy().waitForRunningWorkers(2, 3s));
  auto now = proxy().runningWorkerPids();
  EXPECT_EQ(std::count(now.begin(), now.end(), victim), 0) << "dead worker still listed";
  for (int i = 0; i < 10; ++i) {  // fresh connections land on both workers
    HttpResponse r = connect().get("/after-kill");
    EXPECT_EQ(r.status, 200);
  }
}

TEST_F(Workers, RecycledAfterMaxRequests) {
  startProxy(1, "", "max_requests_per_worker = 5;");
  const pid_t first = proxy().runningWorkerPids().at(0);
  for (int i = 0; i < 12; ++i) {
    HttpResponse r = connect().get("/recycle/" + std::to_string(i));
    EXPECT_EQ(r.status, 200) << "request " << i << " failed around a recycle";
  }
  EXPECT_TRUE(waitUntil(
      [&] {
        auto pids = proxy().runningWorkerPids();
        return pids.size() == 1 && pids[0] != first;
      },
      3s))
      << "worker not replaced after max_requests_per_worker";
}

// MaxRequestsPerChild under load: keep-alive clients see workers rotate and
// not one request fails (a draining worker says Connection: close, and the
// client reconnects, as clients do).
TEST_F(Workers, RecycleUnderLoadLosesNoRequest) {
  startProxy(2, "", "max_requests_per_worker = 100;");
  const auto initial = proxy().runningWorkerPids();
  std::atomic<int> failures{0};
  auto errors = runConcurrently(6, [&](size_t i) {
    std::optional<HttpClient> client;
    for (int n = 0; n < 120; ++n) {
      if (!client) client.emplace(connect());
      HttpResponse r = client->get("/rotate/" + std::to_string(i) + "/" + std::to_string(n));
      if (r.status != 200) ++failures;
      if (r.connectionClose()) client.reset();
    }
  });
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(failures.load(), 0);
  auto now = proxy().runningWorkerPids();
  size_t fresh = 0;
  for (pid_t pid : now) fresh += std::count(initial.begin(), initial.end(), pid) == 0;
  EXPECT_GE(fresh, 1u) << "720 requests over 2 workers with a limit of ~100 each: no worker rotated";
  EXPECT_TRUE(proxy().waitForRunningWorkers(2, 3s));
}

// A worker that dies right after it starts, again and again, is restarted
// after 100, 200, 400... ms (logged), not in a busy loop; once it stays up,
// service resumes. The "crash" is a SIGKILL as soon as the worker is listed.
TEST_F(Workers, CrashLoopBacksOffExponentially) {
  startProxy(1);
  std::vector<pid_t> killed;
  for (int round = 0; round < 5; ++round) {
    pid_t victim = 0;
    ASSERT_TRUE(waitUntil(
        [&] {
          auto pids = proxy().runningWorkerPids();
          if (pids.size() != 1 || std::count(killed.begin(), killed.end(), pids[0]) != 0) return false;
          victim = pids[0];
          return true;
        },
        5s))
        << "no replacement worker after kill " << round;
    ASSERT_EQ(::kill(victim, SIGKILL), 0);
    killed.push_back(victim);
  }
  // Deaths 2, 3, 4, 5 within 2 s of their start: delays double from 100 ms.
  std::string log;
  EXPECT_TRUE(waitUntil(
      [&] {
        log = proxy().log();
        return log.find("restarting in 800 ms") != std::string::npos;
      },
      5s))
      << proxy().logTail();
  size_t at = 0;
  for (const char* delay : {"restarting in 100 ms", "restarting in 200 ms", "restarting in 400 ms",
                            "restarting in 800 ms"}) {
    size_t found = log.find(delay, at);
    EXPECT_NE(found, std::string::npos) << "missing or out of order: " << delay;
    if (found != std::string::npos) at = found;
  }
  EXPECT_TRUE(proxy().running()) << "the master died with its workers";
  EXPECT_TRUE(proxy().waitForRunningWorkers(1, 5s));
  EXPECT_EQ(connect().get("/after-crash-loop").status, 200);
}

class Signals : public ProxyTest, public ::testing::WithParamInterface<int> {};

TEST_P(Signals, MasterExitsZero) {
  startProxy(2);
  ASSERT_EQ(connect().get("/").status, 200);
  ExitStatus status = proxy().stop(GetParam());
  EXPECT_TRUE(status.exited() && status.code() == 0) << status.describe();
}

INSTANTIATE_TEST_SUITE_P(StopSignals, Signals, ::testing::Values(SIGTERM, SIGINT, SIGQUIT),
                         [](const auto& info) {
                           switch (info.param) {
                             case SIGTERM: return std::string("Term");
                             case SIGINT: return std::string("Int");
                             default: return std::string("Quit");
                           }
                         });

class GracefulStop : public ProxyTest {};

TEST_F(GracefulStop, SigquitFinishesInFlightRequest) {
  startProxy(1, "", "shutdown_timeout = 10.0;");
  HttpClient client = connect();
  client.send(serializeRequest("GET", "/delay/1500"));
  ASSERT_TRUE(upstream_.waitForRequests(1)) << "request did not reach the upstream";

  proxy().signal(SIGQUIT);
  HttpResponse r = client.read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json().at("target"), "/delay/1500");

  auto status = proxy().waitExit(10s);
  ASSERT_TRUE(status.has_value()) << "master still running 10 s after SIGQUIT";
  EXPECT_TRUE(status->exited() && status->code() == 0) << status->describe();
}

}  // namespace
}  // namespace pgtest
