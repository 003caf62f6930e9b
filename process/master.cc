#include "process/master.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <new>

#include "core/clock.h"
#include "core/log.h"
#include "core/socket.h"
#include "upstream/upstream_tls.h"
#include "version.h"

namespace poolgate {

namespace {

constexpr uint64_t kQuickDeathMs = 2000;      // dying sooner than this counts toward back-off
constexpr uint64_t kFirstBackoffMs = 100;
constexpr uint64_t kMaxBackoffMs = 10000;
constexpr double kFastStopGrace = 5.0;        // SIGTERM: SIGKILL workers still alive after this

// "kind|address|fd,fd,...;..." : listening sockets handed to a new master.
constexpr const char* kInheritVariable = "POOLGATE_LISTENERS";
// A binary upgrade hands the TLS ticket secret over through a pipe whose
// read end the new master inherits (never through the environment itself).
constexpr const char* kTicketSecretVariable = "POOLGATE_TICKET_SECRET_FD";

const int kMasterSignals[] = {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2};

bool handoffMode(const Config& config) { return config.accept_mode == AcceptMode::kHandoff; }

bool perWorkerSockets(const Config& config) { return config.accept_mode == AcceptMode::kReuseport; }

// Each worker builds its own upstream TLS contexts; the master loads them
// once first, so that a CA file that does not load stops a start or a reload.
bool checkUpstreamTls(const Config& config) {
  bool ok = true;
  for (const UpstreamConfig& upstream : config.upstreams) {
    if (!upstream.tls.enabled) continue;
    std::string why;
    if (!UpstreamTls::create(upstream.tls, &why)) {
      LOG_ERROR("%s", why.c_str());
      ok = false;
    }
  }
  return ok;
}

}  // namespace

class Master::Acceptor final : public IoHandler {
 public:
  Acceptor(Master& master, int fd, bool nodelay, uint8_t tag)
      : master_(master),
        fd_(fd),
        nodelay_(nodelay),
        tag_(tag),
        retry_(master.loop_.timers(), [this] { master_.loop_.add(fd_, EPOLLIN, this); }),
        log_(master.loop_.timers(), LogLevel::kError, "handoff accept", "failures") {
    master_.loop_.add(fd_, EPOLLIN, this);
  }
  ~Acceptor() {
    if (!retry_.armed()) master_.loop_.remove(fd_);
  }
  void onIoEvent(uint32_t) noexcept override {
    int error = master_.onHandoffAccept(fd_, nodelay_, tag_);
    if (error == 0) return;
    // Out of descriptors (or kernel memory): the socket stays readable, so
    // retrying now would spin. Step away for a moment.
    if (log_.admit(strerror(error))) LOG_ERROR("accept: %s; not accepting for %d ms", strerror(error), kRetryMs);
    master_.loop_.remove(fd_);
    retry_.arm(kRetryMs);
  }

