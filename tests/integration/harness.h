// Black-box integration harness for poolgate.
//
// Everything here talks to the real binary over loopback on kernel-chosen ports:
//   - TempDir, Process, runCommand: files and child processes;
//   - Poolgate: writes a config, starts the binary, waits until it serves, reads /stats;
//   - HttpClient: a raw-socket HTTP/1.1 client (keep-alive, pipelining, every read bounded);
//   - TestUpstream: an in-process, scriptable, recording HTTP/1.1 upstream server;
//   - countEstablished(): the kernel's view of connections to a port (/proc/net/tcp*).
//
// Rules the harness keeps: no fixed ports, no sleeping to synchronise (waitUntil polls a
// condition with a deadline), and no call that can block without a bound.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace pgtest {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;
using Json = nlohmann::json;

inline constexpr Millis kIoTimeout = 10s;     // bound of any single read or write
inline constexpr Millis kStartTimeout = 10s;  // poolgate start-up, each phase

// Thrown on I/O failures, timeouts and protocol violations seen by the harness.
class HarnessError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------
// Waiting

// Evaluates `condition` every `interval` until it returns true or `timeout` has passed.
// Returns the last result. Exceptions thrown by `condition` count as "not yet".
bool waitUntil(const std::function<bool()>& condition, Millis timeout,
               Millis interval = 10ms);

double secondsSince(Clock::time_point start);

// ---------------------------------------------------------------------------------------
// Files

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const;
  // Writes `content` to path()/name and returns the full path.
  std::string write(std::string_view name, std::string_view content) const;

 private:
  std::string path_;
};

std::string readFile(const std::string& path);  // "" when missing
std::string tailLines(const std::string& text, size_t lines);

// ---------------------------------------------------------------------------------------
// Processes

struct ExitStatus {
  int raw = 0;
  bool exited() const;
  int code() const;     // exit code, -1 when killed by a signal
  int signal() const;   // terminating signal, 0 when exited
  std::string describe() const;
};

// How spawnGuarded() starts a child. stdin is always /dev/null.
struct SpawnOptions {
  std::string stdoutPath;  // created if missing; appended to unless `truncate`
  std::string stderrPath;  // the same path as stdoutPath: one open file for both
  bool truncate = false;
  mode_t mode = 0644;
  // {fd, as}: after stdio is set up, `fd` of the test process becomes `as` in the child
  // (dup2, so `as` is not close-on-exec; `fd` should differ from `as`).
  std::vector<std::pair<int, int>> dups;
};

// Starts `argv` (argv[0] looked up in PATH unless it has a '/') as the leader of a new
// process group, and makes the group die with the test process however that ends
// (ctest's timeout, Ctrl-C, kill -9), when no destructor of the harness runs:
//   - the child gets SIGKILL when the test process dies (PR_SET_PDEATHSIG; only when
//     spawned from the main thread: the signal follows the thread that forked);
//   - the group is registered with the harness's guard process, which SIGKILLs every
//     registered group still alive when the test process is gone (what the first
//     misses: a binary upgrade's new master, a browser's helpers).
// See "Children that die with the test process" in harness.cc. Throws HarnessError
// when the child cannot be started (the exec failed, say).
pid_t spawnGuarded(const std::vector<std::string>& argv, const SpawnOptions& options);

// The processes whose process group is `pgid`, zombies left out (from /proc).
std::vector<pid_t> processGroupMembers(pid_t pgid);

// A child process in its own process group (so that the workers a poolgate master forks
// can be cleaned up by group id if the master misbehaves), started by spawnGuarded():
// it dies with the test process. stdin is /dev/null.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::string& stdoutPath,
          const std::string& stderrPath);
  ~Process();  // SIGKILLs the group and reaps if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();                        // false once reaped
  void signal(int sig) const;            // to the process only
  std::optional<ExitStatus> wait(Millis timeout);
  // Whether any process of the group (e.g. a worker) is still alive.
  bool groupAlive() const;
  void killGroup();  // SIGKILL to the whole group, then reap the leader

 private:
  pid_t pid_ = -1;
  std::optional<ExitStatus> status_;
};

// Whether `pid` no longer runs (does not exist, or is a zombie).
bool processGone(pid_t pid);

struct CommandResult {
  ExitStatus status;
  std::string out;
  std::string err;
};
// Runs a command to completion (bounded), capturing stdout and stderr separately.
// argv[0] is looked up in PATH.
CommandResult runCommand(const std::vector<std::string>& argv, Millis timeout = 10s);

