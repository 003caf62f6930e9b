// The harness's children die with a test process that is killed from outside (see
// "Children that die with the test process" in harness.cc), checked from the outside:
// this binary re-executes itself as a child test process that starts poolgate through
// the harness and then waits to be killed; the test SIGKILLs it and waits (bounded) until
// every process of poolgate's group is gone.
//
// The child is a test registered only when PGTEST_GUARD_CHILD is set in its environment
// (so ctest and a plain run of the binary never see it). It writes the ids it knows to
// PGTEST_GUARD_OUT once poolgate serves:
//   line 1: poolgate's process group (the first master's pid)
//   line 2: the pids of that group's members, space-separated
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

constexpr const char* kModeVariable = "PGTEST_GUARD_CHILD";
constexpr const char* kOutVariable = "PGTEST_GUARD_OUT";

std::string joinPids(const std::vector<pid_t>& pids) {
  std::string out;
  for (pid_t p : pids) out += (out.empty() ? "" : " ") + std::to_string(p);
  return out;
}

// ---------------------------------------------------------------------------------------
// The child: modes "plain" (a master and two workers) and "upgrade" (the same after a
// binary upgrade: the old master and its worker, and the new master, which the old one
// forked without a death signal, with its worker; all in one process group).

class GuardChild : public ::testing::Test {
 protected:
  void TestBody() override {
    const std::string mode = std::getenv(kModeVariable);
    const char* out = std::getenv(kOutVariable);
    ASSERT_NE(out, nullptr) << kOutVariable << " is not set";
    TestUpstream upstream;
    const bool upgrade = mode == "upgrade";
    Poolgate proxy(proxyConfig(upstream.address(), upgrade ? 1 : 2, "",
                               upgrade ? "pid_file = \"${DIR}/poolgate.pid\";" : ""));
    proxy.start();
    const pid_t group = proxy.pid();
    size_t expected = 3;  // the master and its two workers
    if (upgrade) {
      const std::string pidFile = proxy.dir().file("poolgate.pid");
      proxy.signal(SIGUSR2);
      pid_t newMaster = 0;
      ASSERT_TRUE(waitUntil(
          [&] {
            const std::string current = readFile(pidFile);
            if (readFile(pidFile + ".oldbin").empty() || current.empty()) return false;
            newMaster = std::stoi(current);
            return newMaster != group &&
                   proxy.stats().at("master_pid").get<pid_t>() == newMaster;
          },
          10s))
          << "no new master serving after SIGUSR2";
      expected = 4;  // two masters, a worker each
    }
    std::vector<pid_t> members;
    ASSERT_TRUE(waitUntil(
        [&] {
          members = processGroupMembers(group);
          return members.size() == expected;
        },
        5s))
        << "poolgate's group: " << joinPids(members);
    {
      std::ofstream f(std::string(out) + ".tmp");
      f << group << "\n" << joinPids(members) << "\n";
    }
    ASSERT_EQ(::rename((std::string(out) + ".tmp").c_str(), out), 0);
    // Wait to be killed; bounded, so that a parent test gone wrong leaves nothing behind.
    // (Not a synchronisation: nothing follows but the end of this process.)
    std::this_thread::sleep_for(60s);
    FAIL() << "not killed within 60 s";
  }
};

[[maybe_unused]] const bool kGuardChildRegistered = [] {
  if (std::getenv(kModeVariable) == nullptr) return false;
  ::testing::RegisterTest("HarnessGuardChild", "StartPoolgateAndWait", nullptr, nullptr,
                          __FILE__, __LINE__, []() -> ::testing::Test* { return new GuardChild; });
  return true;
}();

// ---------------------------------------------------------------------------------------
// The tests

struct ChildIds {
  pid_t group = 0;
  std::vector<pid_t> members;
};

class HarnessGuard : public ::testing::Test {
 protected:
  // Starts this binary as the child test in `mode` and waits (bounded) for its ids.
  ChildIds startChild(const std::string& mode) {
    char self[4096];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) throw HarnessError("readlink /proc/self/exe");
    self[n] = '\0';
    const std::string out = dir_.file("ids");
    child_ = std::make_unique<Process>(
        // TMPDIR: poolgate's temporary directory, which the killed child cannot remove,
        // goes into ours.
        std::vector<std::string>{"env", std::string(kModeVariable) + "=" + mode,
                                 std::string(kOutVariable) + "=" + out, "TMPDIR=" + dir_.path(),
                                 self, "--gtest_filter=HarnessGuardChild.*"},
        dir_.file("child.log"), dir_.file("child.log"));
    const bool ready = waitUntil(
        [&] { return !child_->running() || !readFile(out).empty(); }, 30s, 20ms);
    if (!ready || !child_->running())
      throw HarnessError("the child test did not report poolgate's ids (" +
                         std::string(ready ? "it exited" : "30 s") + "):\n" +
                         tailLines(readFile(dir_.file("child.log")), 40));
    ChildIds ids;
    std::istringstream in(readFile(out));
    std::string line;
    std::getline(in, line);
    ids.group = std::stoi(line);
    std::getline(in, line);
    std::istringstream pids(line);
    for (pid_t p; pids >> p;) ids.members.push_back(p);
    return ids;
  }

  // Whether every process of poolgate's group has gone within `timeout` (polled).
  void expectAllGone(const ChildIds& ids, Millis timeout) {
    const bool gone = waitUntil(
        [&] {
          for (pid_t p : ids.members)
            if (!processGone(p)) return false;
          return processGroupMembers(ids.group).empty();
        },
        timeout);
    EXPECT_TRUE(gone) << "still running " << timeout.count()
                      << " ms after the test process was killed: "
                      << joinPids(processGroupMembers(ids.group));
    if (!gone) ::kill(-ids.group, SIGKILL);  // leave nothing behind
  }

  TempDir dir_;
  std::unique_ptr<Process> child_;
};

// SIGKILL to the child test's whole process group: the test process and its guard
// together. What is left is the first layer: the master's death signal, and the workers'
// own (set by poolgate's master when it forks them).
TEST_F(HarnessGuard, KilledTestTakesPoolgateAlongEvenWithoutItsGuard) {
  ChildIds ids = startChild("plain");
  ASSERT_EQ(ids.members.size(), 3u);
  for (pid_t p : ids.members) ASSERT_FALSE(processGone(p)) << p;
  child_->killGroup();  // kill(-pgid, SIGKILL): the child and its guard at once
  EXPECT_EQ(child_->wait(0ms)->signal(), SIGKILL);
  expectAllGone(ids, 5s);
}

// SIGKILL to the child test process alone, after a binary upgrade: the new master was
// forked by the old one and has no death signal; the child's guard kills it with the
// rest of poolgate's group.
TEST_F(HarnessGuard, KilledTestTakesAnUpgradedPoolgateAlong) {
  ChildIds ids = startChild("upgrade");
  ASSERT_EQ(ids.members.size(), 4u);
  child_->signal(SIGKILL);
  const auto status = child_->wait(5s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->signal(), SIGKILL);
  expectAllGone(ids, 5s);
  // It was the guard (the old master's death signal alone would have left the new one).
  const std::string said =
      "SIGKILL to its leftover process group " + std::to_string(ids.group) + "\n";
  EXPECT_TRUE(waitUntil([&] { return readFile(dir_.file("child.log")).find(said) != std::string::npos; }, 5s))
      << tailLines(readFile(dir_.file("child.log")), 20);
}

}  // namespace
}  // namespace pgtest
