// Descriptor exhaustion: a worker at its RLIMIT_NOFILE must neither spin on
// accept() nor flood the log, must go on serving the clients it has (their
// upstream connections come out of the reserve), and must recover by itself.
// poolgate runs under `prlimit --nofile=N`, so only it is short of descriptors.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

// TCP connections that connect and then say nothing: they sit in the accept
// queue, or hold a client slot once accepted.
class SilentClients {
 public:
  SilentClients(uint16_t port, size_t count) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (size_t i = 0; i < count; ++i) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) throw HarnessError("socket: out of descriptors in the test");
      if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
        ::close(fd);
        throw HarnessError("connect to the listener failed");
      }
      fds_.push_back(fd);
    }
  }
  ~SilentClients() { closeAll(); }
  void closeAll() {
    for (int fd : fds_) ::close(fd);
    fds_.clear();
  }

 private:
  std::vector<int> fds_;
};

size_t countMatches(const std::string& text, const std::regex& pattern) {
  return static_cast<size_t>(std::distance(std::sregex_iterator(text.begin(), text.end(), pattern),
                                           std::sregex_iterator()));
}

uint64_t acceptWakeups(const Json& stats) { return sumOverWorkers(stats, "/accept_wakeups"); }

const std::vector<std::string> kLimit128 = {"/usr/bin/prlimit", "--nofile=128:128", "--"};

// Under AddressSanitizer + UBSan the binary cannot be taken to the very last
// descriptor: the sanitizer runtime needs some of its own (UBSan's vptr check
// opens a pipe to probe memory, and reports a false "invalid vptr" when it
// cannot). The tests that fill the table completely run in the plain build;
// the reserve test, which stays below the limit, runs in both. What counts is
// how the poolgate binary was built: POOLGATE_SANITIZED comes from CMake, as
// this client itself is built without the sanitizers (tests/integration/
// CMakeLists.txt); the checks below catch sanitizer flags given by hand.
#if defined(POOLGATE_SANITIZED) || defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

class Descriptors : public ProxyTest {
 protected:
  void start(std::string_view topExtra) {
    proxy_ = std::make_unique<Poolgate>(proxyConfig(upstream_.address(), 1, "pool = { max_idle = 32; };", topExtra));
    proxy_->start(kLimit128);
  }
};

// The reserve: past `limit - fd_reserve` descriptors the worker stops accepting
// (the listener leaves epoll: no wake-ups, no log flood), while the clients it
// has still get fresh upstream connections out of the reserve.
TEST_F(Descriptors, ReserveKeepsEstablishedClientsServedWithoutSpinning) {
  start("fd_reserve = 32;");
  HttpClient admin(proxy().adminPort());  // one admin connection, kept alive: it adds no accepts
  std::vector<HttpClient> established;
  for (int i = 0; i < 8; ++i) {
    established.emplace_back(proxy().proxyPort());
    ASSERT_EQ(established.back().get("/").status, 200);
  }

  SilentClients flood(proxy().proxyPort(), 300);  // far more than 128 descriptors
  ASSERT_TRUE(waitUntil([&] { return proxy().log().find("descriptors in use") != std::string::npos; }, 10s))
      << proxy().logTail();
  const uint64_t accepted = sumOverWorkers(admin.get("/stats").json(), "/accepted");
  EXPECT_LT(accepted, 128u);
  const uint64_t wakeups_before = acceptWakeups(admin.get("/stats").json());

  // Every established client at once on a slow path: 8 requests in flight need
  // 8 upstream connections, more than the pool holds, taken from the reserve.
  std::vector<std::string> errors = runConcurrently(8, [&](size_t i) {
    for (int round = 0; round < 5; ++round) {
      HttpResponse r = established[i].get("/delay/50");
      if (r.status != 200) throw HarnessError("status " + std::to_string(r.status));
    }
  });
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(proxy().log().find("Too many open files"), std::string::npos) << proxy().logTail();

  // While paused, the listening socket is out of epoll: the worker is not woken
  // by the 170-odd connections waiting in its queue (a spinning accept loop
  // would count thousands here during the requests above).
  EXPECT_LT(acceptWakeups(admin.get("/stats").json()) - wakeups_before, 50u);
  EXPECT_EQ(sumOverWorkers(admin.get("/stats").json(), "/accepted"), accepted);

  // The waiting clients leave: the worker takes what is left in the queue
  // (closed connections) and serves new clients again, by itself.
  flood.closeAll();
  ASSERT_TRUE(waitUntil([&] { return httpGet(proxy().proxyPort(), "/").status == 200; }, 10s));
  EXPECT_LE(countMatches(proxy().log(), std::regex("descriptors in use|more failures")), 4u) << proxy().logTail();
}

