#include "core/transport.h"

#include <sys/epoll.h>
#include <sys/socket.h>

namespace poolgate {

ssize_t Transport::receive(void* buffer, size_t size) {
  return tls_ ? tls_.read(buffer, size) : ::recv(fd_.get(), buffer, size, 0);
}

ssize_t Transport::transmit(const void* data, size_t size) {
  return tls_ ? tls_.write(data, size) : ::send(fd_.get(), data, size, MSG_NOSIGNAL);
}

uint32_t Transport::widen(uint32_t events) const {
  if (!tls_) return events;
  if ((events & EPOLLIN) && tls_.writeWantsRead()) events |= EPOLLOUT;
  if ((events & EPOLLOUT) && tls_.readWantsWrite()) events |= EPOLLIN;
  return events;
}

void Transport::close() {
  if (tls_) {
    tls_.shutdown();
    tls_.reset();
  }
  fd_.reset();
}

}  // namespace poolgate
