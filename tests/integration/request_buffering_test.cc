// Request buffering (issue 13): poolgate receives the whole request body before it
// opens or checks out an upstream connection, so that a slow upload holds a cheap proxy
// connection and not a prefork app worker. Up to buffering.memory the body stays in
// memory, the rest goes to an unlinked temporary file in buffering.temp_path. A buffered
// chunked body goes up with a Content-Length. Past memory + max_temp_file, poolgate
// falls back to streaming. Routes with request_buffering = false, or
// buffering.request = false, stream as before.
//
// "No upstream contact" is checked twice: the TestUpstream accepted no connection, and
// the kernel lists no established connection to its port.
#include <poll.h>

#include <filesystem>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

constexpr size_t kMiB = 1024 * 1024;

// The head of a POST whose body follows separately.
std::string lengthHead(const std::string& target, size_t length, Headers headers = {}) {
  headers.emplace_back("Content-Length", std::to_string(length));
  return serializeRequest("POST", target, headers);
}

std::string chunkedHead(const std::string& target) {
  return serializeRequest("POST", target, {{"Transfer-Encoding", "chunked"}});
}

// Sends `bytes` in pieces until all are sent, or poolgate has answered or closed: for a
// request poolgate refuses before its body has ended.
void sendUntilAnswered(HttpClient& client, std::string_view bytes) {
  constexpr size_t kPiece = 64 * 1024;
  for (size_t off = 0; off < bytes.size(); off += kPiece) {
    pollfd p{client.fd(), POLLIN, 0};
    if (::poll(&p, 1, 0) > 0) return;
    if (!client.trySend(bytes.substr(off, kPiece))) return;
  }
}

class RequestBuffering : public ProxyTest {
 protected:
  // The `buffering` object of the (only) worker in /stats.
  Json buffering() { return proxy().stats().at("workers").at(0).at("buffering"); }
  uint64_t buffered(const char* field) { return buffering().at(field).get<uint64_t>(); }

  // Nothing of any request has reached the upstream: no connection accepted, none
  // established in the kernel, no byte received.
  void expectNoUpstreamContact(const std::string& when) {
    EXPECT_EQ(upstream_.connectionCount(), 0u) << when << ": the upstream accepted a connection";
    EXPECT_EQ(countEstablished(upstream_.port()), 0u) << when << ": poolgate holds a connection to the upstream";
    EXPECT_EQ(upstream_.bytesReceived(), 0u) << when << ": bytes reached the upstream";
  }

  // Waits until poolgate shows part of a request body in its buffering memory: it has
  // read body bytes. Nothing may have gone upstream by then.
  void expectHeldWithoutUpstream(const std::string& when) {
    EXPECT_TRUE(waitUntil([&] { return buffered("memory_bytes") > 0; }, 5s))
        << when << ": buffering.memory_bytes never showed the partial body";
    expectNoUpstreamContact(when);
  }

  void expectMemoryGivenBack() {
    EXPECT_TRUE(waitUntil([&] { return buffered("memory_bytes") == 0; }, 5s))
        << "buffering memory still held after the exchange: " << buffering();
  }

  // The response of the standard upstream handler: it saw `body`, whole.
  static void expectEchoed(const HttpResponse& r, const std::string& target, std::string_view body) {
    ASSERT_EQ(r.status, 200) << target << ": " << r.body.substr(0, 200);
    Json j = r.json();
    EXPECT_EQ(j.at("target"), target);
    EXPECT_EQ(j.at("body_length"), body.size()) << target;
    EXPECT_EQ(j.at("body_checksum"), checksum(body)) << target;
  }