// ---------------------------------------------------------------------------------------
// HTTP basics

using Headers = std::vector<std::pair<std::string, std::string>>;

bool iequals(std::string_view a, std::string_view b);
std::string lower(std::string_view s);  // ASCII
std::optional<std::string> findHeader(const Headers& headers, std::string_view name);
size_t countHeader(const Headers& headers, std::string_view name);
// Comma-separated tokens of every `name` header, lower-cased and trimmed.
std::vector<std::string> headerTokens(const Headers& headers, std::string_view name);

enum class Framing { kNone, kContentLength, kChunked, kClose };
const char* toString(Framing framing);

// Deterministic pseudo-random bytes (xorshift), so that lost, duplicated or reordered
// pieces of a body change its checksum.
std::string patternBody(size_t size, uint64_t seed = 1);
// FNV-1a 64. Incremental: checksum(b, checksum(a)) == checksum(a + b), so that a body
// too large to keep can be checked piece by piece.
inline constexpr uint64_t kChecksumStart = 0xcbf29ce484222325ull;
uint64_t checksum(std::string_view data, uint64_t state = kChecksumStart);

// Serialises a request. Adds `Host: localhost` unless `headers` has a Host. With
// Framing::kContentLength / kChunked the body is framed accordingly; kNone sends no
// framing header (and `body` must be empty).
std::string serializeRequest(std::string_view method, std::string_view target,
                             const Headers& headers = {}, std::string_view body = {},
                             Framing framing = Framing::kNone,
                             std::string_view version = "HTTP/1.1");
std::string chunkedEncode(std::string_view body, size_t chunkSize);

// Buffered reads from a socket; every wait is bounded by `timeout`.
class SocketReader {
 public:
  // `tap`, when set, sees every byte received (for recording).
  using Tap = std::function<void(std::string_view)>;
  // Receives the pieces of a body, in order, as they are read.
  using Sink = std::function<void(std::string_view)>;
  SocketReader(int fd, Millis timeout, Tap tap = {})
      : fd_(fd), timeout_(timeout), tap_(std::move(tap)) {}

  // The head up to and without the blank line; nullopt on EOF before any byte.
  std::optional<std::string> readHead(size_t maxBytes = 1 << 20);
  std::string readLine();  // without CRLF
  std::string readExact(size_t n);
  void readExact(size_t n, const Sink& sink);
  std::string readChunked();  // decodes the chunked body and skips trailers
  void readChunked(const Sink& sink);
  std::string readToEof();
  // Waits for readability within `timeout`; false on timeout. Does not consume.
  bool waitReadable(Millis timeout);
  bool hasBuffered() const { return start_ < buf_.size(); }
  uint64_t bytesRead() const { return bytesRead_; }

 private:
  bool fill();  // one recv; false on EOF; throws on timeout or error
  int fd_;
  Millis timeout_;
  Tap tap_;
  std::string buf_;
  size_t start_ = 0;
  uint64_t bytesRead_ = 0;
};

struct StartLineAndHeaders {
  std::string startLine;
  Headers headers;
};
StartLineAndHeaders parseHead(const std::string& head);

// ---------------------------------------------------------------------------------------
// HTTP client

struct HttpResponse {
  std::string version;
  int status = 0;
  std::string reason;
  Headers headers;
  std::string body;
  Framing framing = Framing::kNone;

  std::optional<std::string> header(std::string_view name) const {
    return findHeader(headers, name);
  }
  bool has(std::string_view name) const { return header(name).has_value(); }
  // Whether `Connection` lists `close`.
  bool connectionClose() const;
  // The upstream connection id the TestUpstream stamped on the response (or -1).
  long long upstreamConnection() const;
  Json json() const { return Json::parse(body); }
};

class HttpClient {
 public:
  explicit HttpClient(uint16_t port, Millis ioTimeout = kIoTimeout);
  // To another loopback address, IPv4 ("127.0.0.2") or IPv6 ("::1"); `source`, when
  // set, is the local address to connect from ("127.0.0.2": another loopback client).
  HttpClient(const std::string& host, uint16_t port, Millis ioTimeout = kIoTimeout,
             const std::string& source = "");
  ~HttpClient();
  HttpClient(HttpClient&& other) noexcept;
  HttpClient& operator=(HttpClient&& other) noexcept;
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  void send(std::string_view bytes);  // throws if the peer closed or on timeout
  // Like send but returns false instead of throwing when the peer closed or reset.
  bool trySend(std::string_view bytes);
  // Reads one complete response, skipping 1xx interim responses other than 101 unless
  // `skipInterim` is false. `requestMethod` tells whether it answers a HEAD (no body).
  HttpResponse read(std::string_view requestMethod = "GET", bool skipInterim = true);
  std::string readRaw(size_t n);  // exactly n bytes (e.g. through a tunnel)