 private:
  static constexpr int kRetryMs = 100;
  Master& master_;
  int fd_;  // owned by Master::listeners_
  bool nodelay_;
  uint8_t tag_;
  Timer retry_;
  LogThrottle log_;
};

Master::Master(Config config, std::string config_path)
    : config_(std::move(config)), config_path_(std::move(config_path)) {}

Master::~Master() {
  monitor_.reset();     // while the loop it registered with and the segment exist
  loop_.runDeferred();
  removePidFile();
  if (segment_ != nullptr) munmap(segment_, sizeof(StatsSegment));
}

bool Master::mapSegment() {
  void* memory = mmap(nullptr, sizeof(StatsSegment), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) {
    LOG_ERROR("mmap stats segment (%zu bytes): %s", sizeof(StatsSegment), strerror(errno));
    return false;
  }
  segment_ = new (memory) StatsSegment();
  relay_ = std::make_unique<HandOverRelay>(loop_, *segment_);
  segment_->header.master_pid.store(getpid(), std::memory_order_relaxed);
  segment_->header.generation.store(generation_, std::memory_order_relaxed);
  segment_->header.started_ms.store(realtimeMs(), std::memory_order_relaxed);
  snprintf(segment_->header.accept_mode, sizeof segment_->header.accept_mode, "%s",
           toString(config_.accept_mode));
  return true;
}

// One listen address: at least a socket per worker number. Sockets that
// `current` already has for the same address and kind are all taken over
// (duplicated, never re-bound, never dropped): closing one would reset the
// connections waiting in its queue. A larger worker count adds sockets to the
// same port; with fewer workers than sockets, a worker serves several
// (see runWorker).
bool Master::openListener(const ListenConfig& listen, ListenerKind kind, uint32_t count,
                          const std::vector<ListenerSockets>& current, std::vector<ListenerSockets>* out) {
  const std::string& address_text = listen.address.text;
  const bool tls = listen.tls.has_value();
  SocketAddress socket_address;
  if (!makeSocketAddress(listen.address.host, listen.address.port, &socket_address)) {
    LOG_ERROR("listen %s: not a numeric address", address_text.c_str());
    return false;
  }
  ListenerSockets sockets{address_text, kind, tls, listen.nodelay, {}, nullptr};
  if (tls) {
    // Certificates and keys are (re-)read here, at start and on every reload.
    std::vector<std::string> errors;
    sockets.tls_server = TlsServer::create(*listen.tls, &ticket_keys_, &errors);
    for (const std::string& error : errors) LOG_ERROR("%s", error.c_str());
    if (!sockets.tls_server) return false;
  }
  for (const ListenerSockets& existing : current) {
    if (existing.address != address_text || existing.kind != kind || existing.tls != tls) continue;
    for (size_t i = 0; i < existing.fds.size(); ++i) {
      sockets.fds.emplace_back(fcntl(existing.fds[i].get(), F_DUPFD_CLOEXEC, 0));
      if (!sockets.fds.back()) {
        LOG_ERROR("listen %s: dup: %s", address_text.c_str(), strerror(errno));
        return false;
      }
    }
    if (!existing.fds.empty()) {
      SocketAddress bound;
      localAddress(existing.fds[0].get(), &bound);
      socket_address.setPort(bound.port());
    }
    break;
  }
  bool reused = !sockets.fds.empty();
  while (sockets.fds.size() < count) {  // all sockets set SO_REUSEPORT, so more can join later
    std::string why;
    Fd fd = poolgate::openListener(socket_address, listen.backlog, /*reuseport=*/true, &why);
    if (!fd) {
      LOG_ERROR("%s", why.c_str());
      return false;
    }
    if (socket_address.port() == 0) {
      // Port 0: the kernel picked one for the first socket; the others join it.
      SocketAddress bound;
      localAddress(fd.get(), &bound);
      socket_address.setPort(bound.port());
    }
    sockets.fds.push_back(std::move(fd));
  }
  // Applied to kept sockets too, so that a reload changes them in place.
  const ListenOptions options{listen.backlog, static_cast<int>(std::ceil(listen.defer_accept))};
  for (const Fd& fd : sockets.fds) {
    std::string why;
    if (!setListenOptions(fd.get(), options, &why)) {
      LOG_ERROR("listen %s: %s", address_text.c_str(), why.c_str());
      return false;
    }
  }
  if (!reused) {
    LOG_INFO("listening on %s (%s)", socket_address.toString().c_str(),
             kind == ListenerKind::kAdmin ? "admin" : tls ? "proxy, tls" : "proxy");
  }
  out->push_back(std::move(sockets));
  return true;
}

bool Master::openListeners(const Config& config, const std::vector<ListenerSockets>& current,
                           std::vector<ListenerSockets>* out) {
  // reuseport: a socket per worker; the other modes share one socket.
  const uint32_t count = perWorkerSockets(config) ? config.effectiveWorkers() : 1;
  for (const ListenConfig& listen : config.listen) {
    if (!openListener(listen, ListenerKind::kProxy, count, current, out)) return false;
  }
  if (config.admin) {
    ListenConfig admin;
    admin.address = config.admin->address;
    return openListener(admin, ListenerKind::kAdmin, count, current, out);
  }
  return true;
}

int Master::run() {
  Log::setRole("master");
  signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  for (int sig : kMasterSignals) sigaddset(&set, sig);
  sigaddset(&set, recycleSignal());
  sigprocmask(SIG_BLOCK, &set, nullptr);
  signal_fd_.reset(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signal_fd_ || !loop_.valid() || !loop_.add(signal_fd_.get(), EPOLLIN, this)) {
    LOG_ERROR("cannot set up the master's event loop: %s", strerror(errno));
    return 1;
  }
  if (!adoptTicketSecret() && !ticket_keys_.generate()) {
    LOG_WARN("no random bytes for TLS session tickets: TLS sessions will not resume");
  }
  // After a binary upgrade the old master's sockets arrive as inherited descriptors.
  if (!checkUpstreamTls(config_) || !mapSegment() || !openListeners(config_, inheritedListeners(), &listeners_)) {
    return 1;
  }
  unsetenv(kInheritVariable);
  writePidFile();
  for (const std::string& warning : configWarnings(config_)) LOG_WARN("%s", warning.c_str());

  const uint32_t count = config_.effectiveWorkers();
  workers_.resize(count);
  LOG_INFO("poolgate %s starting %u worker(s), accept_mode %s", POOLGATE_VERSION, count,
           toString(config_.accept_mode));
  // Names resolved before the first workers start (bounded by the resolver's
  // timeout), so that they start with addresses to send requests to.
  monitor_ = std::make_unique<UpstreamMonitor>(loop_, *segment_);
  monitor_->configure(config_);
  const uint64_t resolve_deadline = loop_.now() + 2 * secondsToMs(config_.resolver.timeout) + 100;
  while (!monitor_->settled() && !stopping_ && loop_.now() < resolve_deadline) {
    loop_.runOnce(static_cast<int>(resolve_deadline - loop_.now()));
  }
  if (stopping_) return 0;
  for (uint32_t i = 0; i < count; ++i) spawn(i);
  startAcceptors();
  loop_.run();
  LOG_INFO("exiting");
  return 0;
}

void Master::spawn(uint32_t number) {
  WorkerProcess& worker = workers_[number];
  size_t slot = kMaxWorkerSlots;
  for (size_t i = 0; i < kMaxWorkerSlots; ++i) {
    if (segment_->workers[i].state.load(std::memory_order_relaxed) == static_cast<uint32_t>(SlotState::kFree)) {
      slot = i;
      break;
    }
  }
  if (slot == kMaxWorkerSlots) {
    LOG_ERROR("no free stats slot for worker %u", number);
    return;
  }
  Fd handoff_worker_end;
  if (handoffMode(config_)) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) {
      LOG_ERROR("socketpair for worker %u: %s", number, strerror(errno));
      return;
    }
    worker.handoff.reset(pair[0]);
    worker.handed = 0;
    handoff_worker_end.reset(pair[1]);
  } else {
    worker.handoff.reset();
  }
  Fd handover_worker_end = relay_->open(slot);
  WorkerSlot* entry = new (&segment_->workers[slot]) WorkerSlot();
  entry->state.store(static_cast<uint32_t>(SlotState::kStarting), std::memory_order_relaxed);
  entry->slot.store(number, std::memory_order_relaxed);
  entry->generation.store(generation_, std::memory_order_relaxed);

  pid_t pid = fork();
  if (pid < 0) {
    LOG_ERROR("fork: %s", strerror(errno));
    entry->state.store(static_cast<uint32_t>(SlotState::kFree), std::memory_order_relaxed);
    relay_->close(slot);
    return;
  }
  if (pid == 0) {
    handoff_fd_for_child_ = handoff_worker_end.release();
    handover_fd_for_child_ = handover_worker_end.release();
    runWorker(number, slot);
  }
  entry->pid.store(pid, std::memory_order_relaxed);
  worker.pid = pid;
  worker.slot = slot;
  worker.started_ms = loop_.now();
  LOG_INFO("worker %u started, pid %d", number, static_cast<int>(pid));
}