  // The upstream received `target` framed with Content-Length (and no Transfer-Encoding).
  void expectForwardedWithLength(const std::string& target, size_t length, uint64_t sum) {
    for (const UpstreamRequest& req : upstream_.requests()) {
      if (req.target != target) continue;
      EXPECT_EQ(req.header("Content-Length").value_or("(none)"), std::to_string(length)) << target;
      EXPECT_EQ(countHeader(req.headers, "Transfer-Encoding"), 0u) << target;
      EXPECT_FALSE(req.chunked) << target;
      EXPECT_EQ(req.bodyLength, length) << target;
      EXPECT_EQ(req.bodyChecksum, sum) << target;
      return;
    }
    ADD_FAILURE() << target << " never reached the upstream";
  }
};

// ---- 1. A slow body: nothing goes upstream until it is complete.

TEST_F(RequestBuffering, ASlowBodyIsHeldUntilCompleteBeforeTheUpstreamIsContacted) {
  startProxy();
  const std::string body = patternBody(200000, 21);
  HttpClient client = connect();
  client.send(lengthHead("/upload", body.size()) + body.substr(0, 100000));
  expectHeldWithoutUpstream("half of the body sent");

  client.send(body.substr(100000));
  HttpResponse r = client.read("POST");
  expectEchoed(r, "/upload", body);
  EXPECT_EQ(upstream_.connectionCount(), 1u);
  expectForwardedWithLength("/upload", body.size(), checksum(body));

  const Json b = buffering();
  EXPECT_EQ(b.at("requests_total"), 1) << b;
  EXPECT_EQ(b.at("requests_disk_total"), 0) << b;  // 200000 bytes fit in the 256 KiB of memory
  EXPECT_EQ(b.at("responses_total"), 0) << b;
  expectMemoryGivenBack();
  EXPECT_EQ(client.get("/after").status, 200) << "client connection not usable afterwards";
}

// ---- 2. A buffered chunked body goes upstream with Content-Length = its decoded length.

class RequestBufferingChunked : public RequestBuffering, public ::testing::WithParamInterface<size_t> {};

TEST_P(RequestBufferingChunked, ForwardedWithContentLengthAndNoTransferEncoding) {
  const size_t size = GetParam();
  startProxy();
  const std::string body = patternBody(size, 22);
  // Uneven chunks, sent in two writes cut inside a chunk.
  const std::string wire = chunkedHead("/chunked-upload") + chunkedEncode(body, 7001);
  HttpClient client = connect();
  client.send(wire.substr(0, wire.size() / 2));
  client.send(wire.substr(wire.size() / 2));
  HttpResponse r = client.read("POST");
  expectEchoed(r, "/chunked-upload", body);
  expectForwardedWithLength("/chunked-upload", size, checksum(body));

  if (size > 0) {
    const Json b = buffering();
    EXPECT_EQ(b.at("requests_total"), 1) << b;
    EXPECT_EQ(b.at("requests_disk_total"), size > 262144 ? 1 : 0) << b;
  }
  EXPECT_EQ(client.get("/after").status, 200) << "client connection not usable afterwards";
}

INSTANTIATE_TEST_SUITE_P(RequestBuffering, RequestBufferingChunked,
                         ::testing::Values(size_t{0}, size_t{150000}, 1 * kMiB),
                         [](const auto& info) { return std::to_string(info.param) + "B"; });

// ---- 3. max_body_bytes on a chunked body: 413 and no upstream connection at all.

TEST_F(RequestBuffering, AChunkedBodyOverTheLimitGets413AndNothingReachesTheUpstream) {
  startProxy(1, "", "limits = { max_body_bytes = 1048576; };");
  const std::string body = patternBody(2 * kMiB, 23);
  const std::string wire = chunkedHead("/poison") + chunkedEncode(body, 100000);
  HttpClient client = connect();
  client.send(wire.substr(0, 500000));
  sendUntilAnswered(client, std::string_view(wire).substr(500000));
  HttpResponse r = client.read("POST");
  expectProxyError(r, 413);
  EXPECT_TRUE(r.connectionClose());
  EXPECT_TRUE(client.waitClosed());
  expectNoUpstreamContact("after the 413");

  // A later request is the first thing the upstream ever sees.
  HttpResponse after = connect().get("/after");
  ASSERT_EQ(after.status, 200);
  EXPECT_EQ(after.upstreamConnection(), 1);
  EXPECT_EQ(upstream_.connectionCount(), 1u);
  EXPECT_EQ(upstream_.rawReceived().find("/poison"), std::string::npos);
}

