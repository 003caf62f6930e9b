#include "process/listener.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include "core/log.h"
#include "core/socket.h"
#include "proxy/client_connection.h"

namespace poolgate {

namespace {

// Errors accept(2) passes on from the connection being accepted: try the next.
bool pendingNetworkError(int error) {
  switch (error) {
    case EINTR: case ECONNABORTED: case EPROTO: case ENETDOWN: case ENOPROTOOPT: case EHOSTDOWN:
    case ENONET: case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH: case EPERM:
      return true;
    default:
      return false;
  }
}

constexpr int kAcceptBatch = 64;  // accepts per wake-up, so one busy listener cannot starve the loop
constexpr int kFinalAcceptLimit = 4096;  // bound of the last pass before a graceful close
}

Listener::Listener(Worker& worker, const ListenSocket& socket, bool exclusive)
    : worker_(worker), socket_(socket), events_(EPOLLIN | (exclusive ? EPOLLEXCLUSIVE : 0u)) {}

Listener::~Listener() { stop(); }

void Listener::resume() {
  if (registered_ || socket_.fd < 0) return;
  registered_ = worker_.loop().add(socket_.fd, events_, this);
}

void Listener::pause() {
  if (!registered_) return;
  worker_.loop().remove(socket_.fd);
  registered_ = false;
}

void Listener::drainAndStop() {
  acceptSome(kFinalAcceptLimit, /*final=*/true);
  stop();
}

void Listener::stop() {
  pause();
  if (socket_.fd >= 0) ::close(socket_.fd);
  socket_.fd = -1;
}

// accept_mode handoff: the next connection the master passed us, or -1.
int Listener::receiveHandedOff(uint8_t* tag) {
  Fd fd;
  bool lost = false;
  ssize_t n = receiveWithDescriptor(socket_.fd, tag, 1, &fd, &lost);
  if (n == 0) {  // the master closed its end: no more connections come this way
    pause();
    errno = EAGAIN;
    return -1;
  }
  if (n < 0) return -1;
  if (!fd) {
    // No room in our descriptor table: the kernel dropped the connection.
    errno = lost ? EMFILE : EAGAIN;
    return -1;
  }
  int flags = fcntl(fd.get(), F_GETFL);
  fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK);
  return fd.release();
}

void Listener::onIoEvent(uint32_t) noexcept {
  if (!registered_) return;
  const int accepted = acceptSome(kAcceptBatch, /*final=*/false);
  if (socket_.kind == ListenerKind::kAdmin) return;  // the accept figures describe proxy traffic
  WorkerSlot& stats = worker_.stats();
  ServerCounters::add(stats.accept_wakeups);
  if (accepted == 0) ServerCounters::add(stats.accept_empty);
}

int Listener::acceptSome(int limit, bool final) {
  WorkerSlot& stats = worker_.stats();
  int accepted = 0;
  // A new client may pause us (worker_connections reached); the final pass
  // before closing ignores that, since whatever it leaves would be reset.
  for (int attempt = 0; attempt < limit && socket_.fd >= 0 && (registered_ || final); ++attempt) {
    SocketAddress peer;
    peer.length = sizeof peer.storage;
    uint8_t tag = 0;
    int fd = socket_.handoff ? receiveHandedOff(&tag)
                             : accept4(socket_.fd, peer.get(), &peer.length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0 && socket_.handoff) {
      peer.length = sizeof peer.storage;
      getpeername(fd, peer.get(), &peer.length);
    }
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (pendingNetworkError(errno)) continue;  // that connection's trouble, not ours
      if (!final) worker_.onAcceptFailed(errno);  // EMFILE, ENFILE, ENOBUFS, ENOMEM...
      break;
    }
    ++accepted;
    bool denied = false;
    if (socket_.kind == ListenerKind::kAdmin) {
      ServerCounters::add(stats.admin_accepted);
      // admin.allow: the client still gets an answer (403) to its request.
      denied = !worker_.config().admin || !worker_.config().admin->allows(peer.get());
      if (denied) ServerCounters::add(stats.admin_denied);
    } else {
      ServerCounters::add(stats.accepted);
    }
    if (socket_.nodelay && !socket_.handoff) setNoDelay(fd);  // a handed-off one is set by the master
    const TlsServer* tls = socket_.tls_server;
    bool h2c = socket_.http2;
    if (socket_.handoff) {
      tls = tag > 0 && tag <= socket_.handoff_tls.size() ? socket_.handoff_tls[tag - 1] : nullptr;
      h2c = tag == kHandoffH2c;
    }
    auto* client = new ClientConnection(worker_, Fd(fd), peer, socket_.kind, tls, denied, h2c && tls == nullptr);
    client->start();
  }
  return accepted;
}

}  // namespace poolgate
