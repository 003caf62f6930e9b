// Exchange (proxy/exchange.h): its state transitions, driven through fakes of
// its surroundings. FakeOwner stands in for the client connection (it feeds a
// real RequestReader, "sends" what the exchange puts in `out` into a string,
// and settles at the end of the outermost dispatch as ClientConnection does);
// FakeHost stands in for the worker, with a real event loop and real upstream
// groups whose servers are listening sockets on 127.0.0.1 that the test
// accepts, reads and answers by hand. Every wait is a bounded runOnce() loop.
#include "proxy/exchange.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "proxy/client_host.h"

namespace poolgate {
namespace {

class FakeHost final : public ClientHost {
 public:
  FakeHost() : stats_(std::make_unique<WorkerSlot>()) {
    spool_limits_ = {64 * 1024, 0, "/tmp"};
    spool_budget_.cap = 1 << 20;
  }
  ~FakeHost() {
    // Pooled connections go while the loop and the buffers they use still exist.
    for (auto& group : groups_) group->closeIdle();
    loop_.runDeferred();
  }

  // A group of servers on 127.0.0.1 at `ports`; its storage lives here.
  UpstreamGroup& addGroup(const std::vector<uint16_t>& ports, PoolConfig pool = {}, uint32_t retries = 1) {
    UpstreamConfig& config = configs_.emplace_back();
    config.name = "app" + std::to_string(groups_.size());
    config.pool = pool;
    config.retries = retries;
    groups_.push_back(std::make_unique<UpstreamGroup>(config, loop_.timers()));
    for (uint16_t port : ports) {
      SocketAddress address;
      EXPECT_TRUE(makeSocketAddress("127.0.0.1", port, &address));
      ServerStorage storage;
      storage.counters = &counters_.emplace_back();
      storage.health = &health_.emplace_back();
      storage.pool.conns = &shared_.emplace_back(0);
      storage.pool.waiters = &shared_.emplace_back(0);
      groups_.back()->addServer("127.0.0.1:" + std::to_string(port), address, 1, storage);
    }
    return *groups_.back();
  }
  Config& settings() { return config_; }
  void routeTo(size_t group, bool request_buffering = true) {
    route_config_.upstream_index = group;
    route_config_.request_buffering = request_buffering;
    route_ = &route_config_;
  }

  EventLoop& loop() override { return loop_; }
  BufferPool& buffers() override { return buffers_; }
  HeaderStore& headerStore() override { return headers_; }
  const Config& config() const override { return config_; }
  WorkerSlot& stats() override { return *stats_; }
  UpstreamGroup& upstream(size_t index) override { return *groups_.at(index); }
  bool draining() const override { return false; }
  AccessLog* accessLog() override { return nullptr; }
  const SpoolLimits& spoolLimits() const override { return spool_limits_; }
  SpoolBudget& spoolBudget() override { return spool_budget_; }
  LogThrottle& bufferLog() override { return buffer_log_; }
  ExchangeCache& exchanges() override { return exchanges_; }
  RequestReaderCache& readers() override { return readers_; }
  const RouteConfig* route(std::string_view, std::string_view) const override { return route_; }
  AdminAnswer answerAdmin(std::string_view) override { return {}; }
  void onClientOpened(ClientConnection&) override { ++clients_opened; }
  void onClientClosed(ClientConnection&) override { ++clients_closed; }
  void onRequestDone() override { ++requests_done; }

  int requests_done = 0;
  int clients_opened = 0;
  int clients_closed = 0;

