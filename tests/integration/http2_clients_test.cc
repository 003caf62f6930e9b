// HTTP/2 to clients, driven by nghttp2's own command-line clients (nghttp, h2load) and by a
// reconnecting Python h2 client, in front of the real demo upstream (tools/demo-upstream):
//   - nghttp over h2c prior knowledge and over TLS with ALPN h2: exact bodies, several
//     concurrent streams on one connection, request bodies (with and without a length);
//   - h2load: 2000 requests from 10 connections of 10 streams each through a pool smaller
//     than the load; /stats counts them and the pool stays within its bounds;
//   - worker recycling (max_requests_per_worker) under HTTP/2 load: no accepted stream lost;
//   - binary upgrade (SIGUSR2) while a connection holds streams in flight: they complete on
//     the old generation, new connections are served by the new master, nothing is lost.
// The tools come from Debian's nghttp2-client and python3-h2 (tools/install-deps); a missing
// one fails the test rather than skipping it.
//
// h2load (1.52) does not open a new connection after a GOAWAY: the requests it has not sent
// yet are reported failed, and across a worker recycle a few started streams are counted
// failed too (apparently the ones queued in its nghttp2 session when the GOAWAY came, which
// the session closes as refused), while the client below sees none lost over the same
// recycle. So h2load drives the tests without a GOAWAY, and the recycle and upgrade
// tests use the Python client below, which tells a refused stream
// (above the GOAWAY's last stream id, or REFUSED_STREAM: retried on a new connection, as
// RFC 9113 allows) from a lost one (accepted, then never completely answered).
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

// ---- the tools ------------------------------------------------------------------------------

const char* const kInstallHint = "run tools/install-deps (it installs nghttp2-client and python3-h2)";
const char* const kPython = "/usr/bin/python3";  // a python3 earlier in PATH (pyenv) lacks h2

bool commandWorks(const std::vector<std::string>& argv) {
  try {
    return runCommand(argv, 30s).status.code() == 0;
  } catch (const std::exception&) {
    return false;
  }
}

#define REQUIRE_NGHTTP2_CLIENTS()                                                                \
  do {                                                                                           \
    ASSERT_TRUE(commandWorks({"nghttp", "--version"})) << "nghttp is missing: " << kInstallHint; \
    ASSERT_TRUE(commandWorks({"h2load", "--version"})) << "h2load is missing: " << kInstallHint; \
  } while (0)

#define REQUIRE_PYTHON_H2_MODULE() \
  ASSERT_TRUE(commandWorks({kPython, "-c", "import h2"})) << kPython << " without the h2 module: " << kInstallHint

// The demo upstream's /size/N body: the alphabet, repeated, cut at N bytes.
std::string alphabetBody(size_t n) {
  static const std::string kAlphabet = "abcdefghijklmnopqrstuvwxyz";
  std::string body;
  body.reserve(n);
  while (body.size() < n) body += kAlphabet.substr(0, n - body.size());
  return body;
}

// The demo upstream's body_sum: the sum of the bytes, modulo 2^32.
uint32_t byteSum(std::string_view data) {
  uint32_t sum = 0;
  for (unsigned char c : data) sum += c;
  return sum;
}

// One entry of an nghttp HAR file (-r FILE).
struct HarEntry {
  std::string url;
  int status = 0;
  long long size = -1;  // response.content.size: the body bytes received
  std::string version;
};

std::vector<HarEntry> readHar(const std::string& path) {
  const std::string text = readFile(path);
  if (text.empty()) throw HarnessError("nghttp wrote no HAR file at " + path);
  std::vector<HarEntry> entries;
  const Json har = Json::parse(text);
  for (const Json& e : har.at("log").at("entries")) {
    const Json& response = e.at("response");
    entries.push_back({e.at("request").at("url").get<std::string>(), response.at("status").get<int>(),
                       response.at("content").value("size", -1LL), response.value("httpVersion", "")});
  }
  return entries;
}

// The "requests:" and "status codes:" lines of h2load's summary, as {word: number}, e.g.
// "requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored,
// 0 timeout" gives total, started, ..., timeout; "status codes: 2000 2xx, ..." gives 2xx...
struct H2loadSummary {
  std::map<std::string, uint64_t> requests;
  std::map<std::string, uint64_t> statuses;
  std::string protocol;  // "Application protocol: h2c"