// ---- 4. A 100 MiB upload within the limit: buffered to disk, forwarded intact.

TEST_F(RequestBuffering, A100MiBUploadIsBufferedToDiskAndForwardedWithItsContentLength) {
  TempDir spill;
  startProxy(1, "",
             "limits = { max_body_bytes = 209715200; };\n"
             "buffering = { temp_path = \"" + spill.path() + "\"; };");
  constexpr size_t kPieces = 100;
  constexpr size_t kSize = kPieces * kMiB;
  HttpClient client(proxy().proxyPort(), 30s);
  client.send(lengthHead("/big-upload", kSize));
  // Generated and sent a MiB at a time; the upstream hashes what it reads.
  uint64_t sum = kChecksumStart;
  for (size_t i = 0; i < kPieces; ++i) {
    const std::string piece = patternBody(kMiB, 1000 + i);
    sum = checksum(piece, sum);
    if (i + 1 == kPieces) {
      // 99 MiB are sent: past the few MiB that socket buffers take, poolgate has read
      // them. Still nothing upstream, and no file to be seen (unlinked).
      expectNoUpstreamContact("99 of 100 MiB sent");
      EXPECT_TRUE(std::filesystem::is_empty(spill.path())) << "the temporary file is visible";
    }
    client.send(piece);
  }
  HttpResponse r = client.read("POST");
  ASSERT_EQ(r.status, 200) << r.body.substr(0, 200);
  Json j = r.json();
  EXPECT_EQ(j.at("body_length"), kSize);
  EXPECT_EQ(j.at("body_checksum"), sum) << "the body the upstream received differs";
  EXPECT_EQ(upstream_.connectionCount(), 1u);
  expectForwardedWithLength("/big-upload", kSize, sum);

  const Json b = buffering();
  EXPECT_EQ(b.at("requests_total"), 1) << b;
  EXPECT_EQ(b.at("requests_disk_total"), 1) << b;
  EXPECT_EQ(b.at("largest_bytes"), kSize) << b;
  EXPECT_EQ(b.at("errors_total"), 0) << b;
  expectMemoryGivenBack();
}

// ---- 5. Past memory + max_temp_file: poolgate streams what it holds, then the rest.

TEST_F(RequestBuffering, PastMemoryWithNoTempFileAChunkedBodyStreamsAsChunked) {
  startProxy(1, "", "buffering = { memory = 131072; max_temp_file = 0; };");
  const std::string body = patternBody(kMiB, 24);
  const std::string encoded = chunkedEncode(body, 16384);
  constexpr size_t kHeld = 96 * 1024;  // within the memory, so it is held
  HttpClient client = connect();
  client.send(chunkedHead("/fallback") + encoded.substr(0, kHeld));
  expectHeldWithoutUpstream("96 KiB of a chunked body sent");
  // Half of the body: more than memory + max_temp_file. The upstream gets what poolgate
  // held and what followed (twice what memory holds), before the client sends the rest.
  client.send(encoded.substr(kHeld, encoded.size() / 2 - kHeld));
  EXPECT_TRUE(waitUntil([&] { return upstream_.bytesReceived() > 2 * 131072; }, 5s))
      << "past memory + max_temp_file, poolgate did not stream: " << upstream_.bytesReceived()
      << " bytes at the upstream";
  client.send(encoded.substr(encoded.size() / 2));
  HttpResponse r = client.read("POST");
  expectEchoed(r, "/fallback", body);

  ASSERT_TRUE(upstream_.waitForRequests(1));
  const UpstreamRequest req = upstream_.requests().at(0);
  EXPECT_TRUE(req.chunked) << "a streamed chunked body goes up chunked";
  EXPECT_FALSE(req.header("Content-Length").has_value());
  EXPECT_EQ(buffered("requests_disk_total"), 0u);
  expectMemoryGivenBack();
}