 private:
  // Destroyed bottom-up: groups first, the loop after the exchanges' timers,
  // the buffers after the loop's deferred deletions.
  HeaderStore headers_;
  BufferPool buffers_;
  EventLoop loop_;
  Config config_;
  std::unique_ptr<WorkerSlot> stats_;
  SpoolLimits spool_limits_;
  SpoolBudget spool_budget_;
  LogThrottle buffer_log_{loop_.timers(), LogLevel::kError, "response buffering", "failures"};
  ExchangeCache exchanges_{buffers_};
  RequestReaderCache readers_{buffers_, config_.limits, &headers_};
  std::deque<ServerCounters> counters_;
  std::deque<SharedHealth> health_;
  std::deque<std::atomic<int32_t>> shared_;
  std::deque<UpstreamConfig> configs_;
  std::vector<std::unique_ptr<UpstreamGroup>> groups_;
  RouteConfig route_config_;
  const RouteConfig* route_ = nullptr;
};

// One client connection, from the first byte of a request (state kHead).
class FakeOwner final : public ExchangeOwner {
 public:
  explicit FakeOwner(FakeHost& host, bool admin = false)
      : reader_(host.buffers(), host.config().limits, &host.headerStore()), admin_(admin), ex(host.exchanges().take()) {
    SocketAddress peer;
    EXPECT_TRUE(makeSocketAddress("192.0.2.7", 40000, &peer));
    ex->attach(*this, host, IpAddress::of(peer), /*tls=*/false, admin);
  }
  ~FakeOwner() { closeClient(); }  // as ClientConnection::close(): nothing may stay queued or held

  // Request bytes arrive: the reader takes them and the exchange hears its events.
  void feed(std::string_view bytes) {
    while (!bytes.empty()) {
      const ReadRoom room = reader_.reserve();
      ASSERT_GT(room.size, 0u);
      const size_t n = std::min(room.size, bytes.size());
      std::memcpy(room.at, bytes.data(), n);
      reader_.commit(n);
      bytes.remove_prefix(n);
    }
    resume();
  }
  void resume() {
    DispatchScope scope(*this);
    parse();
  }

  ClientState clientState() const override { return state_; }
  void setClientState(ClientState state) override {
    state_ = state;
    states.push_back(state);
  }
  RequestReader& reader() override { return reader_; }
  void flushClient() override {
    ++flushes;
    if (ex->response_held) {  // as ClientConnection: a held response waits for the request's end
      if (!ex->request_complete && ex->out.size() < Exchange::kHighWatermark) return;
      ex->response_held = false;
    }
    sent.append(ex->out.data(), ex->out.size());
    ex->out.consume(ex->out.size());
    ex->releaseHold();
    if (ex->response_complete && (state_ == ClientState::kExchange || state_ == ClientState::kClosing)) {
      finish_pending_ = true;
      if (depth_ == 0) settle();
    }
  }
  void closeClient() override {
    if (state_ == ClientState::kClosed) return;
    ++closes;
    state_ = ClientState::kClosed;
    ex->logClosed(nullptr, 0);
    ex->abandonUpstream(NoReuse::kClientGone);
    ex->leaveQueue();
    ex->endSpools();
  }
  void armClientTimer() override { ++timer_arms; }
  void resumeReading() override { ++resumes; }
  void startTunnel(const HttpParser&, const char*) override {  // (the 101's head is not copied)
    ++tunnels;
    state_ = ClientState::kTunnel;
  }
  void relayTunnel() override {}
  void enterDispatch() override { ++depth_; }
  void leaveDispatch() override {
    if (--depth_ == 0) settle();
  }

  bool pause_after_head = false;  // stop parsing right after the head (before a bodyless request's end)
  std::vector<ClientState> states;  // what the exchange set
  std::string sent;                 // what reached the client socket
  int flushes = 0, closes = 0, timer_arms = 0, resumes = 0, tunnels = 0;
  int finished = 0;  // complete responses settled at the end of a dispatch

 private:
  void parse() {  // as ClientConnection::parseClient()
    while (state_ == ClientState::kHead || (state_ == ClientState::kExchange && !ex->request_complete)) {
      if (!reader_.hasWork()) return;
      const RequestReader::Event event = reader_.next();
      if (event != RequestReader::Event::kHead) {
        if (!ex->onRequestEvent(event)) return;
        continue;
      }
      state_ = ClientState::kExchange;  // the owner's own move: not in `states`
      ex->beginRequest(reader_, false);
      if (!admin_) ex->start();  // an admin request is answered by the test
      if (pause_after_head) return;
    }
  }
  void settle() {
    if (finish_pending_) ++finished;
    finish_pending_ = false;
  }

  RequestReader reader_;
  bool admin_;
  ClientState state_ = ClientState::kHead;
  int depth_ = 0;
  bool finish_pending_ = false;

