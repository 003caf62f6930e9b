// Expect: 100-continue, Upgrade tunnels and HTTP/1.0 keep-alive.
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

// Disabled until issue #3 builds this; enable it there.
TEST_F(Protocol, DISABLED_UpgradeWith101BecomesTunnel) {
  upstream_.setHandler([](const UpstreamRequest& req, UpstreamConnection& conn) {
    auto upgrade = req.header("Upgrade");
    if (!upgrade) {
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