// With a Content-Length, poolgate may know at the head that the body cannot be held;
// either way the body streams, intact and with its Content-Length.
TEST_F(RequestBuffering, PastMemoryWithNoTempFileALengthBodyStreamsIntact) {
  startProxy(1, "", "buffering = { memory = 131072; max_temp_file = 0; };");
  const std::string body = patternBody(kMiB, 25);
  HttpClient client = connect();
  client.send(lengthHead("/fallback", body.size()) + body.substr(0, kMiB / 2));
  EXPECT_TRUE(waitUntil([&] { return upstream_.bytesReceived() > 2 * 131072; }, 5s))
      << "past memory + max_temp_file, poolgate did not stream: " << upstream_.bytesReceived()
      << " bytes at the upstream";
  client.send(body.substr(kMiB / 2));
  HttpResponse r = client.read("POST");
  expectEchoed(r, "/fallback", body);
  expectForwardedWithLength("/fallback", body.size(), checksum(body));
  EXPECT_EQ(buffered("requests_disk_total"), 0u);
  expectMemoryGivenBack();
}

// ---- 6. Streaming, per route or for the whole proxy.

class RequestStreaming : public RequestBuffering {
 protected:
  // Sends the head and the first 1000 bytes of `body` to `target`; the upstream must
  // receive both while the client still holds the rest.
  void expectStreamed(const std::string& target, const std::string& body, Framing framing) {
    HttpClient client = connect();
    std::string wire = framing == Framing::kChunked ? chunkedHead(target) + chunkedEncode(body, 1000)
                                                    : lengthHead(target, body.size()) + body;
    const size_t cut = wire.find("\r\n\r\n") + 4 + 1000;
    client.send(wire.substr(0, cut));
    const std::string first = body.substr(0, 900);
    EXPECT_TRUE(waitUntil(
        [&] {
          const std::string raw = upstream_.rawReceived();
          return raw.find("POST " + target + " ") != std::string::npos &&
                 raw.find(first) != std::string::npos;
        },
        5s))
        << target << ": the upstream did not see the head and the first body bytes before the body ended";
    client.send(wire.substr(cut));
    HttpResponse r = client.read("POST");
    expectEchoed(r, target, body);
  }
};

TEST_F(RequestStreaming, ARouteWithRequestBufferingOffStreams) {
  startProxy(1, "",
             "routes = ( { host = \"*\"; prefix = \"/stream\"; upstream = \"app\"; request_buffering = false; },\n"
             "           { host = \"*\"; prefix = \"/\"; upstream = \"app\"; } );");
  const std::string body = patternBody(200000, 26);
  expectStreamed("/stream/upload", body, Framing::kContentLength);
  expectForwardedWithLength("/stream/upload", body.size(), checksum(body));
  EXPECT_EQ(buffered("requests_total"), 0u) << "a streamed request counted as buffered";

  // The other route still buffers: its partial body stays with poolgate, even though an
  // idle upstream connection is there to take it.
  HttpClient client = connect();
  client.send(lengthHead("/buffered", body.size()) + body.substr(0, 100000));
  EXPECT_TRUE(waitUntil([&] { return buffered("memory_bytes") > 0; }, 5s))
      << "buffering.memory_bytes never showed the partial body";
  EXPECT_EQ(upstream_.rawReceived().find("/buffered"), std::string::npos)
      << "the head of a buffered request went upstream before its body was complete";
  client.send(body.substr(100000));
  expectEchoed(client.read("POST"), "/buffered", body);
  EXPECT_EQ(buffered("requests_total"), 1u);
}