 public:
  ExchangeCache::Ptr ex;  // last: back to the cache before the reader goes
};

// ---- The test's side of an upstream server: raw, non-blocking syscalls -------

// A socket bound to 127.0.0.1 on an ephemeral port; `port` says which.
Fd bindLoopback(int type, uint16_t* port) {
  Fd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof a;
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &length), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

struct TestServer {
  TestServer() : listener(bindLoopback(SOCK_STREAM | SOCK_NONBLOCK, &port)) {
    EXPECT_EQ(::listen(listener.get(), 16), 0);
  }
  Fd tryAccept() { return Fd(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)); }
  uint16_t port = 0;
  Fd listener;
};

// A loopback port with nothing listening: bound, noted, closed.
uint16_t deadPort() {
  uint16_t port = 0;
  bindLoopback(SOCK_STREAM, &port);
  return port;
}

// What has arrived on `fd`, appended to `got`.
void drain(int fd, std::string& got) {
  char chunk[4096];
  ssize_t n;
  while ((n = ::recv(fd, chunk, sizeof chunk, 0)) > 0) got.append(chunk, static_cast<size_t>(n));
}

void sendText(int fd, std::string_view text) {
  ASSERT_EQ(::send(fd, text.data(), text.size(), MSG_NOSIGNAL), static_cast<ssize_t>(text.size()));
}

constexpr std::string_view kGet = "GET /a HTTP/1.1\r\nHost: app\r\n\r\n";
constexpr std::string_view kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";

class ExchangeFlow : public ::testing::Test {
 protected:
  // Runs the loop until `done` holds, at most 300 rounds of 10 ms. (`done`
  // is asked once per round: it may take something, an accepted socket.)
  template <class Done>
  bool runUntil(Done done) {
    for (int i = 0; i < 300; ++i) {
      if (done()) return true;
      host.loop().runOnce(10);
    }
    return false;
  }
  // One server under max_conns = 1, routed to.
  UpstreamGroup& cappedGroup(TestServer& server, double queue_timeout) {
    PoolConfig pool_config;
    pool_config.max_conns = 1;
    pool_config.queue_timeout = queue_timeout;
    UpstreamGroup& group = host.addGroup({server.port}, pool_config);
    host.routeTo(0);
    return group;
  }
  Fd acceptFrom(TestServer& server) {
    Fd conn;
    runUntil([&] { return static_cast<bool>(conn = server.tryAccept()); });
    return conn;
  }
  // Accepts a connection and reads from it until `marker` has arrived
  // (an invalid Fd if either did not happen).
  Fd acceptRequest(TestServer& server, std::string& got, std::string_view marker = "\r\n\r\n") {
    Fd conn = acceptFrom(server);
    if (conn && !readUntil(conn.get(), got, marker)) conn.reset();
    return conn;
  }
  // Reads from `fd` until `marker` has arrived.
  bool readUntil(int fd, std::string& got, std::string_view marker) {
    return runUntil([&] {
      drain(fd, got);
      return got.find(marker) != std::string::npos;
    });
  }
  static bool has(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

  FakeHost host;
};

// ---- Answers made here ---------------------------------------------------------------

TEST_F(ExchangeFlow, NoRouteAnswers404OnlyOnceTheRequestHasEnded) {
  FakeOwner owner(host);
  owner.pause_after_head = true;
  owner.feed(kGet);
  EXPECT_EQ(owner.ex->record.status, 404);
  EXPECT_TRUE(owner.ex->response_complete) << "the answer is made at once";
  EXPECT_EQ(owner.flushes, 0) << "keep-alive: the rest of the request must be read before answering";
  EXPECT_TRUE(owner.sent.empty());

  owner.resume();  // kComplete: onRequestComplete()
  EXPECT_EQ(owner.sent.rfind("HTTP/1.1 404 ", 0), 0u) << owner.sent;
  EXPECT_FALSE(has(owner.sent, "Connection: close")) << owner.sent;
  EXPECT_FALSE(has(owner.sent, "X-Frame-Options")) << "not an admin answer: " << owner.sent;
  EXPECT_EQ(owner.finished, 1);
  EXPECT_EQ(host.requests_done, 1) << "counted once, when the answer was made";
  EXPECT_EQ(owner.clientState(), ClientState::kExchange) << "kept alive: the owner goes idle after finishing";
  EXPECT_TRUE(owner.states.empty());
}

TEST_F(ExchangeFlow, AnErrorBeforeAHeadMovesTheClientToExchangeThenClosing) {
  FakeOwner owner(host);  // a head in progress (the client timer ran out)
  owner.ex->respondError(408, true);
  EXPECT_EQ(owner.states, (std::vector<ClientState>{ClientState::kExchange, ClientState::kClosing}));
  EXPECT_EQ(owner.sent.rfind("HTTP/1.1 408 ", 0), 0u) << owner.sent;
  EXPECT_TRUE(has(owner.sent, "Connection: close\r\n")) << owner.sent;
  EXPECT_EQ(owner.finished, 1) << "flushed outside any dispatch: settled at once";
  EXPECT_EQ(host.requests_done, 1);
}

TEST_F(ExchangeFlow, AdminAnswersCountInNoRequestsAndErrorsCarryTheAdminHeaders) {
  FakeOwner owner(host, /*admin=*/true);
  owner.pause_after_head = true;
  owner.feed("GET /stats HTTP/1.1\r\nHost: admin\r\n\r\n");
  owner.ex->respond(200, "application/json", "{}", false, kAdminHeaders);
  EXPECT_TRUE(owner.sent.empty()) << "waits for the request's end";
  owner.resume();
  EXPECT_EQ(owner.sent.rfind("HTTP/1.1 200 ", 0), 0u) << owner.sent;
  EXPECT_TRUE(owner.sent.ends_with("\r\n\r\n{}")) << owner.sent;
  EXPECT_EQ(owner.finished, 1);
  EXPECT_EQ(host.requests_done, 0) << "admin answers are not proxied requests";

  FakeOwner denied(host, /*admin=*/true);
  denied.ex->respondError(403, true);
  EXPECT_TRUE(has(denied.sent, "HTTP/1.1 403 ")) << denied.sent;
  EXPECT_TRUE(has(denied.sent, "X-Frame-Options: DENY\r\n")) << denied.sent;
  EXPECT_TRUE(has(denied.sent, "X-Content-Type-Options: nosniff\r\n")) << denied.sent;
  EXPECT_EQ(host.requests_done, 0);
}

// ---- Forwarding ------------------------------------------------------------------------

TEST_F(ExchangeFlow, ForwardsRelaysAndPoolsTheConnectionForTheNextExchange) {
  TestServer server;
  UpstreamGroup& group = host.addGroup({server.port});
  host.routeTo(0);
  Pool& pool = group.server(0).pool();
  Fd conn;
  std::string got;
  {
    FakeOwner first(host);
    first.feed(kGet);
    ASSERT_NE(first.ex->upstream, nullptr) << "a new connection is being opened";
    conn = acceptRequest(server, got);
    ASSERT_TRUE(conn) << got;
    EXPECT_EQ(got.rfind("GET /a HTTP/1.1\r\n", 0), 0u) << got;
    EXPECT_TRUE(has(got, "X-Forwarded-For: 192.0.2.7\r\n")) << got;
    EXPECT_TRUE(has(got, "Via: 1.1 poolgate\r\n")) << got;
    sendText(conn.get(), kOk);
    ASSERT_TRUE(runUntil([&] { return first.finished == 1; })) << first.sent;
    EXPECT_EQ(first.sent.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << first.sent;
    EXPECT_TRUE(first.sent.ends_with("\r\n\r\nhi")) << first.sent;
    EXPECT_EQ(first.ex->upstream, nullptr) << "given back";
    EXPECT_EQ(pool.idleCount(), 1u);
    EXPECT_FALSE(first.ex->record.upstream_reused);
    EXPECT_EQ(host.requests_done, 1);
  }  // the exchange goes back to the cache

  FakeOwner second(host);
  got.clear();
  second.feed(kGet);
  EXPECT_EQ(pool.idleCount(), 0u) << "taken out of the pool";
  EXPECT_TRUE(second.ex->record.upstream_reused);
  ASSERT_TRUE(readUntil(conn.get(), got, "\r\n\r\n")) << "the request comes on the pooled connection";
  EXPECT_FALSE(server.tryAccept()) << "no new connection was opened";
  sendText(conn.get(), kOk);
  ASSERT_TRUE(runUntil([&] { return second.finished == 1; })) << second.sent;
  EXPECT_TRUE(second.sent.ends_with("hi")) << second.sent;
  EXPECT_EQ(pool.idleCount(), 1u);
}

TEST_F(ExchangeFlow, AConnectFailureMovesOnToTheNextServer) {
  TestServer live;
  UpstreamGroup& group = host.addGroup({deadPort(), live.port}, {}, /*retries=*/1);
  host.routeTo(0);
  FakeOwner owner(host);
  owner.feed(kGet);
  std::string got;
  Fd conn = acceptRequest(live, got);
  ASSERT_TRUE(conn) << "the request reached the second server";
  EXPECT_EQ(got.rfind("GET /a HTTP/1.1\r\n", 0), 0u) << got;
  sendText(conn.get(), kOk);
  ASSERT_TRUE(runUntil([&] { return owner.finished == 1; }));
  EXPECT_TRUE(owner.sent.ends_with("hi")) << owner.sent;
  EXPECT_EQ(owner.ex->attempts, 1u);
  EXPECT_EQ(ServerCounters::get(group.server(0).counters().retries_total), 1u) << "the dead server's failure";
  EXPECT_EQ(ServerCounters::get(group.server(1).counters().retries_total), 0u);
  EXPECT_FALSE(group.server(0).available(host.loop().now())) << "max_fails = 1: marked down";
}

// ---- max_conns ---------------------------------------------------------------------------

TEST_F(ExchangeFlow, AQueuedExchangeTakesTheConnectionTheFirstOneGivesBack) {
  TestServer server;
  UpstreamGroup& group = cappedGroup(server, 5.0);
  FakeOwner a(host);
  a.feed(kGet);
  std::string got;
  Fd conn = acceptRequest(server, got);
  ASSERT_TRUE(conn) << got;

  FakeOwner b(host);
  b.feed("GET /b HTTP/1.1\r\nHost: app\r\n\r\n");
  EXPECT_EQ(b.ex->queued_server, 0) << "at max_conns: queued";
  EXPECT_EQ(b.ex->upstream, nullptr);
  EXPECT_TRUE(has(std::string(b.ex->held.data(), b.ex->held.size()), "GET /b HTTP/1.1\r\n")) << "waits in held";
  EXPECT_EQ(ServerCounters::get(group.server(0).counters().queued), 1u);
  for (int i = 0; i < 5; ++i) host.loop().runOnce(10);
  got.clear();
  drain(conn.get(), got);
  EXPECT_TRUE(got.empty()) << "nothing of B reached the server: " << got;
  EXPECT_FALSE(server.tryAccept()) << "no second connection under max_conns = 1";
  EXPECT_EQ(b.timer_arms, 0) << "queued: the queue_timeout runs, not the client's timer";

  sendText(conn.get(), kOk);
  ASSERT_TRUE(runUntil([&] { return a.finished == 1; }));
  ASSERT_TRUE(readUntil(conn.get(), got, "\r\n\r\n")) << "B's request follows on the same socket";
  EXPECT_EQ(got.rfind("GET /b HTTP/1.1\r\n", 0), 0u) << got;
  EXPECT_EQ(b.ex->queued_server, -1);
  EXPECT_TRUE(b.ex->record.upstream_reused);
  EXPECT_TRUE(b.ex->held.empty());
  EXPECT_GE(b.timer_arms, 1) << "its request was complete: the client timer is armed again";
  sendText(conn.get(), kOk);
  ASSERT_TRUE(runUntil([&] { return b.finished == 1; }));
  EXPECT_TRUE(b.sent.ends_with("hi")) << b.sent;
  EXPECT_EQ(ServerCounters::get(group.server(0).counters().queued), 0u);
}

TEST_F(ExchangeFlow, AQueuedExchangeGets503WhenItsQueueTimeoutFires) {
  TestServer server;
  UpstreamGroup& group = cappedGroup(server, 0.05);
  FakeOwner a(host);
  a.feed(kGet);  // holds the only connection; never answered
  FakeOwner b(host);
  b.feed(kGet);
  ASSERT_EQ(b.ex->queued_server, 0);
  ASSERT_TRUE(runUntil([&] { return b.finished == 1; })) << "the queue_timeout timer fires";
  EXPECT_EQ(b.sent.rfind("HTTP/1.1 503 ", 0), 0u) << b.sent;
  EXPECT_STREQ(b.ex->record.error, "queue_timeout");
  EXPECT_EQ(b.ex->queued_server, -1);
  EXPECT_EQ(ServerCounters::get(group.server(0).counters().queued), 0u);
  EXPECT_EQ(ServerCounters::get(group.server(0).counters().queue_timeouts_total), 1u);
  EXPECT_NE(a.ex->upstream, nullptr) << "A keeps its connection";
  EXPECT_EQ(a.finished, 0);
}

// ---- Upstream failures ---------------------------------------------------------------------

TEST_F(ExchangeFlow, AFreshConnectionClosedBeforeTheResponseGives502) {
  TestServer server;
  UpstreamGroup& group = host.addGroup({server.port});
  host.routeTo(0);
  FakeOwner owner(host);
  owner.feed("POST /p HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\n\r\nabc");
  Fd conn = acceptFrom(server);
  ASSERT_TRUE(conn);
  conn.reset();  // closed at once
  ASSERT_TRUE(runUntil([&] { return owner.finished == 1; })) << owner.sent;
  EXPECT_EQ(owner.sent.rfind("HTTP/1.1 502 ", 0), 0u) << owner.sent;
  const std::string error = owner.ex->record.error != nullptr ? owner.ex->record.error : "";
  EXPECT_TRUE(error == "closed_early" || error == "send_failed") << error;
  EXPECT_EQ(owner.ex->upstream, nullptr);
  EXPECT_FALSE(owner.ex->stale_retried) << "a fresh connection is no keep-alive race";
  EXPECT_FALSE(server.tryAccept()) << "not retried: a POST whose connection failed after it was sent";
  ServerCounters& counters = group.server(0).counters();
  EXPECT_EQ(ServerCounters::get(counters.active) + ServerCounters::get(counters.idle), 0u) << "the connection is gone";
}

TEST_F(ExchangeFlow, APooledConnectionTheServerClosedIsRetriedOnceOnAFreshOne) {
  TestServer server;
  UpstreamGroup& group = host.addGroup({server.port});
  host.routeTo(0);
  {
    FakeOwner first(host);
    first.feed(kGet);
    std::string got;
    Fd conn = acceptRequest(server, got);
    ASSERT_TRUE(conn) << got;
    sendText(conn.get(), kOk);
    ASSERT_TRUE(runUntil([&] { return first.finished == 1; }));
    ASSERT_EQ(group.server(0).pool().idleCount(), 1u);
  }  // the server closes its side; the loop does not run before the next request takes the connection
  FakeOwner second(host);
  second.feed(kGet);
  ASSERT_TRUE(second.ex->record.upstream_reused);
  std::string got;
  Fd fresh = acceptRequest(server, got);
  ASSERT_TRUE(fresh) << "retried on a new connection";
  sendText(fresh.get(), kOk);
  ASSERT_TRUE(runUntil([&] { return second.finished == 1; })) << second.sent;
  EXPECT_EQ(second.sent.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << second.sent;
  EXPECT_TRUE(second.ex->stale_retried);
  EXPECT_FALSE(second.ex->record.upstream_reused);
  EXPECT_EQ(ServerCounters::get(group.server(0).counters().retries_total), 1u);
  EXPECT_TRUE(group.server(0).available(host.loop().now())) << "a stale connection is not a server failure";
}

// Once the connection is a tunnel, an upstream error (its read timeout on an
// idle tunnel, a reset) ends it: the client is closed after what the upstream
// sent, and the exchange lets go of the connection fail() has closed. (It was
// dropped once: the client stayed open for ever, and its next byte reached
// the freed upstream connection through the tunnel's relay.)
TEST_F(ExchangeFlow, AnUpstreamErrorInATunnelClosesTheClient) {
  TestServer server;
  host.settings().timeouts.upstream_read = 0.05;
  host.addGroup({server.port});
  host.routeTo(0);
  FakeOwner owner(host);
  owner.feed("GET /ws HTTP/1.1\r\nHost: app\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
  std::string got;
  Fd conn = acceptRequest(server, got);
  ASSERT_TRUE(conn) << got;
  sendText(conn.get(), "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return owner.tunnels == 1; }));
  // Idle: the upstream's read timeout fails the connection.
  const bool ended = runUntil([&] { return owner.closes > 0 || owner.clientState() == ClientState::kClosing; });
  ASSERT_EQ(owner.ex->upstream, nullptr) << "the exchange still points at the closed upstream connection";
  char byte;
  EXPECT_EQ(::recv(conn.get(), &byte, 1, 0), 0) << "the read timeout closed the upstream side";
  EXPECT_TRUE(ended) << "the client of a failed tunnel stays open";
  EXPECT_STREQ(owner.ex->record.error, "read_timeout");
}

// ---- Request bodies -----------------------------------------------------------------------

TEST_F(ExchangeFlow, AnExpectationIsAnsweredHereAndNeverReachesTheUpstream) {
  TestServer server;
  host.addGroup({server.port});
  host.routeTo(0);  // request buffering: the body is collected first
  FakeOwner owner(host);
  owner.feed("POST /u HTTP/1.1\r\nHost: app\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
  EXPECT_EQ(owner.sent, "HTTP/1.1 100 Continue\r\n\r\n");
  EXPECT_EQ(owner.ex->body_path, BodyPath::kCollect);
  EXPECT_EQ(owner.ex->upstream, nullptr) << "no connection before the body is whole";
  owner.feed("abc");
  std::string got;
  Fd conn = acceptRequest(server, got, "\r\n\r\nabc");
  ASSERT_TRUE(conn) << got;
  EXPECT_FALSE(has(got, "Expect")) << got;
  EXPECT_TRUE(has(got, "Content-Length: 3\r\n")) << got;
  sendText(conn.get(), "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return owner.finished == 1; })) << owner.sent;
  EXPECT_EQ(owner.sent.find("HTTP/1.1 201 Created\r\n"), std::string("HTTP/1.1 100 Continue\r\n\r\n").size())
      << owner.sent;
}

TEST_F(ExchangeFlow, AnEarlyAnswerToAChunkedBodyWaitsForTheBodysEnd) {
  TestServer server;
  host.addGroup({server.port});
  host.routeTo(0, /*request_buffering=*/false);  // streamed: the app answers while it reads
  FakeOwner owner(host);
  owner.feed("POST /c HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
  std::string got;
  Fd conn = acceptRequest(server, got, "3\r\nabc\r\n");
  ASSERT_TRUE(conn) << got;
  sendText(conn.get(), kOk);
  ASSERT_TRUE(runUntil([&] { return owner.ex->response_complete; }));
  EXPECT_TRUE(owner.ex->response_held);
  EXPECT_TRUE(owner.sent.empty()) << "a 413 could still replace it: " << owner.sent;
  EXPECT_EQ(owner.ex->upstream, nullptr) << "the app is done: its connection went";
  EXPECT_GE(owner.resumes, 1) << "the rest of the body is read (and dropped)";
  EXPECT_EQ(owner.finished, 0);

  owner.feed("4\r\nmore\r\n0\r\n\r\n");
  EXPECT_EQ(owner.sent.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << owner.sent;
  EXPECT_TRUE(has(owner.sent, "Connection: close\r\n")) << "the body ended after the response: " << owner.sent;
  EXPECT_TRUE(owner.sent.ends_with("hi")) << owner.sent;
  EXPECT_EQ(owner.finished, 1);
  EXPECT_EQ(host.requests_done, 1);
}

}  // namespace
}  // namespace poolgate