  uint64_t count(const std::map<std::string, uint64_t>& line, const std::string& word) const {
    auto it = line.find(word);
    if (it == line.end()) throw HarnessError("h2load's summary has no \"" + word + "\" count");
    return it->second;
  }
  uint64_t requestsCount(const std::string& word) const { return count(requests, word); }
  uint64_t statusCount(const std::string& word) const { return count(statuses, word); }
};

H2loadSummary parseH2load(const std::string& output) {
  H2loadSummary summary;
  static const std::regex kPair(R"((\d+) ([0-9A-Za-z]+))");
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    std::map<std::string, uint64_t>* into = nullptr;
    if (line.rfind("requests:", 0) == 0) into = &summary.requests;
    if (line.rfind("status codes:", 0) == 0) into = &summary.statuses;
    if (line.rfind("Application protocol:", 0) == 0) {
      std::istringstream words(line.substr(line.find(':') + 1));
      words >> summary.protocol;
    }
    if (!into) continue;
    for (std::sregex_iterator it(line.begin(), line.end(), kPair), end; it != end; ++it)
      (*into)[(*it)[2].str()] = std::stoull((*it)[1].str());
  }
  if (summary.requests.empty() || summary.statuses.empty())
    throw HarnessError("no summary in h2load's output:\n" + output);
  return summary;
}

// ---- a reconnecting HTTP/2 client (Python h2) -----------------------------------------------

// Keeps `inflight` GETs of PATH?n=N open until `total` have been answered, or until the stop
// file exists (then lets the open ones finish). When the server sends a GOAWAY it opens no
// more streams on that connection, waits for the ones the GOAWAY accepted, and goes on over
// a new connection, as a browser would; streams the server did not accept (above the
// GOAWAY's last stream id, or reset with REFUSED_STREAM) are sent again. A stream the
// server accepted and did not answer completely (reset otherwise, connection closed first,
// fewer body bytes than its content-length) is lost.
// argv[1]: JSON {port, tls, path, total, inflight, stop_file, timeout}.
// Prints {"answered": N} now and then, and at the end one line {"done": true, answered,
// statuses, refused, lost: [...], connections: [{streams, goaway, goaway_error, reason}],
// error}.
constexpr const char* kReconnectingClient = R"PY(
import json, os, socket, ssl, sys, time
import h2.config, h2.connection, h2.errors, h2.events
from h2.connection import ConnectionInputs, ConnectionState, H2ConnectionStateMachine

# h2 4.1 closes its connection state on any GOAWAY and then rejects what the server still
# sends for the streams that GOAWAY accepted. Stay open: no stream is started after one.
H2ConnectionStateMachine._transitions[
    (ConnectionState.CLIENT_OPEN, ConnectionInputs.RECV_GOAWAY)] = (None, ConnectionState.CLIENT_OPEN)

args = json.loads(sys.argv[1])
deadline = time.monotonic() + args["timeout"]
report = {"done": True, "answered": 0, "statuses": {}, "refused": 0, "lost": [], "connections": [],
          "error": None}
todo = args["total"]
serial = 0