TEST_F(RequestStreaming, BufferingRequestOffStreamsEveryRequest) {
  startProxy(1, "", "buffering = { request = false; };");
  const std::string body = patternBody(200000, 27);
  expectStreamed("/upload", body, Framing::kChunked);
  ASSERT_TRUE(upstream_.waitForRequests(1));
  const UpstreamRequest req = upstream_.requests().at(0);
  EXPECT_TRUE(req.chunked) << "a streamed chunked body goes up chunked, as before";
  EXPECT_FALSE(req.header("Content-Length").has_value());
  EXPECT_EQ(buffered("requests_total"), 0u);
}

// ---- 7. Expect: 100-continue is answered by poolgate, before any upstream contact.

TEST_F(RequestBuffering, ExpectContinueIsAnsweredBeforeTheUpstreamIsContacted) {
  startProxy();
  const std::string body = patternBody(200000, 28);
  HttpClient client = connect();
  client.send(lengthHead("/expect", body.size(), {{"Expect", "100-continue"}}));
  HttpResponse interim = client.read("POST", /*skipInterim=*/false);
  ASSERT_EQ(interim.status, 100);
  EXPECT_EQ(interim.version, "HTTP/1.1");
  client.send(body.substr(0, 100000));
  expectHeldWithoutUpstream("100 Continue answered, half of the body sent");

  client.send(body.substr(100000));
  HttpResponse r = client.read("POST");
  expectEchoed(r, "/expect", body);
  ASSERT_TRUE(upstream_.waitForRequests(1));
  EXPECT_FALSE(upstream_.requests().at(0).header("Expect").has_value())
      << "the upstream saw the Expect header";
  expectForwardedWithLength("/expect", body.size(), checksum(body));
}

// ---- 8. client_body timeout while buffering: 408, the upstream untouched.

TEST_F(RequestBuffering, AStalledBodyGets408WithoutUpstreamContact) {
  startProxy(1, "", "timeouts = { client_body = 0.5; };");
  HttpClient client = connect();
  client.send(lengthHead("/stalled", 100) + "0123456789");
  HttpResponse r = client.read("POST");
  expectProxyError(r, 408);
  EXPECT_TRUE(r.connectionClose());
  EXPECT_TRUE(client.waitClosed());
  expectNoUpstreamContact("after the 408");
  expectMemoryGivenBack();

  const std::string body = patternBody(1000, 29);
  expectEchoed(connect().request("POST", "/after", {}, body, Framing::kContentLength), "/after", body);
}

// ---- 9. A temporary file that cannot be written: 507, logged, nothing upstream.

TEST_F(RequestBuffering, ATempFileThatCannotBeWrittenGets507) {
  TempDir dir;
  const std::string spill = dir.path() + "/spill";
  std::filesystem::create_directory(spill);
  startProxy(1, "", "buffering = { temp_path = \"" + spill + "\"; };");
  std::filesystem::remove(spill);  // O_TMPFILE in it fails from now on (ENOENT)

  const std::string body = patternBody(kMiB, 30);  // more than the 256 KiB of memory
  HttpClient client = connect();
  sendUntilAnswered(client, lengthHead("/poison", body.size()) + body);
  HttpResponse r = client.read("POST");
  expectProxyError(r, 507);
  EXPECT_TRUE(r.connectionClose());
  EXPECT_TRUE(client.waitClosed());
  EXPECT_TRUE(waitUntil([&] { return lower(proxy().log()).find("request buffering") != std::string::npos; }, 5s))
      << "no log line mentions request buffering";
  expectNoUpstreamContact("after the 507");
  expectMemoryGivenBack();

  // A body that fits in memory needs no file: still served.
  const std::string small = patternBody(1000, 31);
  expectEchoed(connect().request("POST", "/after", {}, small, Framing::kContentLength), "/after", small);
  EXPECT_EQ(upstream_.connectionCount(), 1u);
  EXPECT_EQ(upstream_.rawReceived().find("/poison"), std::string::npos);
}

// ---- 10. Keep-alive and pipelining with buffered bodies.