void Master::runWorker(uint32_t number, size_t slot) {
  // In the child: leave the master's loop and signal descriptor alone.
  pid_t master = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the master
  if (getppid() != master) _exit(1);
  loop_.closeAfterFork();
  signal_fd_.reset();
  monitor_.reset();  // closes the master's lookup and probe sockets in this process
  relay_->dropAfterFork();  // the master's ends of every worker's hand-over pair
  char role[32];
  snprintf(role, sizeof role, "worker %u", number);
  Log::setRole(role);

  // Other workers' hand-off pairs are not ours to hold (their EOF must reach them).
  for (WorkerProcess& other : workers_) other.handoff.reset();
  acceptors_.clear();
  std::vector<ListenSocket> sockets;
  if (handoff_fd_for_child_ >= 0) {
    ListenSocket handoff{handoff_fd_for_child_, ListenerKind::kProxy, false};
    handoff.handoff = true;
    handoff.handoff_tls = tlsTags();
    sockets.push_back(handoff);
  }
  for (ListenerSockets& listener : listeners_) {
    for (size_t i = 0; i < listener.fds.size(); ++i) {
      if (handoffMode(config_) && listener.kind == ListenerKind::kProxy) {
        listener.fds[i].reset();  // the master accepts these
      } else if (!perWorkerSockets(config_) || i % workers_.size() == number) {
        sockets.push_back({listener.fds[i].release(), listener.kind, listener.tls, listener.nodelay});
        sockets.back().tls_server = listener.tls_server.get();
      } else {
        listener.fds[i].reset();  // another worker's socket
      }
    }
  }
  int code;
  {
    Worker worker(config_, *segment_, slot, number, generation_, std::move(sockets), Fd(handover_fd_for_child_));
    code = worker.run();
  }
  _exit(code);
}

