// The master's start, signals, reload and pid file. Its other parts:
// master_listeners.cc (listening sockets), master_handoff.cc (accept_mode
// handoff), master_upgrade.cc (binary upgrade), master_supervision.cc
// (forking, reaping and replacing workers, stopping).
#include "process/master.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <new>

#include "core/clock.h"
#include "core/log.h"
#include "upstream/upstream_tls.h"
#include "version.h"

namespace poolgate {

namespace {

const int kMasterSignals[] = {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2};

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