def say(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()

def stopping():
    return todo <= 0 or os.path.exists(args["stop_file"])

def lose(stream, why):
    report["lost"].append({"path": stream["path"], "sid": stream["sid"], "why": why})

def run_connection():
    global todo, serial
    sock = socket.create_connection(("127.0.0.1", args["port"]), timeout=10)
    if args["tls"]:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    record = {"streams": 0, "goaway": None, "reason": None}
    report["connections"].append(record)
    streams = {}
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("%d answered, %d streams open" % (report["answered"], len(streams)))
        while record["goaway"] is None and not stopping() and len(streams) < args["inflight"]:
            sid = conn.get_next_available_stream_id()
            path = "%s?n=%d" % (args["path"], serial)
            serial += 1
            todo -= 1
            conn.send_headers(sid, [(":method", "GET"), (":scheme", "https" if args["tls"] else "http"),
                                    (":authority", "127.0.0.1:%d" % args["port"]), (":path", path)],
                              end_stream=True)
            streams[sid] = {"sid": sid, "path": path, "status": None, "length": None, "received": 0}
            record["streams"] += 1
        pending = conn.data_to_send()
        if pending:
            sock.settimeout(10)
            try:
                sock.sendall(pending)
            except (ConnectionError, ssl.SSLError) as e:
                record["reason"] = "error: %s" % e  # the reading below sees the end
        if not streams and (record["goaway"] is not None or stopping()):
            record["reason"] = "goaway" if record["goaway"] is not None else "finished"
            sock.close()
            return
        sock.settimeout(0.2)
        try:
            data = sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        except (ConnectionError, ssl.SSLError) as e:
            data, record["reason"] = b"", "error: %s" % e
        if not data:
            record["reason"] = record["reason"] or "closed by the server"
            for s in streams.values():
                if record["goaway"] is not None and s["sid"] > record["goaway"]:
                    report["refused"] += 1
                    todo += 1
                else:
                    lose(s, "connection closed before the response ended (%s)" % record["reason"])
            sock.close()
            return
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                s = streams.get(ev.stream_id)
                if s is None:
                    continue
                fields = dict(ev.headers)
                s["status"] = fields[":status"]
                if "content-length" in fields:
                    s["length"] = int(fields["content-length"])
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if ev.stream_id in streams:
                    streams[ev.stream_id]["received"] += len(ev.data)
            elif isinstance(ev, h2.events.StreamEnded):
                s = streams.pop(ev.stream_id, None)
                if s is None:
                    continue
                if s["length"] is not None and s["received"] != s["length"]:
                    lose(s, "%d body bytes of %d" % (s["received"], s["length"]))
                    continue
                report["statuses"][s["status"]] = report["statuses"].get(s["status"], 0) + 1
                report["answered"] += 1
                if report["answered"] % 50 == 0:
                    say(answered=report["answered"])
            elif isinstance(ev, h2.events.StreamReset):
                s = streams.pop(ev.stream_id, None)
                if s is None:
                    continue
                if ev.error_code == h2.errors.ErrorCodes.REFUSED_STREAM:
                    report["refused"] += 1
                    todo += 1
                else:
                    lose(s, "reset %s" % ev.error_code)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                record["goaway"] = ev.last_stream_id
                record["goaway_error"] = int(ev.error_code)
                for sid in [sid for sid in streams if sid > ev.last_stream_id]:
                    streams.pop(sid)
                    report["refused"] += 1
                    todo += 1

try:
    while not stopping():
        run_connection()
except Exception as e:
    report["error"] = "%s: %s" % (type(e).__name__, e)
say(**report)
)PY";

// One run of kReconnectingClient, in the background.
class ReconnectingClient {
 public:
  struct Options {
    uint16_t port = 0;
    bool tls = false;
    std::string path = "/echo";
    size_t total = 1000;
    size_t inflight = 10;
    int timeoutSeconds = 60;
  };

  ReconnectingClient(const TempDir& dir, const Options& options) {
    static std::atomic<int> counter{0};
    const std::string n = std::to_string(++counter);
    stopFile_ = dir.file("stop." + n);
    const Json args = {{"port", options.port},   {"tls", options.tls},           {"path", options.path},
                       {"total", options.total}, {"inflight", options.inflight}, {"stop_file", stopFile_},
                       {"timeout", options.timeoutSeconds}};
    out_ = dir.file("client." + n + ".out");
    err_ = dir.file("client." + n + ".err");
    process_ = std::make_unique<Process>(
        std::vector<std::string>{kPython, dir.write("client." + n + ".py", kReconnectingClient), args.dump()}, out_,
        err_);
  }

  // The latest progress count printed.
  size_t answered() const {
    size_t n = 0;
    std::istringstream lines(readFile(out_));
    for (std::string line; std::getline(lines, line);) {
      try {
        n = std::max(n, Json::parse(line).at("answered").get<size_t>());
      } catch (const std::exception&) {  // a line being written
      }
    }
    return n;
  }
  bool waitAnswered(size_t n, Millis timeout) const {
    return waitUntil([&] { return answered() >= n; }, timeout);
  }
  void stop() const { std::ofstream(stopFile_).put('\n'); }

  // Waits for the end and returns the report line (throws without one).
  Json finish(Millis timeout = 90s) {
    if (!process_->wait(timeout)) {
      process_->killGroup();
      throw HarnessError("the h2 client did not finish; output:\n" + tailLines(readFile(out_), 5) + "\nstderr:\n" +
                         readFile(err_));
    }
    std::istringstream lines(readFile(out_));
    for (std::string line; std::getline(lines, line);) {
      if (line.find("\"done\"") == std::string::npos) continue;
      return Json::parse(line);
    }
    throw HarnessError("the h2 client ended without a report; stderr:\n" + readFile(err_));
  }

 private:
  std::string stopFile_, out_, err_;
  std::unique_ptr<Process> process_;
};

// What a report says went wrong, shortened for a message.
std::string brief(const Json& report) {
  std::string text = report.dump();
  return text.size() > 3000 ? text.substr(0, 3000) + "..." : text;
}