void Master::onIoEvent(uint32_t) noexcept {
  signalfd_siginfo info;
  while (::read(signal_fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    switch (info.ssi_signo) {
      case SIGCHLD:
        reapChildren();
        break;
      case SIGTERM:
      case SIGINT:
        LOG_INFO("signal %d: fast stop", info.ssi_signo);
        beginStop(false);
        break;
      case SIGQUIT:
        LOG_INFO("SIGQUIT: graceful stop");
        beginStop(true);
        break;
      case SIGUSR1:
        Log::reopen();
        signalWorkers(SIGUSR1);
        break;
      case SIGHUP:
        reload();
        break;
      case SIGUSR2:
        upgradeBinary();
        break;
      default:
        if (static_cast<int>(info.ssi_signo) == recycleSignal()) onRecycleRequest(static_cast<pid_t>(info.ssi_pid));
        break;
    }
  }
}

void Master::startAcceptors() {
  acceptors_.clear();
  if (!handoffMode(config_)) return;
  size_t tls_number = 0;
  for (const ListenerSockets& listener : listeners_) {
    if (listener.kind != ListenerKind::kProxy) continue;
    if (listener.tls_server) ++tls_number;  // the numbering of tlsTags()
    const auto tag = static_cast<uint8_t>(listener.tls_server && tls_number < 256 ? tls_number : 0);
    for (const Fd& fd : listener.fds) {
      acceptors_.push_back(std::make_unique<Acceptor>(*this, fd.get(), listener.nodelay, tag));
    }
  }
}

std::vector<const TlsServer*> Master::tlsTags() const {
  std::vector<const TlsServer*> tags;
  for (const ListenerSockets& listener : listeners_) {
    if (listener.kind == ListenerKind::kProxy && listener.tls_server) tags.push_back(listener.tls_server.get());
  }
  return tags;
}

int Master::onHandoffAccept(int listen_fd, bool nodelay, uint8_t tag) {
  for (int i = 0; i < 64; ++i) {  // a batch, so that signals are not starved
    int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) return errno;
    if (fd < 0) return 0;  // EAGAIN, or a failed connection the next wake-up moves past
    if (nodelay) setNoDelay(fd);
    if (!handOff(fd, tag) && handoff_log_.admit("no worker could take it")) {
      LOG_WARN("handoff: no worker could take a connection; closed");
    }
    ::close(fd);  // the worker has its own descriptor now
  }
  return 0;
}