TEST_F(RequestBuffering, BufferedRequestsOnOneConnectionAreAnsweredInOrder) {
  startProxy();
  const std::string one = patternBody(300000, 32);   // spills to the file
  const std::string two = patternBody(5000, 33);
  const std::string three = patternBody(200000, 34);
  const std::string four = patternBody(1000, 35);
  HttpClient client = connect();
  expectEchoed(client.request("POST", "/one", {}, one, Framing::kContentLength), "/one", one);
  expectEchoed(client.request("POST", "/two", {}, two, Framing::kChunked), "/two", two);
  // Pipelined: both requests in one write.
  client.send(serializeRequest("POST", "/three", {}, three, Framing::kChunked) +
              serializeRequest("POST", "/four", {}, four, Framing::kContentLength));
  expectEchoed(client.read("POST"), "/three", three);
  expectEchoed(client.read("POST"), "/four", four);

  std::vector<std::string> targets;
  for (const UpstreamRequest& req : upstream_.requests()) targets.push_back(req.target);
  EXPECT_EQ(targets, (std::vector<std::string>{"/one", "/two", "/three", "/four"}));
  expectForwardedWithLength("/one", one.size(), checksum(one));
  expectForwardedWithLength("/two", two.size(), checksum(two));
  expectForwardedWithLength("/three", three.size(), checksum(three));
  expectForwardedWithLength("/four", four.size(), checksum(four));
  const Json b = buffering();
  EXPECT_EQ(b.at("requests_total"), 4) << b;
  EXPECT_EQ(b.at("requests_disk_total"), 1) << b;
  EXPECT_EQ(client.get("/after").status, 200) << "client connection not usable afterwards";
}

// ---- 11. /stats and /metrics.

TEST_F(RequestBuffering, StatsAndMetricsCountBufferedRequests) {
  startProxy();
  const std::string small = patternBody(1000, 36);
  const std::string large = patternBody(kMiB, 37);
  HttpClient client = connect();
  ASSERT_EQ(client.get("/no-body").status, 200);  // nothing to buffer: not counted
  expectEchoed(client.request("POST", "/small", {}, small, Framing::kContentLength), "/small", small);
  expectEchoed(client.request("POST", "/large", {}, large, Framing::kContentLength), "/large", large);
  expectMemoryGivenBack();

  const Json b = buffering();
  EXPECT_EQ(b.at("requests_total"), 2) << b;
  EXPECT_EQ(b.at("requests_disk_total"), 1) << b;
  EXPECT_EQ(b.at("bytes_total"), small.size() + large.size()) << b;
  EXPECT_EQ(b.at("largest_bytes"), large.size()) << b;
  EXPECT_EQ(b.at("responses_total"), 0) << b;
  EXPECT_EQ(b.at("errors_total"), 0) << b;

  HttpResponse metrics = proxy().admin("/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(metricSum(metrics.body, "poolgate_worker_buffered_requests_total"), 2);
  EXPECT_EQ(metricSum(metrics.body, "poolgate_worker_buffered_requests_disk_total"), 1);
  for (const char* family : {"poolgate_worker_buffered_requests_total", "poolgate_worker_buffered_requests_disk_total"})
    EXPECT_NE(metrics.body.find(std::string("# TYPE ") + family + " counter\n"), std::string::npos) << family;
  // The same labels as the response counters.
  const std::string responses = "\npoolgate_worker_buffered_responses_total{";
  const size_t at = metrics.body.find(responses);
  ASSERT_NE(at, std::string::npos);
  const size_t open = at + responses.size() - 1;
  const std::string labels = metrics.body.substr(open, metrics.body.find('}', open) + 1 - open);
  EXPECT_NE(metrics.body.find("\npoolgate_worker_buffered_requests_total" + labels + " 2\n"), std::string::npos)
      << "want labels " << labels;
  EXPECT_NE(metrics.body.find("\npoolgate_worker_buffered_requests_disk_total" + labels + " 1\n"), std::string::npos)
      << "want labels " << labels;
}

}  // namespace
}  // namespace pgtest
