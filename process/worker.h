// Worker: one process, one EventLoop. It accepts clients on the listening
// sockets the master handed it, runs their exchanges, and keeps its own pool
// of upstream connections per server. Nothing in here takes a lock.
#pragma once

#include <csignal>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "core/buffer.h"
#include "core/event_loop.h"
#include "core/fd.h"
#include "core/log_throttle.h"
#include "core/spool.h"
#include "http/parser.h"
#include "process/handover.h"
#include "proxy/access_log.h"
#include "proxy/client_host.h"
#include "shm/stats_segment.h"
#include "upstream/upstream.h"

namespace poolgate {

class ClientConnection;
class Listener;
class TlsServer;

// A worker asks the master for its replacement (max_requests_per_worker).
// SIGRTMIN is not a constant in glibc, hence a function.
inline int recycleSignal() { return SIGRTMIN + 1; }

// The tag of a connection handed over from a plain listener with http2 on
// (TLS listeners are numbered below it).
inline constexpr uint8_t kHandoffH2c = 255;

// A listening socket as the master hands it to a worker.
struct ListenSocket {
  int fd = -1;  // owned by the master; the worker closes its copy on exit
  ListenerKind kind = ListenerKind::kProxy;
  bool tls = false;
  bool nodelay = true;  // TCP_NODELAY on accepted connections
  bool http2 = false;   // a plain listener with http2 on: h2c with prior knowledge
  bool handoff = false;  // a socket pair: connections arrive as SCM_RIGHTS from the master
  const TlsServer* tls_server = nullptr;  // set for TLS listeners (owned by the master)
  // A hand-off socket: the TLS servers by tag (a handed connection's tag n > 0
  // means handoff_tls[n - 1]; 0 means plain, kHandoffH2c plain with http2 on).
  std::vector<const TlsServer*> handoff_tls = {};
};

class Worker final : public ClientHost, private IoHandler, private LoopObserver, private HandOverSink {
 public:
  // `handover`: this worker's end of its hand-over pair with the master
  // (empty: its upstream connections never move to other workers).
  Worker(const Config& config, StatsSegment& segment, size_t slot_index, uint32_t worker_number,
         uint64_t generation, std::vector<ListenSocket> sockets, Fd handover = Fd());
  ~Worker();

  // Runs the event loop until the worker is told to stop; returns the exit code.
  int run();

  // ClientHost: what its client connections use.
  EventLoop& loop() override { return loop_; }
  BufferPool& buffers() override { return buffers_; }
  HeaderStore& headerStore() override { return headers_; }
  const Config& config() const override { return config_; }
  WorkerSlot& stats() override { return slot_; }
  UpstreamGroup& upstream(size_t index) override { return *upstreams_[index]; }
  bool draining() const override { return draining_; }
  AccessLog* accessLog() override { return access_log_.get(); }  // nullptr when off
  // Response buffering: the limits of one response's spool, and what all of
  // this worker's spools may hold in memory together.
  const SpoolLimits& spoolLimits() const override { return spool_limits_; }
  SpoolBudget& spoolBudget() override { return spool_budget_; }
  ExchangeCache& exchanges() override { return exchanges_; }
  RequestReaderCache& readers() override { return readers_; }
  LogThrottle& bufferLog() override { return buffer_log_; }
  const RouteConfig* route(std::string_view host, std::string_view path) const override;
  AdminAnswer answerAdmin(std::string_view path) override;  // from the shared segment
  void onClientOpened(ClientConnection& client) override;
  void onClientClosed(ClientConnection& client) override;
  void onRequestDone() override;

  // Graceful stop: stop accepting, close idle clients, finish the rest.
  void beginDrain();

  // accept() failed with something other than "nothing to accept": out of
  // descriptors (EMFILE, ENFILE) or kernel memory. Stops accepting for a
  // short while (or until a client closes) instead of retrying at once, which
  // would spin on the level-triggered listening socket.
  void onAcceptFailed(int error);

  // Descriptors this worker holds now: those it started with (listening
  // sockets, logs, epoll...), its clients and its upstream connections.
  size_t descriptorsInUse() const;

 private:
  void onIoEvent(uint32_t events) noexcept override;  // signalfd
  // accept_mode "mutex": take the shared-memory accept lock before polling
  // the listening sockets, give it back after the batch (nginx's accept_mutex).
  int64_t beforePoll() noexcept override;
  void afterDispatch() noexcept override;
  void setProxyListening(bool on);
  // Room for one more client: under worker_connections, and not into the
  // descriptors kept for the upstream connections of the clients we have.
  bool roomForClient();
  // Resumes or pauses the proxy listeners as roomForClient() and the accept
  // back-off say (not with accept_mode "mutex": beforePoll() decides there).
  void updateAccepting();
  // The back-off is over (its timer, or a client closed): listen again.
  void endAcceptBackoff();
  void setupSignals();
  void checkDrained();
  // An upstream connection another worker handed over (through the master).
  void onHandedOver(Fd fd, const HandOverNote& note) noexcept override;

  // A server of the configuration given by name: its addresses come from
  // the master's resolver through shared memory.
  struct NameWatch {
    size_t group;                // index in upstreams_
    size_t server;               // index in the group's configured servers
    int shared_name;             // its SharedName entry, or -1 until the master adds it
    uint64_t version = 0;        // of the address list last applied (0 = none yet)
    std::vector<size_t> servers = {};  // indexes in the group of the addresses it gave
  };
  static constexpr uint64_t kNamePollMs = 100;
  void addServer(size_t group_index, const std::string& address_text, const SocketAddress& address,
                 const std::string& name, uint32_t weight);
  void syncNames();
  void applyAddresses(NameWatch& watch, const std::vector<std::string>& addresses);

  const Config& config_;
  StatsSegment& segment_;
  WorkerSlot& slot_;
  const uint32_t slot_index_;
  const int32_t pid_;
  HeaderStore headers_;  // before loop_: what the loop deletes late may still give arrays back
  EventLoop loop_;
  BufferPool buffers_;
  ExchangeCache exchanges_{buffers_};  // after buffers_: destroyed before it
  RequestReaderCache readers_{buffers_, config_.limits, &headers_};  // likewise
  Fd signal_fd_;
  std::unique_ptr<HandOverPort> handover_;
  SpoolLimits spool_limits_;
  SpoolBudget spool_budget_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<UpstreamGroup>> upstreams_;
  std::unique_ptr<AccessLog> access_log_;
  std::vector<ClientConnection*> clients_;  // every open client, for draining
  Timer drain_deadline_;
  std::vector<NameWatch> names_;
  Timer names_timer_;
  bool draining_ = false;
  bool proxy_listening_ = false;
  // The descriptor budget: RLIMIT_NOFILE, the reserve kept below it, and
  // what the worker held when it started running.
  size_t fd_limit_ = 0;
  size_t fd_reserve_ = 0;
  size_t fd_baseline_ = 0;
  bool fd_short_ = false;  // paused because the reserve was reached
  Timer accept_retry_;     // armed while accepting is backed off
  LogThrottle accept_log_;
  LogThrottle buffer_log_;
  uint64_t recycle_after_ = 0;  // max_requests_per_worker plus jitter; 0 = never
  uint64_t served_ = 0;
  int exit_code_ = 0;
};

}  // namespace poolgate