  HttpResponse get(std::string_view target, const Headers& headers = {});
  HttpResponse request(std::string_view method, std::string_view target,
                       const Headers& headers = {}, std::string_view body = {},
                       Framing framing = Framing::kNone);
  // True once the peer has closed (EOF or reset) within `timeout`. Discards bytes.
  bool waitClosed(Millis timeout = 5s);
  void shutdownWrite();
  uint16_t localPort() const;
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  Millis timeout_;
  std::unique_ptr<SocketReader> reader_;
};

// GET on a fresh connection with `Connection: close`.
HttpResponse httpGet(uint16_t port, std::string_view target, const Headers& headers = {});

// ---------------------------------------------------------------------------------------
// Kernel view and ports

// ESTABLISHED TCP connections (IPv4 and IPv6) whose remote port is `port`: the
// client-side sockets connected to a local server on that port, as `ss -tn` shows them.
size_t countEstablished(uint16_t port);
// The same, only those whose remote address is `ip` ("127.0.0.3", "::1"): the
// connections to one of several servers sharing a port on different loopback addresses.
size_t countEstablished(const std::string& ip, uint16_t port);

// A port bound on 127.0.0.1 but not listening: connecting to it is refused, and nobody
// else can take it while this object lives.
class ReservedPort {
 public:
  ReservedPort();
  ~ReservedPort();
  ReservedPort(const ReservedPort&) = delete;
  ReservedPort& operator=(const ReservedPort&) = delete;
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// ---------------------------------------------------------------------------------------
// Test upstream

// One request as the upstream received it.
struct UpstreamRequest {
  uint64_t connection = 0;         // id of the upstream-side connection (1, 2, ...)
  size_t indexOnConnection = 0;    // 0 for the first request on that connection
  std::string method;
  std::string target;
  std::string version;
  Headers headers;
  // Bodies over 64 KiB are counted and hashed as they arrive, and not kept (empty), so
  // that uploads of hundreds of MiB cost no memory.
  std::string body;
  size_t bodyLength = 0;
  uint64_t bodyChecksum = 0;
  bool chunked = false;

  std::optional<std::string> header(std::string_view name) const {
    return findHeader(headers, name);
  }
  std::string path() const;  // target without the query
};

class TestUpstream;

// The handler's view of the connection a request arrived on.
class UpstreamConnection {
 public:
  uint64_t id() const { return id_; }
  // A response framed with Content-Length (no body for HEAD, 1xx, 204, 304).
  // Adds X-Connection. A `Connection: close` header also closes after the response.
  void respond(int status, std::string_view body = {}, Headers headers = {});
  void respondChunked(int status, std::string_view body, Headers headers = {},
                      size_t chunkSize = 16 * 1024);
  // A response without length: the body ends when the connection closes.
  void respondCloseDelimited(int status, std::string_view body, Headers headers = {});
  void sendRaw(std::string_view bytes);  // exactly these bytes, nothing added
  std::string readRaw(size_t n);         // exactly n bytes (after a 101, say)
  void closeAfterResponse() { close_ = true; }
  // Closes (FIN) without sending anything for the current request.
  void closeWithoutResponse() { responded_ = close_ = true; }
  void reset();  // abortive close now (RST, SO_LINGER 0)
  // Waits `duration` unless the server stops first (then returns false).
  bool pause(Millis duration);
  bool responded() const { return responded_; }