// No reserve to speak of and a flood on the admin listener (which the reserve
// does not gate): accept() itself fails with EMFILE. The worker backs off
// instead of retrying at once, logs a few lines and then one summary a second,
// keeps serving its established clients, and recovers when descriptors free.
TEST_F(Descriptors, AcceptBacksOffOnEmfileAndLogsBoundedLines) {
  if (kSanitized) GTEST_SKIP() << "fills the descriptor table, which the sanitizer runtime needs too";
  start("fd_reserve = 1;");
  HttpClient client(proxy().proxyPort());
  ASSERT_EQ(client.get("/").status, 200);  // its upstream connection stays pooled
  HttpClient admin(proxy().adminPort());   // accepted before the flood, kept alive
  ASSERT_EQ(admin.get("/stats").status, 200);

  SilentClients flood(proxy().adminPort(), 300);
  ASSERT_TRUE(waitUntil([&] { return proxy().log().find("Too many open files") != std::string::npos; }, 10s))
      << proxy().logTail();
  const uint64_t wakeups_before = acceptWakeups(admin.get("/stats").json());

  // A measurement window, not a synchronisation: a worker retrying accept()
  // at once would wake up hundreds of thousands of times in it.
  std::this_thread::sleep_for(1500ms);
  for (int i = 0; i < 20; ++i) ASSERT_EQ(client.get("/").status, 200);  // the pooled connection serves
  const uint64_t wakeups = acceptWakeups(admin.get("/stats").json()) - wakeups_before;
  EXPECT_LT(wakeups, 100u) << "accept wake-ups in 1.5 s at the descriptor limit";

  const std::string log = proxy().log();
  const size_t full = countMatches(log, std::regex("accept: Too many open files"));
  EXPECT_GE(full, 1u);
  EXPECT_LE(full, 3u) << proxy().logTail();
  EXPECT_LE(countMatches(log, std::regex("more failures in the last")), 4u) << proxy().logTail();

  flood.closeAll();
  ASSERT_TRUE(waitUntil([&] { return httpGet(proxy().proxyPort(), "/").status == 200; }, 10s));
  ASSERT_TRUE(waitUntil([&] { return proxy().admin("/stats").status == 200; }, 10s));
}

// A connect that fails for want of descriptors is this host's problem: a 502
// at once, a bounded log, and the server is neither blamed nor taken out.
TEST_F(Descriptors, UpstreamConnectOutOfDescriptorsGives502WithoutBlamingTheServer) {
  if (kSanitized) GTEST_SKIP() << "fills the descriptor table, which the sanitizer runtime needs too";
  start("fd_reserve = 1;");
  HttpClient admin(proxy().adminPort());  // accepted before the table fills, kept alive
  ASSERT_EQ(admin.get("/stats").status, 200);
  // Clients until one descriptor is left: the first ones are accepted, the
  // rest wait in the queue.
  std::vector<HttpClient> clients;
  for (int i = 0; i < 200; ++i) clients.emplace_back(proxy().proxyPort());
  ASSERT_TRUE(waitUntil([&] { return proxy().log().find("descriptors in use") != std::string::npos; }, 10s))
      << proxy().logTail();

  // Eight accepted clients need eight new upstream connections at once; there
  // is room for about one.
  std::vector<int> statuses(8);
  runConcurrently(8, [&](size_t i) { statuses[i] = clients[i].get("/delay/200").status; });
  const size_t refused = static_cast<size_t>(std::count(statuses.begin(), statuses.end(), 502));
  EXPECT_GE(refused, 1u);
  EXPECT_EQ(refused + static_cast<size_t>(std::count(statuses.begin(), statuses.end(), 200)), 8u);

  const Json stats = admin.get("/stats").json();
  const Json& server = stats["workers"][0]["upstreams"][0]["servers"][0];
  EXPECT_EQ(server["fails_total"], 0) << server.dump();
  EXPECT_EQ(server["healthy"], true);
  const std::string log = proxy().log();
  EXPECT_NE(log.find("(a limit of this host)"), std::string::npos) << proxy().logTail();
  EXPECT_LE(countMatches(log, std::regex("cannot open a connection")), 3u) << proxy().logTail();
}

}  // namespace
}  // namespace pgtest