// To the running worker with the fewest active clients; SCM_RIGHTS over its
// socket pair. Falls back to the next one if a worker's pair is full.
bool Master::handOff(int client_fd, uint8_t tag) {
  // Candidates from the least loaded up; one that cannot take it (its pair is
  // full) is skipped. No allocation: this runs for every accepted connection.
  uint64_t skipped = 0;  // bit per worker number (at most 64 workers)
  for (;;) {
    WorkerProcess* best = nullptr;
    uint64_t best_load = 0;
    for (size_t i = 0; i < workers_.size(); ++i) {
      WorkerProcess& worker = workers_[i];
      if ((skipped >> i) & 1 || worker.pid <= 0 || !worker.handoff) continue;
      const WorkerSlot& slot = segment_->workers[worker.slot];
      if (slot.state.load(std::memory_order_relaxed) != static_cast<uint32_t>(SlotState::kRunning)) continue;
      // Active clients, plus connections sent that the worker has not picked up
      // yet (else a burst of accepts would all go to the same worker).
      uint64_t accepted = ServerCounters::get(slot.accepted);
      uint64_t in_flight = worker.handed > accepted ? worker.handed - accepted : 0;
      uint64_t load = ServerCounters::get(slot.clients_active) + in_flight;
      if (best == nullptr || load < best_load) {
        best = &worker;
        best_load = load;
      }
    }
    if (best == nullptr) return false;
    if (sendDescriptor(best->handoff.get(), client_fd, tag)) {
      ++best->handed;
      return true;
    }
    skipped |= uint64_t{1} << (best - workers_.data());
  }
}

bool Master::sendDescriptor(int channel, int fd, uint8_t tag) {
  return sendWithDescriptor(channel, &tag, 1, fd);
}

void Master::reload() {
  if (stopping_) return;
  LOG_INFO("SIGHUP: reloading %s", config_path_.empty() ? "the built-in configuration" : config_path_.c_str());
  Config next;
  try {
    next = config_path_.empty() ? defaultConfig() : loadConfigFile(config_path_);
  } catch (const ConfigError& error) {
    for (const std::string& message : error.messages()) LOG_ERROR("reload: %s", message.c_str());
    LOG_ERROR("reload failed: generation %llu keeps running unchanged", static_cast<unsigned long long>(generation_));
    return;
  }
  std::vector<ListenerSockets> next_listeners;
  if (!checkUpstreamTls(next) || !openListeners(next, listeners_, &next_listeners)) {
    LOG_ERROR("reload failed: generation %llu keeps running unchanged", static_cast<unsigned long long>(generation_));
    return;
  }
  std::string why;
  if (!Log::open(next.log.error, next.log.level, &why)) LOG_ERROR("reload: log.error: %s", why.c_str());

  // The new generation starts first, on the same sockets, and only then is
  // the old one asked to drain: at no moment is nobody accepting.
  for (const std::string& warning : configWarnings(next)) LOG_WARN("reload: %s", warning.c_str());
  config_ = std::move(next);
  listeners_ = std::move(next_listeners);  // sockets no longer configured close with the old workers
  ++generation_;
  segment_->header.generation.store(generation_, std::memory_order_relaxed);
  snprintf(segment_->header.accept_mode, sizeof segment_->header.accept_mode, "%s",
           toString(config_.accept_mode));
  std::vector<WorkerProcess> old = std::move(workers_);
  workers_ = std::vector<WorkerProcess>(config_.effectiveWorkers());
  LOG_INFO("generation %llu: starting %zu worker(s)", static_cast<unsigned long long>(generation_), workers_.size());
  monitor_->configure(config_);  // before the workers: the shared entries they look up exist
  for (uint32_t i = 0; i < workers_.size(); ++i) spawn(i);
  startAcceptors();
  for (WorkerProcess& worker : old) {
    if (worker.pid <= 0) continue;
    draining_.push_back({worker.pid, worker.slot});
    kill(worker.pid, SIGQUIT);
  }
}