 private:
  friend class TestUpstream;
  UpstreamConnection(TestUpstream& server, int fd, uint64_t id, SocketReader& reader)
      : server_(server), fd_(fd), id_(id), reader_(reader) {}
  std::string headWithExtras(int status, const Headers& headers,
                             std::optional<size_t> contentLength, bool chunked);
  TestUpstream& server_;
  int fd_;
  uint64_t id_;
  SocketReader& reader_;
  const UpstreamRequest* current_ = nullptr;
  bool close_ = false;
  bool reset_ = false;
  bool responded_ = false;
};

using UpstreamHandler = std::function<void(const UpstreamRequest&, UpstreamConnection&)>;

// An HTTP/1.1 server on 127.0.0.1:0, one thread per connection, scripted by a handler.
// Records every request and how each connection ended. It can bind another loopback
// address (all of 127/8 reaches lo on Linux; "::1" for IPv6) and a given port, so that
// two upstreams can share a port on different addresses (what one DNS name gives).
class TestUpstream {
 public:
  // The standard handler answers:
  //   /delay/MS   after MS milliseconds, the JSON below
  //   /size/N     N pattern bytes (seed N), Content-Length
  //   /chunked/N  N pattern bytes (seed N), chunked
  //   /close      the JSON below with Connection: close, then closes
  // Requests with `Expect: 100-continue` get `100 Continue` before their body is read.
  //   anything    200, JSON {method, target, conn, body_length, body_checksum, headers}
  static UpstreamHandler standardHandler();
  // The standard handler, except that /hold stays in flight (for at most 20 s)
  // until *release is set; *holding is set once a /hold request has arrived.
  static UpstreamHandler holdingHandler(std::shared_ptr<std::atomic<bool>> release,
                                        std::shared_ptr<std::atomic<bool>> holding);

  // Throws HarnessError when `bindAddress`:`port` cannot be bound (e.g. the port is taken).
  explicit TestUpstream(UpstreamHandler handler = standardHandler(),
                        std::string bindAddress = "127.0.0.1", uint16_t port = 0);
  ~TestUpstream();
  TestUpstream(const TestUpstream&) = delete;
  TestUpstream& operator=(const TestUpstream&) = delete;

  uint16_t port() const { return port_; }
  const std::string& bindAddress() const { return bindAddress_; }
  // "127.0.0.2:PORT", or "[::1]:PORT" for IPv6.
  std::string address() const {
    bool v6 = bindAddress_.find(':') != std::string::npos;
    return (v6 ? "[" + bindAddress_ + "]" : bindAddress_) + ":" + std::to_string(port_);
  }

  void setHandler(UpstreamHandler handler);
  // Close connections that stay idle (between requests) longer than this; 0 = never.
  void closeIdleAfter(Millis idle, bool withReset = false);
  // An app that answers before it reads the body: the handler runs (and the request is
  // recorded, with an empty body) as soon as the head has arrived; the body is read and
  // dropped after the handler returns, so rawReceived() still shows what came of it.
  void answerBeforeBody(bool on);

  std::vector<UpstreamRequest> requests() const;
  size_t requestCount() const;
  size_t connectionCount() const;    // accepted so far
  uint64_t bytesReceived() const;
  // Everything received, all connections in order of their ids (first 4 MiB of each).
  std::string rawReceived() const;
  std::vector<std::string> errors() const;  // handler exceptions, protocol errors
  bool waitForRequests(size_t n, Millis timeout = 5s) const;
  // True once the peer (poolgate) has closed connection `id` within `timeout`.
  bool waitClosedByPeer(uint64_t id, Millis timeout = 5s) const;

  void stop();

 private:
  friend class UpstreamConnection;
  struct ConnectionState {
    int fd = -1;
    bool open = true;
    bool closedByPeer = false;
    std::string raw;  // first 4 MiB received
  };
  void acceptLoop();
  void serve(int fd, uint64_t id);
  // Waits for the first byte of the next request; false on idle close or stop.
  bool awaitNextRequest(SocketReader& reader, UpstreamConnection& conn);
  // nullopt on a clean EOF before the request.
  std::optional<UpstreamRequest> readRequest(SocketReader& reader, int fd, uint64_t id,
                                             size_t index, bool withBody);
  void record(const UpstreamRequest& request);
  void recordError(const std::string& what);
  void finishConnection(uint64_t id, bool byPeer);
  bool stopping() const { return stopping_.load(); }

  std::string bindAddress_;
  int listenFd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptThread_;

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  UpstreamHandler handler_;
  Millis idleClose_{0};
  bool idleReset_ = false;
  bool answerBeforeBody_ = false;
  std::vector<UpstreamRequest> requests_;
  std::map<uint64_t, ConnectionState> connections_;
  std::vector<std::thread> threads_;
  std::vector<std::string> errors_;
  uint64_t nextId_ = 1;
  uint64_t bytesReceived_ = 0;
};

// ---------------------------------------------------------------------------------------
// The demo upstream (tools/demo-upstream, built as DEMO_UPSTREAM_BINARY): a real prefork
// HTTP/1.1 app server. Each of its `workers` serves one connection at a time, so a pool
// that may hold more connections than it has workers waits on its backlog.

class DemoUpstream {
 public:
  // Starts it on 127.0.0.1:0 and learns the port from its "listening on" line (bounded).
  explicit DemoUpstream(int workers);
  ~DemoUpstream();  // SIGTERM, then SIGKILL to the group if it lingers
  DemoUpstream(const DemoUpstream&) = delete;
  DemoUpstream& operator=(const DemoUpstream&) = delete;

