// Listener options: backlog, defer_accept (TCP_DEFER_ACCEPT), as the kernel shows them
// through `ss`, and their change on reload without re-binding the socket.
#include <signal.h>

#include <string>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

// Runs `ss` with a filter on the local port; returns its lines (no header).
std::vector<std::string> ssLines(const std::vector<std::string>& args, uint16_t port) {
  std::vector<std::string> argv = {"ss", "-Htn"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"sport", "=", ":" + std::to_string(port)});
  CommandResult result = runCommand(argv);
  if (!result.status.exited() || result.status.code() != 0) throw HarnessError("ss failed: " + result.err);
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < result.out.size()) {
    size_t end = result.out.find('\n', start);
    if (end == std::string::npos) end = result.out.size();
    if (end > start) lines.push_back(result.out.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// The backlog of the listening socket on `port` (ss shows it as Send-Q).
int listenBacklog(uint16_t port) {
  auto lines = ssLines({"-l"}, port);
  if (lines.size() != 1) throw HarnessError("expected one listening socket, ss shows " + std::to_string(lines.size()));
  char state[32];
  int recvq = 0, sendq = 0;
  if (sscanf(lines[0].c_str(), "%31s %d %d", state, &recvq, &sendq) != 3) throw HarnessError("ss: " + lines[0]);
  return sendq;
}

// A client-initiated connection the kernel has not handed to accept() yet:
// with TCP_DEFER_ACCEPT the server side stays in SYN-RECV until data arrives.
size_t deferredConnections(uint16_t port) { return ssLines({"state", "syn-recv"}, port).size(); }

std::string listenConfig(const std::string& upstream, const std::string& listenOptions) {
  return "workers = 1;\n"
         "listen = ( { address = \"127.0.0.1:0\"; " + listenOptions + " } );\n"
         "admin = { address = \"127.0.0.1:0\"; };\n"
         "upstreams = ( { name = \"app\"; servers = ( { address = \"" + upstream + "\"; } ); } );\n";
}

class ListenOptions : public ProxyTest {
 protected:
  void reloadWith(const std::string& listenOptions) {
    const uint64_t generation = proxy().stats().at("generation").get<uint64_t>();
    proxy().dir().write("poolgate.conf", listenConfig(upstream_.address(), listenOptions));
    proxy().signal(SIGHUP);
    ASSERT_TRUE(waitUntil(
        [&] {
          Json stats = proxy().stats();
          return stats.at("generation").get<uint64_t>() == generation + 1 &&
                 stats.at("workers").size() == 1;  // the old generation has gone
        },
        10s))
        << "reload did not complete";
  }
};

TEST_F(ListenOptions, BacklogIsSetAndChangedInPlaceByReload) {
  startProxyWithConfig(listenConfig(upstream_.address(), "backlog = 17;"), {});
  const uint16_t port = proxy().proxyPort();
  EXPECT_EQ(listenBacklog(port), 17);

  reloadWith("backlog = 23;");
  EXPECT_EQ(listenBacklog(port), 23) << "the kept socket did not take the new backlog";
  EXPECT_EQ(connect().get("/after-reload").status, 200);
}

TEST_F(ListenOptions, DeferAcceptWaitsForTheFirstBytes) {
  startProxyWithConfig(listenConfig(upstream_.address(), "defer_accept = 5.0;"), {});
  const uint16_t port = proxy().proxyPort();

  // Connected from the client's side, but not accepted until the request arrives.
  HttpClient quiet = connect();
  EXPECT_TRUE(waitUntil([&] { return deferredConnections(port) == 1; }, 5s))
      << "a connection without data was accepted despite defer_accept";
  quiet.send(serializeRequest("GET", "/deferred"));
  HttpResponse r = quiet.read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(deferredConnections(port), 0u);

  // Off again after a reload: a silent connection is accepted at once.
  reloadWith("defer_accept = 0;");
  HttpClient silent = connect();
  EXPECT_TRUE(waitUntil([&] { return proxy().stats().at("totals").at("clients_idle").get<uint64_t>() >= 1; }, 5s))
      << "a silent connection was not accepted with defer_accept off";
  EXPECT_EQ(deferredConnections(port), 0u);
}

TEST(ListenOptionsConfig, BadValuesNameTheKey) {
  TempDir dir;
  std::string path = dir.write("bad.conf",
                               "listen = ( { address = \"127.0.0.1:0\"; nodelay = 3; } );\n");
  CommandResult result = runCommand({POOLGATE_BINARY, "-t", "-c", path});
  EXPECT_EQ(result.status.code(), 1);
  EXPECT_NE(result.err.find("bad.conf:1: listen[0].nodelay"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace pgtest
