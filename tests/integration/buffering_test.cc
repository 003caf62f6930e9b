// Response buffering (core/spool.h): what the upstream sends faster than the
// client reads is kept by poolgate, in memory and then in an unlinked
// temporary file, so that the upstream connection (and the prefork app
// worker behind it) is free as soon as the response is complete. Streams that
// must not wait (server-sent events, X-Accel-Buffering: no, routes with
// response_buffering = false) are never spooled.
#include <dirent.h>

#include <thread>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

const Json& serverOf(const Json& stats) { return stats.at("workers").at(0).at("upstreams").at(0).at("servers").at(0); }
const Json& bufferingOf(const Json& stats) { return stats.at("workers").at(0).at("buffering"); }

size_t entriesIn(const std::string& directory) {
  DIR* dir = opendir(directory.c_str());
  if (dir == nullptr) return 0;
  size_t count = 0;
  while (dirent* entry = readdir(dir)) {
    if (std::string(entry->d_name) != "." && std::string(entry->d_name) != "..") ++count;
  }
  closedir(dir);
  return count;
}

class Buffering : public ProxyTest {
 protected:
  // /big: 16 MiB with a Content-Length; /chunked: 12 MiB chunked; /events:
  // 16 MiB of text/event-stream; /unbuffered: 16 MiB with X-Accel-Buffering:
  // no. (Loopback socket buffers absorb a few MiB: each body is larger, so
  // that only poolgate can have read it whole while the client reads nothing.)
  void serveBodies() {
    upstream_.setHandler([this](const UpstreamRequest& req, UpstreamConnection& conn) {
      if (req.path() == "/big") {
        conn.respond(200, big_);
      } else if (req.path() == "/chunked") {
        conn.respondChunked(200, chunked_);
      } else if (req.path() == "/events") {
        conn.respond(200, small_, {{"Content-Type", "text/event-stream"}});
      } else if (req.path() == "/unbuffered") {
        conn.respond(200, small_, {{"X-Accel-Buffering", "no"}});
      } else {
        TestUpstream::standardHandler()(req, conn);
      }
    });
  }
  // Sends GET `path` and reads nothing until the upstream connection is back
  // in the pool: only a response poolgate has read whole allows that.
  HttpClient requestAndWaitForRelease(const std::string& path) {
    HttpClient client = connect();
    client.send(serializeRequest("GET", path));
    EXPECT_TRUE(waitUntil([&] { return released(); }, 10s))
        << "the upstream connection stayed busy while the client read nothing: "
        << serverOf(proxy().stats()).dump();
    return client;
  }

  bool released() {
    const Json server = serverOf(proxy().stats());
    return server.at("idle") == 1 && server.at("active") == 0;
  }
  // A stream is relayed as it comes: while the client reads nothing, the
  // upstream connection stays busy (the bound is for a thing that must not
  // happen), and the spool counters stay at 0.
  void expectStreamed(const std::string& path, const std::string& body) {
    HttpClient client = connect();
    client.send(serializeRequest("GET", path));
    ASSERT_TRUE(upstream_.waitForRequests(1));
    EXPECT_FALSE(waitUntil([&] { return released(); }, 500ms)) << path << " was read ahead of the client";
    HttpResponse r = client.read();
    ASSERT_EQ(r.status, 200) << path;
    EXPECT_EQ(checksum(r.body), checksum(body)) << path;
    EXPECT_EQ(bufferingOf(proxy().stats()).at("responses_total"), 0) << path;
  }

  const std::string big_ = patternBody(16 << 20, 3);
  const std::string chunked_ = patternBody(12 << 20, 5);
  const std::string small_ = patternBody(16 << 20, 7);
};