  const std::string& address() const { return address_; }  // "127.0.0.1:PORT"
  uint16_t port() const { return port_; }

 private:
  TempDir dir_;
  std::unique_ptr<Process> process_;
  std::string address_;
  uint16_t port_ = 0;
};

// ---------------------------------------------------------------------------------------
// A self-signed certificate (EC P-256, valid two days), made with the openssl command
// line tool into `keyPath` and `certPath`: `commonName` is its subject's CN, `altNames`
// its subjectAltName ("DNS:localhost,IP:127.0.0.1"). Throws HarnessError on failure.
void makeSelfSignedCertificate(const std::string& commonName, const std::string& altNames,
                               const std::string& keyPath, const std::string& certPath);

// The same in a temporary directory of its own, for a test's TLS listener.
class SelfSignedCertificate {
 public:
  SelfSignedCertificate(const std::string& commonName, const std::string& altNames) {
    makeSelfSignedCertificate(commonName, altNames, key(), cert());
  }
  std::string cert() const { return dir_.file("site.crt"); }
  std::string key() const { return dir_.file("site.key"); }

 private:
  TempDir dir_;
};

// ---------------------------------------------------------------------------------------
// DNS: a real dnsmasq on loopback, and a minimal query client

// The answer to one DNS question over UDP.
struct DnsAnswer {
  int rcode = -1;                      // 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED
  std::vector<std::string> addresses;  // of the A or AAAA answers, textual, sorted
  uint32_t ttl = 0;                    // smallest TTL among those answers
};
// Asks 127.0.0.1:`port` for the A (or AAAA) records of `name`. Throws HarnessError when
// no answer arrives within `timeout` or the answer is malformed.
DnsAnswer dnsQuery(uint16_t port, const std::string& name, bool aaaa = false,
                   Millis timeout = 1s);

// `dnsmasq` (Debian package dnsmasq-base) in the foreground on 127.0.0.1:PORT (UDP and
// TCP, a free port picked at start), with no system configuration: it answers only the
// records given here, from an addn-hosts file, with TTL `ttlSeconds`; every other name
// gets NXDOMAIN. Records map a name to IPv4 and/or IPv6 addresses (A and AAAA records).
class Dnsmasq {
 public:
  using Records = std::map<std::string, std::vector<std::string>>;

  // Starts it and waits (bounded) until it answers. Throws HarnessError if dnsmasq is
  // not installed or does not start.
  explicit Dnsmasq(const Records& records = {}, int ttlSeconds = 1);
  ~Dnsmasq();  // kills it; prints its log tail if the test has failed
  Dnsmasq(const Dnsmasq&) = delete;
  Dnsmasq& operator=(const Dnsmasq&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const Records& records() const { return records_; }
  // Rewrites the hosts file, sends SIGHUP (dnsmasq re-reads it and clears its cache) and
  // waits (bounded) until queries answer exactly the new records, and NXDOMAIN for the
  // names dropped. Throws HarnessError otherwise.
  void setRecords(const Records& records);
  // Stops the server (SIGKILL, reaped): queries to its port go unanswered from then on.
  void stop();
  bool running() const { return process_ && process_->running(); }
  std::string log() const { return readFile(logPath_); }
  // The dnsmasq executable (PATH, then /usr/sbin, /sbin), "" when not installed.
  static std::string binary();

 private:
  void writeHosts(const Records& records) const;
  bool answers(const Records& want, const Records& gone) const;
  TempDir dir_;
  std::string hostsPath_;
  std::string logPath_;
  int ttl_;
  uint16_t port_ = 0;
  Records records_;
  std::unique_ptr<Process> process_;
};

// ---------------------------------------------------------------------------------------
// poolgate

// A config for one upstream `app` with one server. `upstreamExtra` goes inside the
// upstream group (e.g. "pool = { max_idle = 4; };"), `topExtra` at the top level.
std::string proxyConfig(const std::string& upstreamAddress, int workers = 1,
                        std::string_view upstreamExtra = "", std::string_view topExtra = "");

// Replaces every ${NAME} in `text` by vars[NAME]; throws on an unknown name.
std::string substitute(std::string text, const std::map<std::string, std::string>& vars);

class Poolgate {
 public:
  // `configTemplate` is libconfig text; ${NAME} placeholders come from `vars`, and ${DIR}
  // is this instance's temporary directory (for pid_file, log paths...).
  // `workers = N;` in it tells how many running workers start() waits for.
  explicit Poolgate(const std::string& configTemplate,
                    const std::map<std::string, std::string>& vars = {});
  ~Poolgate();  // SIGTERM if running; prints the log tail if the test has failed
  Poolgate(const Poolgate&) = delete;
  Poolgate& operator=(const Poolgate&) = delete;

