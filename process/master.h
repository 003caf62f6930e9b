// Master: owns the configuration, the listening sockets and the shared
// segment; forks the workers, replaces those that die, and turns signals
// into actions. It never touches a request.
//
// One class, four parts in their own files beside master.cc (start, signals,
// reload, pid file): master_listeners.cc, master_handoff.cc,
// master_upgrade.cc and master_supervision.cc.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/event_loop.h"
#include "core/fd.h"
#include "core/log_throttle.h"
#include "process/handover.h"
#include "process/master_handoff.h"
#include "process/upstream_monitor.h"
#include "process/worker.h"
#include "proxy/tls_server.h"
#include "shm/stats_segment.h"

namespace poolgate {

class Master final : private IoHandler {
 public:
  Master(Config config, std::string config_path);
  ~Master();

  // How this master was started, so that SIGUSR2 can start the binary on
  // disk the same way: the executable, its arguments, the starting folder.
  void setInvocation(std::string executable, std::vector<std::string> argv, std::string cwd);

  // Opens listeners, forks workers and supervises them until stopped.
  // Returns the process exit code.
  int run();

 private:
  // One configured listening address: a socket per worker in reuseport mode.
  struct ListenerSockets {
    std::string address;
    ListenerKind kind = ListenerKind::kProxy;
    bool tls = false;
    bool nodelay = true;
    bool http2 = false;   // listen[].http2 (a plain listener: h2c with prior knowledge)
    std::vector<Fd> fds;  // index = worker number
    // TLS listeners: certificates and keys as read by this generation's config.
    std::shared_ptr<TlsServer> tls_server;
  };
  // One worker number's process (replaced in place when it dies).
  struct WorkerProcess {
    pid_t pid = 0;
    size_t slot = 0;  // index in the stats segment
    uint64_t started_ms = 0;
    uint32_t quick_deaths = 0;  // consecutive deaths soon after start
    std::unique_ptr<Timer> restart;
    Fd handoff;  // accept_mode handoff: our end of the socket pair accepted fds go through
    uint64_t handed = 0;  // connections sent through it (the worker counts them as accepted)
  };
  static bool handoffMode(const Config& config) { return config.accept_mode == AcceptMode::kHandoff; }
  static bool perWorkerSockets(const Config& config) { return config.accept_mode == AcceptMode::kReuseport; }
  // "kind|address|fd,fd,...;..." : listening sockets handed to a new master.
  static constexpr const char* kInheritVariable = "POOLGATE_LISTENERS";

  // Start, signals, reload (master.cc).
  bool mapSegment();
  void reload();
  void onIoEvent(uint32_t events) noexcept override;  // signalfd
  void writePidFile();
  void removePidFile();

  // Listening sockets (master_listeners.cc).
  bool openListeners(const Config& config, const std::vector<ListenerSockets>& current,
                     std::vector<ListenerSockets>* out);
  bool openListener(const ListenConfig& listen, ListenerKind kind, uint32_t count,
                    const std::vector<ListenerSockets>& current, std::vector<ListenerSockets>* out);

  // accept_mode handoff (master_handoff.cc): the master accepts on a proxy
  // listener and passes each connection to the worker with the fewest active
  // clients.
  void startAcceptors();
  // `tag`: which listener the connection came from, for the worker: 0 for a
  // plain one, else the TLS listener's number (see tlsTags()).
  // Returns 0, or the errno that should stop accepting for a while (EMFILE...).
  int onHandoffAccept(int listen_fd, bool nodelay, uint8_t tag);
  bool handOff(int client_fd, uint8_t tag);
  static bool sendDescriptor(int channel, int fd, uint8_t tag);  // SCM_RIGHTS, non-blocking
  // accept_mode handoff: the TLS servers of the proxy listeners, in order;
  // listener i's connections carry tag i + 1.
  std::vector<const TlsServer*> tlsTags() const;

  // Binary upgrade (master_upgrade.cc).
  void upgradeBinary();
  [[noreturn]] void execNewMaster(const std::string& listeners);
  bool adoptTicketSecret();  // after a binary upgrade: the old master's secret
  static std::vector<ListenerSockets> inheritedListeners();

  // Workers (master_supervision.cc).
  void spawn(uint32_t number);
  [[noreturn]] void runWorker(uint32_t number, size_t slot);
  void reapChildren();
  void onWorkerExit(uint32_t number, int status);
  void onRecycleRequest(pid_t pid);
  void freeSlot(size_t slot);
  void beginStop(bool graceful);
  void signalWorkers(int sig);
  size_t liveWorkers() const;

  Config config_;
  std::unique_ptr<UpstreamMonitor> monitor_;  // DNS and active health checks (master only)
  std::string config_path_;
  // Session ticket secret: drawn once, before the first fork, kept across
  // reloads, so that every worker of every generation resumes every session.
  TicketKeys ticket_keys_;
  EventLoop loop_;
  LogThrottle handoff_log_{loop_.timers(), LogLevel::kWarn, "handoff", "connections closed"};
  Fd signal_fd_;
  StatsSegment* segment_ = nullptr;
  std::unique_ptr<HandOverRelay> relay_;  // idle upstream sockets between workers
  std::vector<ListenerSockets> listeners_;
  std::vector<WorkerProcess> workers_;
  // Replaced workers finishing their clients: pid -> stats slot.
  struct DrainingProcess {
    pid_t pid = 0;
    size_t slot = 0;
  };
  std::vector<DrainingProcess> draining_;
  std::unique_ptr<Timer> stop_deadline_;
  std::vector<std::unique_ptr<HandoffAcceptor>> acceptors_;
  uint64_t generation_ = 1;
  bool stopping_ = false;
  bool pid_file_written_ = false;
  std::string pid_file_path_;  // pid_file, or pid_file.oldbin after SIGUSR2
  std::string executable_;
  std::vector<std::string> argv_;
  std::string cwd_;
  pid_t upgrade_pid_ = 0;  // the new master started by SIGUSR2, while it runs
  int handover_fd_for_child_ = -1;  // in a freshly forked worker: its end of the hand-over pair
  int handoff_fd_for_child_ = -1;  // in a freshly forked worker: its end of the hand-off pair
};

}  // namespace poolgate
