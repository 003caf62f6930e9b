// Checks of the harness itself, without poolgate: the client against TestUpstream
// directly, the kernel connection count, and child processes. If these fail, the other
// failures say nothing about poolgate.
#include <gtest/gtest-spi.h>
#include <signal.h>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

TEST(Harness, ClientAndUpstreamKeepAliveAndFramings) {
  TestUpstream upstream;
  HttpClient client(upstream.port());
  HttpResponse a = client.get("/a");
  HttpResponse b = client.get("/b");
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.upstreamConnection(), b.upstreamConnection());
  EXPECT_EQ(b.json().at("target"), "/b");

  HttpResponse chunked = client.get("/chunked/100000");
  EXPECT_EQ(chunked.framing, Framing::kChunked);
  EXPECT_EQ(checksum(chunked.body), checksum(patternBody(100000, 100000)));

  HttpResponse head = client.request("HEAD", "/size/10");
  EXPECT_EQ(head.header("Content-Length"), "10");
  EXPECT_TRUE(head.body.empty());

  std::string body = patternBody(3 << 20, 5);
  HttpResponse post = client.request("POST", "/p", {}, body, Framing::kChunked);
  EXPECT_EQ(post.json().at("body_checksum"), checksum(body));
  EXPECT_EQ(client.get("/size/0").body.size(), 0u);

  ASSERT_TRUE(upstream.waitForRequests(6));
  auto requests = upstream.requests();
  EXPECT_TRUE(requests[4].chunked);
  EXPECT_EQ(requests[4].bodyLength, body.size());
  EXPECT_EQ(requests[5].indexOnConnection, 5u);
  EXPECT_TRUE(upstream.errors().empty());
}

TEST(Harness, CloseDelimitedAndConnectionClose) {
  TestUpstream upstream([](const UpstreamRequest& req, UpstreamConnection& conn) {
    if (req.path() == "/eof") conn.respondCloseDelimited(200, "until close");
    else conn.respond(200, "bye", {{"Connection", "close"}});
  });
  {
    HttpClient client(upstream.port());
    HttpResponse r = client.get("/eof");
    EXPECT_EQ(r.framing, Framing::kClose);
    EXPECT_EQ(r.body, "until close");
  }
  HttpClient client(upstream.port());
  HttpResponse r = client.get("/x");
  EXPECT_TRUE(r.connectionClose());
  EXPECT_TRUE(client.waitClosed(2s));
}

TEST(Harness, CountEstablishedFollowsTheKernel) {
  TestUpstream upstream;
  upstream.closeIdleAfter(1s);
  std::vector<HttpClient> clients;
  for (int i = 0; i < 3; ++i) clients.emplace_back(upstream.port());
  EXPECT_TRUE(waitUntil([&] { return countEstablished(upstream.port()) == 3; }, 2s));
  // The upstream closes the idle connections; the client sides leave ESTABLISHED.
  EXPECT_TRUE(waitUntil([&] { return countEstablished(upstream.port()) == 0; }, 3s));
  for (auto& c : clients) EXPECT_TRUE(c.waitClosed(1s));
}

TEST(Harness, IdleResetAndPeerCloseAreSeen) {
  TestUpstream upstream;
  {
    HttpClient client(upstream.port());
    ASSERT_EQ(client.get("/").status, 200);
  }  // we close: the upstream sees the peer close
  EXPECT_TRUE(upstream.waitClosedByPeer(1, 2s));

  upstream.closeIdleAfter(100ms, /*withReset=*/true);
  HttpClient client(upstream.port());
  EXPECT_TRUE(client.waitClosed(2s));
  EXPECT_FALSE(upstream.waitClosedByPeer(2, 0ms));
}

TEST(Harness, ProcessesReportExitStatusAndOutput) {
  CommandResult r = runCommand({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.status.code(), 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");

  TempDir dir;
  Process sleeper({"/bin/sleep", "30"}, dir.file("log"), dir.file("log"));
  EXPECT_FALSE(sleeper.wait(50ms).has_value());
  sleeper.signal(SIGTERM);
  auto status = sleeper.wait(2s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->signal(), SIGTERM);
}

TEST(Harness, ConfigTemplates) {
  EXPECT_EQ(substitute("a ${X} b ${Y}", {{"X", "1"}, {"Y", "2"}}), "a 1 b 2");
  EXPECT_THROW(substitute("${NOPE}", {}), HarnessError);
  EXPECT_EQ(tailLines("1\n2\n3\n", 2), "2\n3\n");
}

// A worker that crashes fails the test even when the master has replaced it
// and no client noticed: ~Poolgate reads the log (and sanitizer reports).
TEST(Harness, ACrashedWorkerFailsTheTest) {
  TestUpstream upstream;
  EXPECT_NONFATAL_FAILURE(
      {
        Poolgate proxy(proxyConfig(upstream.address(), 1));
        proxy.start();
        const pid_t victim = proxy.runningWorkerPids().at(0);
        ASSERT_EQ(::kill(victim, SIGSEGV), 0);
        ASSERT_TRUE(waitUntil(
            [&] {
              auto pids = proxy.runningWorkerPids();
              return pids.size() == 1 && pids[0] != victim;
            },
            5s));
      },
      "poolgate crashed");
}

}  // namespace
}  // namespace pgtest