  // Starts the binary and waits (bounded) until the listeners are logged, /health
  // answers 200 and /stats lists the expected workers as running. Throws otherwise.
  // `launcher`: a command that execs the rest of its arguments, put before the binary
  // (e.g. {"prlimit", "--nofile=128", "--"}); the pid stays the master's.
  void start(const std::vector<std::string>& launcher = {});
  // Starts the binary and waits (bounded) only until both listeners are logged: for
  // an admin listener that refuses the tests' clients (admin.allow), where start()
  // could not poll /health. A worker accepts what is sent from then on.
  void startListening(const std::vector<std::string>& launcher = {});

  uint16_t proxyPort() const { return proxyPort_; }
  uint16_t adminPort() const { return adminPort_; }
  pid_t pid() const { return process_ ? process_->pid() : -1; }
  size_t expectedWorkers() const { return expectedWorkers_; }
  const std::string& configPath() const { return configPath_; }
  const TempDir& dir() const { return dir_; }

  Json stats() const;                            // GET /stats, parsed
  HttpResponse admin(std::string_view path) const;
  std::vector<pid_t> runningWorkerPids() const;  // from /stats
  // Polls /stats until `n` workers run (and none is starting).
  bool waitForRunningWorkers(size_t n, Millis timeout = kStartTimeout) const;

  void signal(int sig) const;
  // Signals the master and waits for it to exit (bounded); also checks that no worker
  // outlives it (killing and reporting any). Returns the master's exit status.
  ExitStatus stop(int sig = SIGTERM, Millis timeout = 15s);
  std::optional<ExitStatus> waitExit(Millis timeout);
  bool running() const;

  std::string log() const { return readFile(logPath_); }
  std::string logTail(size_t lines = 60) const { return tailLines(log(), lines); }

 private:
  TempDir dir_;
  std::string configPath_;
  std::string logPath_;
  size_t expectedWorkers_ = 1;
  std::unique_ptr<Process> process_;
  uint16_t proxyPort_ = 0;
  uint16_t adminPort_ = 0;
};

// An error poolgate produced itself: `status`, text/plain, a short body.
void expectProxyError(const HttpResponse& r, int status);

// Sum of a numeric field over the workers of a /stats document, e.g. "/upstream/open".
uint64_t sumOverWorkers(const Json& stats, const std::string& pointer);

// The sum over the samples of one metric family (any labels), from Prometheus text.
// Adds a test failure when the family has no sample.
double metricSum(const std::string& text, const std::string& name);

// Runs `body(i)` for i in [0, n) on n threads; returns the messages of the exceptions.
std::vector<std::string> runConcurrently(size_t n, const std::function<void(size_t)>& body);

// ---------------------------------------------------------------------------------------
// Fixture

// One TestUpstream, one poolgate in front of it.
class ProxyTest : public ::testing::Test {
 protected:
  void TearDown() override;  // on failure, prints what the upstream received
  void startProxy(int workers = 1, std::string_view upstreamExtra = "",
                  std::string_view topExtra = "");
  void startProxyWithConfig(const std::string& configTemplate,
                            const std::map<std::string, std::string>& vars);
  HttpClient connect() const { return HttpClient(proxy_->proxyPort()); }
  // Sends a good request on a new connection as a barrier: once it has arrived, anything
  // poolgate forwarded earlier has arrived too. Then expects that it is the only request
  // the upstream saw and that `marker` never reached the upstream.
  void expectNothingForwardedBefore(std::string_view marker);
  Poolgate& proxy() { return *proxy_; }

  TestUpstream upstream_;
  std::unique_ptr<Poolgate> proxy_;  // declared after upstream_: stopped first
};

}  // namespace pgtest