// Every stream the server accepted answered 200 (and `atLeast` of them).
void expectNothingLost(const Json& report, size_t atLeast) {
  EXPECT_TRUE(report.at("error").is_null()) << brief(report);
  EXPECT_TRUE(report.at("lost").empty()) << "accepted streams without a complete answer: " << brief(report);
  EXPECT_GE(report.at("answered").get<size_t>(), atLeast) << brief(report);
  for (const auto& [status, count] : report.at("statuses").items())
    EXPECT_EQ(status, "200") << count << " answers with status " << status << ": " << brief(report);
  for (const Json& c : report.at("connections"))
    EXPECT_EQ(c.value("goaway_error", 0), 0) << "a GOAWAY other than NO_ERROR: " << c;
}

// ---- poolgate in front of the demo upstream --------------------------------------------------

enum class Transport { kH2c, kTls };

std::string transportName(const ::testing::TestParamInfo<Transport>& info) {
  return info.param == Transport::kTls ? "Tls" : "H2c";
}


class Http2ClientsTest : public ::testing::TestWithParam<Transport> {
 protected:
  bool tls() const { return GetParam() == Transport::kTls; }

  // The demo upstream with `demoWorkers` (each serves one connection at a time: keep them
  // above what the pools may hold), and poolgate in front of it with an HTTP/2 listener.
  void start(int demoWorkers, int workers, std::string_view upstreamExtra = "", std::string_view topExtra = "") {
    demo_ = std::make_unique<DemoUpstream>(demoWorkers);
    std::string config = proxyConfig(demo_->address(), workers, upstreamExtra, topExtra);
    const std::string plain = "listen = ( { address = \"127.0.0.1:0\"; } );";
    std::string listener = "{ address = \"127.0.0.1:0\"; http2 = true; ";
    if (tls()) {
      // For localhost and 127.0.0.1: nghttp and h2load warn about it and go on; the
      // Python client does not verify.
      cert_ = std::make_unique<SelfSignedCertificate>("localhost", "DNS:localhost,IP:127.0.0.1");
      listener += "tls = { certificates = ( { cert = \"" + cert_->cert() + "\"; key = \"" + cert_->key() +
                  "\"; } ); }; ";
    }
    config.replace(config.find(plain), plain.size(), "listen = ( " + listener + "} );");
    proxy_ = std::make_unique<Poolgate>(config);
    proxy_->start();
  }

  Poolgate& proxy() { return *proxy_; }
  std::string url(const std::string& path) const {
    return std::string(tls() ? "https" : "http") + "://127.0.0.1:" + std::to_string(proxy_->proxyPort()) + path;
  }
  uint64_t total(const char* key) const { return proxy_->stats().at("totals").at(key).get<uint64_t>(); }

  // nghttp with `args`, to completion; fails the test unless it exits 0 having completed
  // every request (after its --timeout it says so, and still exits 0).
  std::string nghttp(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"nghttp", "--timeout=30"};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = runCommand(argv, 60s);
    EXPECT_EQ(r.status.code(), 0) << "nghttp " << r.status.describe() << "\n" << r.err << tailLines(r.out, 20);
    EXPECT_EQ((r.err + r.out).find("requests were not processed"), std::string::npos) << r.err;
    return r.out;
  }

  ReconnectingClient::Options clientOptions() const {
    ReconnectingClient::Options o;
    o.port = proxy_->proxyPort();
    o.tls = tls();
    return o;
  }

  TempDir files_;
  std::unique_ptr<DemoUpstream> demo_;
  std::unique_ptr<SelfSignedCertificate> cert_;
  std::unique_ptr<Poolgate> proxy_;  // after demo_: stopped first
};

// ---- nghttp ---------------------------------------------------------------------------------

using Http2ClientsNghttp = Http2ClientsTest;

TEST_P(Http2ClientsNghttp, FetchesExactBodies) {
  REQUIRE_NGHTTP2_CLIENTS();
  start(4, 1);
  for (size_t size : {0, 1, 16384, 100000, 1048576}) {
    const std::string body = nghttp({url("/size/" + std::to_string(size))});
    EXPECT_EQ(body.size(), size);
    EXPECT_TRUE(body == alphabetBody(size)) << "the " << size << "-byte body did not arrive intact";
  }
  EXPECT_EQ(nghttp({url("/chunked/70000")}), alphabetBody(70000)) << "a chunked upstream body";
  const std::string har = files_.file("status.har");
  nghttp({"-n", "-r", har, url("/status/404")});
  ASSERT_EQ(readHar(har).size(), 1u);
  EXPECT_EQ(readHar(har).at(0).status, 404);
  EXPECT_EQ(readHar(har).at(0).version, "HTTP/2.0");
  EXPECT_EQ(total("http2_streams_total"), 7u) << "not all over HTTP/2";
  EXPECT_EQ(total("requests"), 7u);
}