TEST_F(Buffering, ASlowReaderDoesNotHoldTheUpstreamConnection) {
  serveBodies();
  TempDir spill;
  startProxy(1, "", "buffering = { temp_path = \"" + spill.path() + "\"; };");
  HttpClient client = requestAndWaitForRelease("/big");
  // Written to a file that was never linked: nothing shows in the directory.
  EXPECT_EQ(entriesIn(spill.path()), 0u);
  HttpResponse r = client.read();
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body.size(), big_.size());
  EXPECT_EQ(checksum(r.body), checksum(big_));
  const Json buffering = bufferingOf(proxy().stats());
  EXPECT_EQ(buffering.at("responses_total"), 1) << buffering;
  EXPECT_EQ(buffering.at("responses_disk_total"), 1) << buffering;  // more than the 256 KiB in memory
  // What the socket buffers did not take: most of it.
  EXPECT_GT(buffering.at("largest_bytes").get<uint64_t>(), 8u << 20) << buffering;
  EXPECT_LE(buffering.at("largest_bytes").get<uint64_t>(), 16u << 20) << buffering;
  EXPECT_EQ(buffering.at("memory_bytes"), 0) << buffering;  // all given back
  EXPECT_EQ(buffering.at("errors_total"), 0) << buffering;
  // The connection the slow client did not hold serves the next request.
  EXPECT_EQ(connect().get("/next").upstreamConnection(), r.upstreamConnection());
}

// A client that reads steadily but slowly (about 6 MiB/s here) is slow too:
// once it has kept the upstream waiting 10 ms in all, the rest of the
// response is read ahead, and the upstream connection is back in the pool
// long before the client has read it all.
TEST_F(Buffering, ASteadySlowReaderAlsoReleasesTheUpstreamEarly) {
  serveBodies();
  startProxy();
  HttpClient client = connect();
  client.send(serializeRequest("GET", "/big"));
  std::string received = client.readRaw(1);
  while (received.find("\r\n\r\n") == std::string::npos) received += client.readRaw(1);
  const size_t total = received.size() + big_.size();
  bool released_early = false;
  while (received.size() < total) {
    received += client.readRaw(std::min<size_t>(64 * 1024, total - received.size()));
    if (!released_early && released()) released_early = received.size() < total;
    std::this_thread::sleep_for(10ms);  // the client's pace, not a wait for anything
  }
  EXPECT_TRUE(released_early) << "the upstream connection was held until the client had read everything";
  EXPECT_EQ(checksum(std::string_view(received).substr(total - big_.size())), checksum(big_));
  EXPECT_EQ(bufferingOf(proxy().stats()).at("responses_total"), 1);
}

TEST_F(Buffering, AChunkedResponseIsKeptInOrderAndReframed) {
  serveBodies();
  startProxy();
  HttpClient client = requestAndWaitForRelease("/chunked");
  HttpResponse r = client.read();
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("Transfer-Encoding").value_or(""), "chunked");
  EXPECT_EQ(checksum(r.body), checksum(chunked_));
  EXPECT_EQ(bufferingOf(proxy().stats()).at("responses_total"), 1);
}

TEST_F(Buffering, InMemoryOnlyWhenNoFileIsAllowed) {
  serveBodies();
  startProxy(1, "", "buffering = { memory = 16777216; max_temp_file = 0; };");
  HttpClient client = requestAndWaitForRelease("/big");
  HttpResponse r = client.read();
  EXPECT_EQ(checksum(r.body), checksum(big_));
  const Json buffering = bufferingOf(proxy().stats());
  EXPECT_EQ(buffering.at("responses_total"), 1) << buffering;
  EXPECT_EQ(buffering.at("responses_disk_total"), 0) << buffering;
}

TEST_F(Buffering, EventStreamsAreNotBuffered) {
  serveBodies();
  startProxy();
  expectStreamed("/events", small_);
}

TEST_F(Buffering, AnUpstreamCanAskNotToBeBuffered) {
  serveBodies();
  startProxy();
  expectStreamed("/unbuffered", small_);
}

TEST_F(Buffering, ARouteCanTurnBufferingOff) {
  serveBodies();
  startProxy(1, "", "routes = ( { prefix = \"/\"; upstream = \"app\"; response_buffering = false; } );");
  expectStreamed("/big", big_);
}

TEST_F(Buffering, ATempPathThatIsNoWritableDirectoryIsAConfigError) {
  TempDir dir;
  const std::string config = "listen = ( { address = \"127.0.0.1:0\"; } );\n"
                             "upstreams = ( { name = \"app\"; servers = ( { address = \"127.0.0.1:5000\"; } ); } );\n"
                             "buffering = { temp_path = \"" + dir.path() + "/missing\"; };\n";
  const std::string path = dir.write("bad.conf", config);
  CommandResult r = runCommand({POOLGATE_BINARY, "-t", "-c", path});
  EXPECT_EQ(r.status.code(), 1) << r.status.describe();
  EXPECT_NE(r.err.find("bad.conf:3:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("buffering.temp_path"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace pgtest