void Master::onRecycleRequest(pid_t pid) {
  if (stopping_) return;
  for (uint32_t number = 0; number < workers_.size(); ++number) {
    WorkerProcess& worker = workers_[number];
    if (worker.pid != pid) continue;
    // The old worker already drains by itself; it leaves the active set and
    // its replacement takes over its listening sockets.
    LOG_INFO("worker %u (pid %d) recycles; starting its replacement", number, static_cast<int>(pid));
    draining_.push_back({pid, worker.slot});
    worker.pid = 0;
    worker.quick_deaths = 0;
    spawn(number);
    return;
  }
}

void Master::freeSlot(size_t slot) {
  relay_->close(slot);  // connections on their way to or from it
  WorkerSlot& entry = segment_->workers[slot];
  // A worker that died with connections open must not keep their places under max_conns.
  uint32_t servers = std::min<uint32_t>(entry.server_count.load(std::memory_order_relaxed), kMaxServers);
  for (uint32_t i = 0; i < servers; ++i) {
    const ServerSlot& server = entry.servers[i];
    int64_t open = static_cast<int64_t>(ServerCounters::get(server.counters.idle) +
                                        ServerCounters::get(server.counters.active));
    if (server.shared_index >= 0 && open > 0) {
      segment_->shared[server.shared_index].conns.fetch_sub(static_cast<int32_t>(open));
    }
  }
  // A worker that died holding the accept mutex must not keep it.
  int32_t holder = entry.pid.load(std::memory_order_relaxed);
  if (holder > 0) segment_->header.accept_lock.compare_exchange_strong(holder, 0);
  entry.state.store(static_cast<uint32_t>(SlotState::kFree), std::memory_order_relaxed);
  entry.pid.store(0, std::memory_order_relaxed);
}

void Master::reapChildren() {
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    if (pid == upgrade_pid_) {
      // The new binary did not stay: this master goes on as before.
      LOG_ERROR("new master (pid %d) exited with status %d; binary upgrade abandoned", static_cast<int>(pid),
                WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
      upgrade_pid_ = 0;
      if (pid_file_written_ && pid_file_path_ != config_.pid_file &&
          rename(pid_file_path_.c_str(), config_.pid_file.c_str()) == 0) {
        pid_file_path_ = config_.pid_file;
      }
      continue;
    }
    auto drained = std::find_if(draining_.begin(), draining_.end(),
                                [pid](const DrainingProcess& d) { return d.pid == pid; });
    if (drained != draining_.end()) {
      LOG_INFO("draining worker pid %d exited", static_cast<int>(pid));  // after a reload, recycle or upgrade
      freeSlot(drained->slot);
      draining_.erase(drained);
      continue;
    }
    for (uint32_t number = 0; number < workers_.size(); ++number) {
      if (workers_[number].pid == pid) {
        onWorkerExit(number, status);
        break;
      }
    }
  }
  if (stopping_ && liveWorkers() == 0) loop_.stop();
}

void Master::onWorkerExit(uint32_t number, int status) {
  WorkerProcess& worker = workers_[number];
  freeSlot(worker.slot);
  if (WIFSIGNALED(status)) {
    LOG_WARN("worker %u (pid %d) killed by signal %d", number, static_cast<int>(worker.pid), WTERMSIG(status));
  } else if (!stopping_ || WEXITSTATUS(status) != 0) {
    LOG_INFO("worker %u (pid %d) exited with status %d", number, static_cast<int>(worker.pid),
             WEXITSTATUS(status));
  }
  worker.pid = 0;
  if (stopping_) return;

  // Replace it at once, unless it keeps dying right after start.
  bool quick = loop_.now() - worker.started_ms < kQuickDeathMs;
  worker.quick_deaths = quick ? worker.quick_deaths + 1 : 0;
  if (worker.quick_deaths <= 1) {
    spawn(number);
    return;
  }
  uint64_t delay = kFirstBackoffMs << std::min<uint32_t>(worker.quick_deaths - 2, 10);
  delay = std::min(delay, kMaxBackoffMs);
  LOG_WARN("worker %u keeps dying; restarting in %llu ms", number, static_cast<unsigned long long>(delay));
  if (!worker.restart) worker.restart = std::make_unique<Timer>(loop_.timers(), [this, number] {
    if (!stopping_ && workers_[number].pid == 0) spawn(number);
  });
  worker.restart->arm(delay);
}

