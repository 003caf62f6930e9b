// Expect: 100-continue, Upgrade tunnels and HTTP/1.0 keep-alive.
#include <sys/socket.h>

#include <atomic>
#include <memory>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

class Protocol : public ProxyTest {};

TEST_F(Protocol, ExpectContinueIsHonoured) {
  startProxy();
  HttpClient client = connect();
  client.send("POST /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
              "Content-Length: 5\r\n\r\n");
  HttpResponse interim = client.read("POST", /*skipInterim=*/false);
  ASSERT_EQ(interim.status, 100) << "no 100 Continue before the body was sent";
  client.send("hello");
  HttpResponse r = client.read("POST");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json().at("body_length"), 5);
}

// The upstream never sees Expect, so a 100 it sends anyway is not relayed: the
// client gets exactly one 100 Continue (ours), then the final response.
TEST_F(Protocol, ExpectContinueIsAnsweredOnce) {
  upstream_.setHandler([](const UpstreamRequest& req, UpstreamConnection& conn) {
    if (req.header("Expect")) {
      conn.respond(400, "Expect was forwarded", {{"Content-Type", "text/plain"}});
      return;
    }
    conn.sendRaw("HTTP/1.1 100 Continue\r\n\r\n");
    conn.respond(200, "stored");
  });
  startProxy();
  HttpClient client = connect();
  client.send("POST /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
  ASSERT_EQ(client.read("POST", /*skipInterim=*/false).status, 100);
  client.send("hello");
  HttpResponse r = client.read("POST", /*skipInterim=*/false);
  EXPECT_EQ(r.status, 200) << "a second 100 Continue reached the client";
  EXPECT_EQ(r.body, "stored");
}

// A body we would refuse anyway gets its final status instead of 100 Continue,
// and nothing reaches the upstream.
TEST_F(Protocol, ExpectContinueWithTooLargeBodyGets413First) {
  startProxy(1, "", "limits = { max_body_bytes = 10; };");
  HttpClient client = connect();
  client.send("POST /poison HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n");
  HttpResponse r = client.read("POST", /*skipInterim=*/false);
  expectProxyError(r, 413);
  EXPECT_TRUE(client.waitClosed());
  expectNothingForwardedBefore("poison");
}

TEST_F(Protocol, UpgradeWith101BecomesTunnel) {
  upstream_.setHandler([](const UpstreamRequest& req, UpstreamConnection& conn) {
    auto upgrade = req.header("Upgrade");
    if (!upgrade || req.header("Connection").value_or("") != "upgrade") {
      conn.respond(400, "no Upgrade header arrived", {{"Content-Type", "text/plain"}});
      return;
    }
    conn.sendRaw("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " +
                 *upgrade + "\r\n\r\n");
    for (size_t n : {4, 3}) conn.sendRaw("pong:" + conn.readRaw(n));
    conn.closeAfterResponse();
  });
  startProxy();
  HttpClient client = connect();
  client.send(serializeRequest("GET", "/ws", {{"Connection", "Upgrade"}, {"Upgrade", "websocket"}}));
  HttpResponse r = client.read();
  ASSERT_EQ(r.status, 101) << r.body;
  EXPECT_EQ(r.header("Upgrade"), "websocket");
  client.send("ping");
  EXPECT_EQ(client.readRaw(9), "pong:ping");
  client.send("abc");
  EXPECT_EQ(client.readRaw(8), "pong:abc");
  EXPECT_TRUE(client.waitClosed()) << "tunnel not closed after the upstream closed";
  // Counted once, and the tunnelled connection never went back to the pool.
  EXPECT_TRUE(waitUntil([&] { return sumOverWorkers(proxy().stats(), "/upstream/open") == 0; }, 5s));
  EXPECT_EQ(sumOverWorkers(proxy().stats(), "/requests"), 1u);
}

// Bytes flow both ways for as long as both ends want, in both directions at once;
// the client's close ends the tunnel and closes the upstream side.
TEST_F(Protocol, TunnelRelaysBothWaysUntilTheClientCloses) {
  auto upstreamClosed = std::make_shared<std::atomic<bool>>(false);
  upstream_.setHandler([upstreamClosed](const UpstreamRequest&, UpstreamConnection& conn) {
    conn.sendRaw("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n");
    for (;;) {  // echo until the peer closes
      std::string bytes;
      try {
        bytes = conn.readRaw(1);
      } catch (const std::exception&) {
        *upstreamClosed = true;
        return;
      }
      conn.sendRaw(bytes);
    }
  });
  startProxy();
  HttpClient client = connect();
  client.send(serializeRequest("GET", "/echo", {{"Connection", "Upgrade"}, {"Upgrade", "echo"}}));
  ASSERT_EQ(client.read().status, 101);
  const std::string big = patternBody(256 * 1024, 7);  // more than any buffer on the way
  client.send(big);
  EXPECT_EQ(checksum(client.readRaw(big.size())), checksum(big)) << "the echo came back altered";
  client.send("tail");
  EXPECT_EQ(client.readRaw(4), "tail");
  ::shutdown(client.fd(), SHUT_RDWR);
  EXPECT_TRUE(waitUntil([&] { return upstreamClosed->load(); }, 5s)) << "the upstream side stayed open";
}

// A tunnel in which neither side sends anything for upstream_read ends: the
// client is closed, and so is the upstream side. (Before, the timeout was
// dropped: the client stayed open for ever, its exchange pointing at the
// closed upstream connection.)
TEST_F(Protocol, AnIdleTunnelEndsAfterUpstreamRead) {
  auto upstreamClosed = std::make_shared<std::atomic<bool>>(false);
  upstream_.setHandler([upstreamClosed](const UpstreamRequest&, UpstreamConnection& conn) {
    conn.sendRaw("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n");
    try {
      conn.readRaw(1);  // nothing comes: returns when the proxy closes its side
    } catch (const std::exception&) {
    }
    *upstreamClosed = true;
  });
  startProxy(1, "", "timeouts = { upstream_read = 0.3; };");
  HttpClient client = connect();
  client.send(serializeRequest("GET", "/quiet", {{"Connection", "Upgrade"}, {"Upgrade", "echo"}}));
  ASSERT_EQ(client.read().status, 101);
  EXPECT_TRUE(client.waitClosed()) << "the idle tunnel was never closed";
  EXPECT_TRUE(waitUntil([&] { return upstreamClosed->load(); }, 5s)) << "the upstream side stayed open";
  EXPECT_TRUE(waitUntil([&] { return sumOverWorkers(proxy().stats(), "/upstream/open") == 0; }, 5s));
}

// The upstream resets a tunnel: what it sent before reaches the client, then
// the client is closed; the worker goes on serving.
TEST_F(Protocol, ATunnelTheUpstreamResetsClosesTheClient) {
  upstream_.setHandler([](const UpstreamRequest& req, UpstreamConnection& conn) {
    if (req.target != "/ws") {
      conn.respond(200, "after");
      return;
    }
    conn.sendRaw("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n");
    conn.sendRaw("last words");
    conn.readRaw(4);
    conn.reset();
  });
  startProxy();
  HttpClient client = connect();
  client.send(serializeRequest("GET", "/ws", {{"Connection", "Upgrade"}, {"Upgrade", "echo"}}));
  ASSERT_EQ(client.read().status, 101);
  EXPECT_EQ(client.readRaw(10), "last words");
  client.send("ping");
  EXPECT_TRUE(client.waitClosed()) << "the client outlived its tunnel's upstream";
  client.send("more bytes after the end");  // must reach nothing (no stale upstream pointer)
  EXPECT_EQ(connect().get("/plain").status, 200) << "the worker no longer serves";
}

// An upgrade the upstream does not take: a normal response, and the connection
// goes on with plain HTTP.
TEST_F(Protocol, RefusedUpgradeKeepsHttp) {
  startProxy();
  HttpClient client = connect();
  client.send(serializeRequest("GET", "/no-ws", {{"Connection", "Upgrade"}, {"Upgrade", "websocket"}}));
  HttpResponse r = client.read();
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json().at("headers").at("upgrade"), "websocket") << "the upgrade was not forwarded";
  HttpResponse next = client.get("/after-refused-upgrade");
  EXPECT_EQ(next.status, 200);
  EXPECT_EQ(next.json().at("target"), "/after-refused-upgrade");
}

// A 101 to a request that asked for no upgrade is a protocol error: 502.
TEST_F(Protocol, UnaskedSwitchingProtocolsIs502) {
  upstream_.setHandler([](const UpstreamRequest&, UpstreamConnection& conn) {
    conn.sendRaw("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
    conn.closeWithoutResponse();
  });
  startProxy();
  expectProxyError(connect().get("/plain"), 502);
}

TEST_F(Protocol, Http10KeepAliveIsHonoured) {
  startProxy();
  HttpClient client = connect();
  for (const char* target : {"/first", "/second"}) {
    client.send(serializeRequest("GET", target, {{"Connection", "keep-alive"}}, {},
                                 Framing::kNone, "HTTP/1.0"));
    HttpResponse r = client.read();
    ASSERT_EQ(r.status, 200) << target;
    EXPECT_NE(r.framing, Framing::kChunked);
    EXPECT_EQ(r.json().at("target"), target);
  }
}

}  // namespace
}  // namespace pgtest