// Three URIs, each ten times (-m 10): 30 streams at once on one connection, each with its
// own answer; slow ones (/delay) make the worker take several upstream connections at once
// (at most 4: the demo upstream's 6 workers each serve one connection at a time, and a
// pooled idle connection keeps one busy).
TEST_P(Http2ClientsNghttp, ConcurrentStreamsOnOneConnection) {
  REQUIRE_NGHTTP2_CLIENTS();
  start(6, 1, "pool = { max_conns = 4; queue_timeout = 30.0; };");
  const std::string har = files_.file("concurrent.har");
  nghttp({"-n", "-m", "10", "-r", har, url("/delay/300"), url("/size/5000"), url("/echo/concurrent")});
  const std::vector<HarEntry> entries = readHar(har);
  ASSERT_EQ(entries.size(), 30u);
  std::map<std::string, size_t> perUrl;
  for (const HarEntry& e : entries) {
    ++perUrl[e.url];
    EXPECT_EQ(e.status, 200) << e.url;
    EXPECT_EQ(e.version, "HTTP/2.0") << e.url;
    if (e.url == url("/delay/300")) {
      EXPECT_EQ(e.size, 15) << "\"delayed 300 ms\\n\" expected";
    } else if (e.url == url("/size/5000")) {
      EXPECT_EQ(e.size, 5000);
    } else {
      EXPECT_GT(e.size, 0) << e.url;
    }
  }
  EXPECT_EQ(perUrl.size(), 3u);
  for (const auto& [u, n] : perUrl) EXPECT_EQ(n, 10u) << u;
  const Json s = proxy().stats();
  EXPECT_EQ(s.at("totals").at("accepted"), 1u) << "nghttp used one connection";
  EXPECT_EQ(s.at("totals").at("http2_streams_total"), 30u);
  EXPECT_EQ(s.at("totals").at("requests"), 30u);
  EXPECT_GE(s.at("totals").at("upstream_opened_total").get<uint64_t>(), 2u)
      << "ten 300 ms streams went over one upstream connection: they were not forwarded concurrently";
}

// nghttp -d FILE posts the file; the demo upstream's /echo reports the bytes it received.
TEST_P(Http2ClientsNghttp, UploadedBodyReachesTheUpstream) {
  REQUIRE_NGHTTP2_CLIENTS();
  start(4, 1);
  const std::string body = patternBody(300000, 7);
  const std::string file = files_.write("upload.bin", body);
  for (bool withLength : {true, false}) {
    SCOPED_TRACE(withLength ? "with content-length" : "without content-length");
    std::vector<std::string> args = {"-d", file, url("/echo/upload")};
    if (!withLength) args.insert(args.begin(), "--no-content-length");
    const std::string out = nghttp(args);
    Json echo;
    ASSERT_NO_THROW(echo = Json::parse(out)) << out;
    EXPECT_EQ(echo.at("method"), "POST");
    EXPECT_EQ(echo.at("target"), "/echo/upload");
    EXPECT_EQ(echo.at("version"), "HTTP/1.1") << "the upstream side stays HTTP/1.1";
    EXPECT_EQ(echo.at("body_bytes"), body.size());
    EXPECT_EQ(echo.at("body_sum").get<uint32_t>(), byteSum(body)) << "the body arrived altered";
  }
  // Small bodies too, and an empty one.
  for (size_t size : {1, 5000}) {
    const std::string small = patternBody(size, size);
    const Json echo = Json::parse(nghttp({"-d", files_.write("small.bin", small), url("/echo/small")}));
    EXPECT_EQ(echo.at("body_bytes"), size);
    EXPECT_EQ(echo.at("body_sum").get<uint32_t>(), byteSum(small));
  }
  const Json empty = Json::parse(nghttp({"-d", files_.write("empty.bin", ""), url("/echo/empty")}));
  EXPECT_EQ(empty.at("body_bytes"), 0);
}

INSTANTIATE_TEST_SUITE_P(Http2Clients, Http2ClientsNghttp, ::testing::Values(Transport::kH2c, Transport::kTls),
                         transportName);

// ---- h2load ----------------------------------------------------------------------------------