void Master::beginStop(bool graceful) {
  if (stopping_ && graceful) return;
  stopping_ = true;
  acceptors_.clear();
  listeners_.clear();  // new connections are refused, not queued for nobody
  for (WorkerProcess& worker : workers_) {
    if (worker.restart) worker.restart->cancel();
  }
  signalWorkers(graceful ? SIGQUIT : SIGTERM);
  double grace = graceful ? config_.shutdown_timeout + 1.0 : kFastStopGrace;
  stop_deadline_ = std::make_unique<Timer>(loop_.timers(), [this] {
    LOG_WARN("workers still running after the stop deadline: SIGKILL");
    signalWorkers(SIGKILL);
  });
  stop_deadline_->arm(secondsToMs(grace));
  if (liveWorkers() == 0) loop_.stop();
}

void Master::signalWorkers(int sig) {
  for (const WorkerProcess& worker : workers_) {
    if (worker.pid > 0) kill(worker.pid, sig);
  }
  for (const DrainingProcess& process : draining_) kill(process.pid, sig);
}

size_t Master::liveWorkers() const {
  return draining_.size() + static_cast<size_t>(std::count_if(workers_.begin(), workers_.end(),
                                                             [](const WorkerProcess& w) { return w.pid > 0; }));
}

void Master::setInvocation(std::string executable, std::vector<std::string> argv, std::string cwd) {
  executable_ = std::move(executable);
  argv_ = std::move(argv);
  cwd_ = std::move(cwd);
}

std::vector<Master::ListenerSockets> Master::inheritedListeners() {
  std::vector<ListenerSockets> inherited;
  const char* value = getenv(kInheritVariable);
  if (value == nullptr) return inherited;
  std::string_view rest = value;
  while (!rest.empty()) {
    size_t end = rest.find(';');
    std::string_view entry = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    size_t bar1 = entry.find('|'), bar2 = entry.find('|', bar1 + 1);
    if (bar1 == std::string_view::npos || bar2 == std::string_view::npos) continue;
    ListenerSockets sockets;
    sockets.kind = entry.substr(0, bar1) == "admin" ? ListenerKind::kAdmin : ListenerKind::kProxy;
    sockets.tls = entry.substr(0, bar1) == "tls";
    sockets.address = std::string(entry.substr(bar1 + 1, bar2 - bar1 - 1));
    std::string_view fds = entry.substr(bar2 + 1);
    while (!fds.empty()) {
      size_t comma = fds.find(',');
      int fd = atoi(std::string(fds.substr(0, comma)).c_str());
      if (fd > 2 && fcntl(fd, F_GETFD) >= 0) sockets.fds.emplace_back(fd);
      fds = comma == std::string_view::npos ? std::string_view() : fds.substr(comma + 1);
    }
    LOG_INFO("took over %zu inherited socket(s) for %s", sockets.fds.size(), sockets.address.c_str());
    inherited.push_back(std::move(sockets));
  }
  return inherited;
}

