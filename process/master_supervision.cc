// Supervision: the master forks the workers, reaps them, replaces those that
// die (with a back-off for those that keep dying), recycles on request, and
// stops them.
#include "process/master.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <new>

#include "core/clock.h"
#include "core/log.h"

namespace poolgate {

namespace {

constexpr uint64_t kQuickDeathMs = 2000;      // dying sooner than this counts toward back-off
constexpr uint64_t kFirstBackoffMs = 100;
constexpr uint64_t kMaxBackoffMs = 10000;
constexpr double kFastStopGrace = 5.0;        // SIGTERM: SIGKILL workers still alive after this

}  // namespace

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
        sockets.push_back({listener.fds[i].release(), listener.kind, listener.tls, listener.nodelay, listener.http2});
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

}  // namespace poolgate