// Polls /stats and the kernel in the background, keeping the largest values seen.
class PeakSampler {
 public:
  PeakSampler(const Poolgate& proxy, uint16_t upstreamPort)
      : thread_([this, &proxy, upstreamPort] {
          while (!done_) {
            try {
              const Json totals = proxy.stats().at("totals");
              raise(upstreamOpen_, totals.at("upstream_open").get<uint64_t>());
              raise(streamsOpen_, totals.at("http2_streams_open").get<uint64_t>());
              raise(established_, countEstablished(upstreamPort));
            } catch (const std::exception&) {  // a /stats answer cut by the end of the test
            }
            std::this_thread::sleep_for(5ms);  // the sampling pace
          }
        }) {}
  ~PeakSampler() { stop(); }
  void stop() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t upstreamOpen() const { return upstreamOpen_; }
  uint64_t streamsOpen() const { return streamsOpen_; }
  uint64_t established() const { return established_; }

 private:
  static void raise(std::atomic<uint64_t>& peak, uint64_t value) {
    uint64_t seen = peak.load();
    while (value > seen && !peak.compare_exchange_weak(seen, value)) {
    }
  }
  std::atomic<bool> done_{false};
  std::atomic<uint64_t> upstreamOpen_{0}, streamsOpen_{0}, established_{0};
  std::thread thread_;
};

using Http2ClientsH2load = Http2ClientsTest;

// 2000 requests, 10 connections with 10 streams each (100 at once), 2 workers keeping at
// most 2 idle upstream connections each and 4 in all (max_conns): everything answered 200,
// the upstream got every request, and the upstream connections never exceed the pool.
TEST_P(Http2ClientsH2load, AllRequestsSucceedThroughASmallPool) {
  REQUIRE_NGHTTP2_CLIENTS();
  constexpr int kWorkers = 2, kMaxIdle = 2, kMaxConns = 4;
  start(kMaxConns + 2, kWorkers,
        "pool = { max_idle = " + std::to_string(kMaxIdle) + "; max_conns = " + std::to_string(kMaxConns) +
            "; queue_timeout = 30.0; };");
  PeakSampler peaks(proxy(), demo_->port());
  CommandResult r = runCommand({"h2load", "-n", "2000", "-c", "10", "-m", "10", url("/echo/load")}, 120s);
  peaks.stop();
  ASSERT_EQ(r.status.code(), 0) << "h2load " << r.status.describe() << "\n" << r.err << r.out;
  const H2loadSummary summary = parseH2load(r.out);
  EXPECT_EQ(summary.protocol, tls() ? "h2" : "h2c") << r.out;
  EXPECT_EQ(summary.requestsCount("total"), 2000u) << r.out;
  EXPECT_EQ(summary.requestsCount("succeeded"), 2000u) << r.out;
  EXPECT_EQ(summary.requestsCount("failed"), 0u) << r.out;
  EXPECT_EQ(summary.requestsCount("errored"), 0u) << r.out;
  EXPECT_EQ(summary.requestsCount("timeout"), 0u) << r.out;
  EXPECT_EQ(summary.statusCount("2xx"), 2000u) << r.out;

  const Json s = proxy().stats();
  EXPECT_EQ(s.at("totals").at("requests"), 2000u);
  EXPECT_EQ(s.at("totals").at("http2_streams_total"), 2000u);
  EXPECT_EQ(s.at("totals").at("accepted"), 10u);
  EXPECT_EQ(sumOverWorkers(s, "/upstreams/0/servers/0/requests_total"), 2000u) << "the upstream was not sent them all";
  EXPECT_LE(peaks.upstreamOpen(), static_cast<uint64_t>(kMaxConns));
  EXPECT_LE(peaks.upstreamOpen(), static_cast<uint64_t>(kWorkers * kMaxIdle));
  EXPECT_LE(peaks.established(), static_cast<uint64_t>(kMaxConns)) << "the kernel saw more upstream connections";
  EXPECT_LE(s.at("totals").at("upstream_open").get<uint64_t>(), static_cast<uint64_t>(kWorkers * kMaxIdle));
  EXPECT_GT(peaks.streamsOpen(), static_cast<uint64_t>(kMaxConns))
      << "never more streams open than upstream connections: the pool was not smaller than the load";
}

INSTANTIATE_TEST_SUITE_P(Http2Clients, Http2ClientsH2load, ::testing::Values(Transport::kH2c, Transport::kTls),
                         transportName);

// ---- worker recycling ----------------------------------------------------------------------

using Http2ClientsRecycle = Http2ClientsTest;

