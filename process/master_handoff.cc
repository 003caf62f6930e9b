#include "process/master_handoff.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/socket.h"
#include "process/master.h"

namespace poolgate {

HandoffAcceptor::HandoffAcceptor(EventLoop& loop, int fd, std::function<int()> accept)
    : loop_(loop),
      fd_(fd),
      accept_(std::move(accept)),
      retry_(loop.timers(), [this] { loop_.add(fd_, EPOLLIN, this); }),
      log_(loop.timers(), LogLevel::kError, "handoff accept", "failures") {
  loop_.add(fd_, EPOLLIN, this);
}

HandoffAcceptor::~HandoffAcceptor() {
  if (!retry_.armed()) loop_.remove(fd_);
}

void HandoffAcceptor::onIoEvent(uint32_t) noexcept {
  int error = accept_();
  if (error == 0) return;
  // Out of descriptors (or kernel memory): the socket stays readable, so
  // retrying now would spin. Step away for a moment.
  if (log_.admit(strerror(error))) LOG_ERROR("accept: %s; not accepting for %d ms", strerror(error), kRetryMs);
  loop_.remove(fd_);
  retry_.arm(kRetryMs);
}

void Master::startAcceptors() {
  acceptors_.clear();
  if (!handoffMode(config_)) return;
  size_t tls_number = 0;
  for (const ListenerSockets& listener : listeners_) {
    if (listener.kind != ListenerKind::kProxy) continue;
    if (listener.tls_server) ++tls_number;  // the numbering of tlsTags()
    uint8_t tag = listener.http2 ? kHandoffH2c : 0;
    if (listener.tls_server) tag = static_cast<uint8_t>(tls_number < kHandoffH2c ? tls_number : 0);
    for (const Fd& fd : listener.fds) {
      acceptors_.push_back(std::make_unique<HandoffAcceptor>(
          loop_, fd.get(), [this, fd = fd.get(), nodelay = listener.nodelay, tag] {
            return onHandoffAccept(fd, nodelay, tag);
          }));
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

}  // namespace poolgate