void Master::upgradeBinary() {
  if (stopping_) return;
  if (upgrade_pid_ != 0) {
    LOG_WARN("SIGUSR2: a binary upgrade is already running (new master pid %d)", static_cast<int>(upgrade_pid_));
    return;
  }
  if (executable_.empty()) {
    LOG_ERROR("SIGUSR2: the path of the binary is unknown; no upgrade");
    return;
  }
  std::string listeners;
  for (const ListenerSockets& sockets : listeners_) {
    if (!listeners.empty()) listeners += ';';
    listeners += sockets.kind == ListenerKind::kAdmin ? "admin|" : sockets.tls ? "tls|" : "proxy|";
    listeners += sockets.address + '|';
    for (size_t i = 0; i < sockets.fds.size(); ++i) {
      if (i > 0) listeners += ',';
      listeners += std::to_string(sockets.fds[i].get());
    }
  }
  // The new master writes pid_file; ours moves aside, as nginx does.
  if (pid_file_written_) {
    std::string oldbin = config_.pid_file + ".oldbin";
    if (rename(pid_file_path_.c_str(), oldbin.c_str()) == 0) {
      pid_file_path_ = oldbin;
    } else {
      LOG_ERROR("rename %s: %s", pid_file_path_.c_str(), strerror(errno));
    }
  }
  pid_t pid = fork();
  if (pid < 0) {
    LOG_ERROR("SIGUSR2: fork: %s", strerror(errno));
    return;
  }
  if (pid == 0) execNewMaster(listeners);
  upgrade_pid_ = pid;
  LOG_INFO("SIGUSR2: started new master %s (pid %d); send this master SIGQUIT once it serves",
           executable_.c_str(), static_cast<int>(pid));
}

void Master::execNewMaster(const std::string& listeners) {
  // The listening sockets must survive exec; nothing else of ours should.
  for (const ListenerSockets& sockets : listeners_) {
    for (const Fd& fd : sockets.fds) fcntl(fd.get(), F_SETFD, 0);
  }
  setenv(kInheritVariable, listeners.c_str(), 1);
  // The ticket secret, in a pipe (32 bytes: they fit its buffer, no reader needed yet).
  int secret_pipe[2];
  if (ticket_keys_.ready() && pipe(secret_pipe) == 0) {
    if (write(secret_pipe[1], ticket_keys_.secret(), TicketKeys::kSecretBytes) ==
        static_cast<ssize_t>(TicketKeys::kSecretBytes)) {
      setenv(kTicketSecretVariable, std::to_string(secret_pipe[0]).c_str(), 1);
    } else {
      ::close(secret_pipe[0]);
    }
    ::close(secret_pipe[1]);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);
  if (!cwd_.empty() && chdir(cwd_.c_str()) != 0) _exit(126);
  std::vector<char*> argv;
  for (std::string& arg : argv_) argv.push_back(arg.data());
  argv.push_back(nullptr);
  execv(executable_.c_str(), argv.data());
  LOG_ERROR("exec %s: %s", executable_.c_str(), strerror(errno));
  _exit(127);
}

bool Master::adoptTicketSecret() {
  const char* value = getenv(kTicketSecretVariable);
  if (value == nullptr) return false;
  const int fd = atoi(value);
  unsetenv(kTicketSecretVariable);
  if (fd <= 2) return false;
  unsigned char secret[TicketKeys::kSecretBytes];
  const bool ok = read(fd, secret, sizeof secret) == static_cast<ssize_t>(sizeof secret);
  ::close(fd);
  if (!ok) return false;
  ticket_keys_.adopt(secret);
  OPENSSL_cleanse(secret, sizeof secret);
  LOG_INFO("took over the TLS ticket secret of the previous master");
  return true;
}

void Master::writePidFile() {
  if (config_.pid_file.empty()) return;
  FILE* file = fopen(config_.pid_file.c_str(), "w");
  if (file == nullptr) {
    LOG_ERROR("pid_file %s: %s", config_.pid_file.c_str(), strerror(errno));
    return;
  }
  fprintf(file, "%d\n", static_cast<int>(getpid()));
  fclose(file);
  pid_file_written_ = true;
  pid_file_path_ = config_.pid_file;
}

void Master::removePidFile() {
  if (pid_file_written_) unlink(pid_file_path_.c_str());
  pid_file_written_ = false;
}

}  // namespace poolgate