// Workers.RecycleUnderLoadLosesNoRequest over HTTP/2: a worker past max_requests_per_worker
// sends GOAWAY and finishes the streams it accepted; the client goes on over a new
// connection. Two clients keep 10 streams each in flight for 2000 answers over 2 workers
// that recycle every 200: every accepted stream is answered 200, and /stats lists new pids.
TEST_P(Http2ClientsRecycle, RecycleUnderLoadLosesNoStream) {
  REQUIRE_PYTHON_H2_MODULE();
  start(8, 2, "pool = { max_idle = 2; max_conns = 6; queue_timeout = 30.0; };",
        "max_requests_per_worker = 200; shutdown_timeout = 15.0;");
  const std::vector<pid_t> initial = proxy().runningWorkerPids();
  ReconnectingClient::Options options = clientOptions();
  options.total = 1000;
  options.path = "/echo/recycle";
  ReconnectingClient a(files_, options), b(files_, options);
  const Json first = a.finish(), second = b.finish();
  for (const Json* report : {&first, &second}) {
    expectNothingLost(*report, options.total);
    EXPECT_EQ(report->at("answered"), options.total) << brief(*report);
    EXPECT_GE(report->at("connections").size(), 2u) << "no GOAWAY reached this client: " << brief(*report);
  }
  std::set<pid_t> fresh;
  ASSERT_TRUE(waitUntil(
      [&] {
        for (pid_t pid : proxy().runningWorkerPids())
          if (std::count(initial.begin(), initial.end(), pid) == 0) fresh.insert(pid);
        return !fresh.empty();
      },
      10s))
      << "2000 streams over 2 workers recycling every 200: no new worker pid in /stats";
  EXPECT_TRUE(proxy().waitForRunningWorkers(2, 10s));
  const std::string log = proxy().log();
  EXPECT_NE(log.find("recycling"), std::string::npos) << proxy().logTail();
  // The new workers serve HTTP/2.
  options.total = 20;
  expectNothingLost(ReconnectingClient(files_, options).finish(), 20);
}

INSTANTIATE_TEST_SUITE_P(Http2Clients, Http2ClientsRecycle, ::testing::Values(Transport::kH2c, Transport::kTls),
                         transportName);

// ---- binary upgrade --------------------------------------------------------------------------

// Ends a process the test did not start itself (a new master) however the test ends.
class Reaper {
 public:
  ~Reaper() {
    if (pid_ <= 0 || processGone(pid_)) return;
    ::kill(pid_, SIGTERM);
    if (!waitUntil([&] { return processGone(pid_); }, 10s)) ::kill(pid_, SIGKILL);
  }
  void watch(pid_t pid) { pid_ = pid; }

 private:
  pid_t pid_ = 0;
};

using Http2ClientsUpgrade = Http2ClientsTest;

// Reload.BinaryUpgradeHandsOverListeners over HTTP/2. One nghttp connection holds four
// 6-second streams (/delay/6000) and a client keeps 4 streams in flight when SIGUSR2 starts
// a new master; the operator then retires the old one (SIGQUIT). The held streams complete
// on the connection the old generation accepted (with a GOAWAY if they were still unanswered
// at SIGQUIT), the old master exits 0, the client goes on over new connections without
// losing a stream, and new connections are served by the new master.
TEST_P(Http2ClientsUpgrade, BinaryUpgradeWithStreamsInFlight) {
  REQUIRE_NGHTTP2_CLIENTS();
  REQUIRE_PYTHON_H2_MODULE();
  // Two generations, each capped at 8 upstream connections: within the demo's 20 workers.
  start(20, 2, "pool = { max_idle = 2; max_conns = 8; queue_timeout = 30.0; };",
        "pid_file = \"${DIR}/poolgate.pid\"; shutdown_timeout = 20.0;");
  const std::string pidFile = proxy().dir().file("poolgate.pid");
  const pid_t oldMaster = proxy().pid();
  const std::vector<pid_t> oldWorkers = proxy().runningWorkerPids();

  const std::string heldHar = files_.file("held.har"), heldOut = files_.file("held.out");
  std::vector<std::string> argv = {"nghttp", "--timeout=60", "-n", "-v", "-r", heldHar};
  for (int i = 0; i < 4; ++i) argv.push_back(url("/delay/6000?held=" + std::to_string(i)));
  Process held(argv, heldOut, heldOut);
  ASSERT_TRUE(waitUntil([&] { return total("http2_streams_open") == 4; }, 10s))
      << "the four held streams did not open\n" << readFile(heldOut);

  ReconnectingClient::Options options = clientOptions();
  options.total = 1000000;  // until stopped
  options.inflight = 4;
  options.path = "/echo/upgrade";
  options.timeoutSeconds = 90;
  ReconnectingClient load(files_, options);
  ASSERT_TRUE(load.waitAnswered(50, 15s)) << "the load did not start";

  proxy().signal(SIGUSR2);
  Reaper reaper;
  pid_t newMaster = 0;
  ASSERT_TRUE(waitUntil(
      [&] {
        const std::string oldbin = readFile(pidFile + ".oldbin"), current = readFile(pidFile);
        if (oldbin.empty() || current.empty() || std::stoi(oldbin) != oldMaster) return false;
        newMaster = std::stoi(current);
        return newMaster != oldMaster;
      },
      10s))
      << "pid file not moved to .oldbin with a new master's pid\n" << proxy().logTail();
  reaper.watch(newMaster);
  ASSERT_TRUE(waitUntil([&] { return proxy().stats().at("master_pid").get<pid_t>() == newMaster; }, 10s))
      << "the new master's workers do not answer on the inherited admin port";

  // The operator retires the old master; it drains.
  const bool heldUnanswered = readFile(heldOut).find("First response header") == std::string::npos;
  proxy().signal(SIGQUIT);
  const std::optional<ExitStatus> old = proxy().waitExit(30s);
  ASSERT_TRUE(old.has_value()) << "old master still running 30 s after SIGQUIT";
  EXPECT_TRUE(old->exited() && old->code() == 0) << old->describe();

  const std::optional<ExitStatus> heldStatus = held.wait(30s);
  ASSERT_TRUE(heldStatus.has_value()) << "nghttp still waiting for the held streams\n" << readFile(heldOut);
  EXPECT_EQ(heldStatus->code(), 0) << heldStatus->describe() << "\n" << readFile(heldOut);
  const std::vector<HarEntry> entries = readHar(heldHar);
  EXPECT_EQ(entries.size(), 4u);
  for (const HarEntry& e : entries) {
    EXPECT_EQ(e.status, 200) << "held stream lost in the upgrade: " << e.url;
    EXPECT_EQ(e.size, 16) << "\"delayed 6000 ms\\n\" expected: " << e.url;
  }
  if (heldUnanswered) {
    const std::string frames = readFile(heldOut);
    EXPECT_NE(frames.find("recv GOAWAY frame"), std::string::npos) << "no GOAWAY from the old generation\n" << frames;
    EXPECT_NE(frames.find("error_code=NO_ERROR"), std::string::npos) << frames;
  }

  // The client goes on with the new generation alone.
  const size_t afterOld = load.answered();
  ASSERT_TRUE(load.waitAnswered(afterOld + 100, 20s)) << "no traffic after the old master left";
  load.stop();
  const Json report = load.finish();
  expectNothingLost(report, afterOld + 100);
  EXPECT_GE(report.at("connections").size(), 2u)
      << "the old generation never sent the client a GOAWAY: " << brief(report);

  // New connections: the new master's workers.
  const Json before = proxy().stats();
  EXPECT_EQ(before.at("master_pid").get<pid_t>(), newMaster);
  for (const Json& w : before.at("workers"))
    EXPECT_EQ(std::count(oldWorkers.begin(), oldWorkers.end(), w.at("pid").get<pid_t>()), 0)
        << "an old worker still listed: " << w.at("pid");
  const std::string har = files_.file("after.har");
  nghttp({"-n", "-m", "5", "-r", har, url("/echo/after-upgrade")});
  const std::vector<HarEntry> after = readHar(har);
  EXPECT_EQ(after.size(), 5u);
  for (const HarEntry& e : after) EXPECT_EQ(e.status, 200);
  const Json now = proxy().stats();
  EXPECT_EQ(now.at("master_pid").get<pid_t>(), newMaster);
  EXPECT_EQ(now.at("totals").at("http2_streams_total").get<uint64_t>() -
                before.at("totals").at("http2_streams_total").get<uint64_t>(),
            5u)
      << "the new master's workers did not serve the new connection";
  EXPECT_EQ(now.at("totals").at("accepted").get<uint64_t>() - before.at("totals").at("accepted").get<uint64_t>(), 1u);

  ::kill(newMaster, SIGTERM);
  EXPECT_TRUE(waitUntil([&] { return processGone(newMaster); }, 10s)) << "new master still running after SIGTERM";
}

INSTANTIATE_TEST_SUITE_P(Http2Clients, Http2ClientsUpgrade, ::testing::Values(Transport::kH2c, Transport::kTls),
                         transportName);

}  // namespace
}  // namespace pgtest
