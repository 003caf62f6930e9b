#include "core/socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <string.h>

#include <cstdio>

namespace poolgate {

uint16_t SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

void SocketAddress::setPort(uint16_t port) {
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(port);
}

IpAddress IpAddress::of(const SocketAddress& address) {
  IpAddress ip;
  if (address.family() == AF_INET) {
    ip.family = AF_INET;
    memcpy(ip.bytes, &reinterpret_cast<const sockaddr_in*>(&address.storage)->sin_addr, 4);
  } else if (address.family() == AF_INET6) {
    ip.family = AF_INET6;
    memcpy(ip.bytes, &reinterpret_cast<const sockaddr_in6*>(&address.storage)->sin6_addr, 16);
  }
  return ip;
}

IpAddress::Text IpAddress::text() const {
  Text text;
  if (family == AF_INET) {
    // Made once per exchange: inet_ntop() goes through sprintf(), about 500
    // instructions for an IPv4 address; this takes a few dozen.
    char* out = text.chars;
    for (int i = 0; i < 4; ++i) {
      const unsigned octet = bytes[i];
      if (octet >= 100) *out++ = static_cast<char>('0' + octet / 100);
      if (octet >= 10) *out++ = static_cast<char>('0' + octet / 10 % 10);
      *out++ = static_cast<char>('0' + octet % 10);
      if (i < 3) *out++ = '.';
    }
    *out = '\0';
  } else if (family == AF_INET6) {
    inet_ntop(AF_INET6, bytes, text.chars, sizeof text.chars);
  }
  return text;
}

std::string SocketAddress::toString() const {
  const IpAddress::Text ip = IpAddress::of(*this).text();
  char text[INET6_ADDRSTRLEN + 10];
  if (family() == AF_INET6) {
    snprintf(text, sizeof text, "[%s]:%u", ip.c_str(), port());
  } else {
    snprintf(text, sizeof text, "%s:%u", ip.c_str(), port());
  }
  return text;
}

bool makeSocketAddress(const std::string& host, uint16_t port, SocketAddress* out) {
  *out = SocketAddress{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out->storage);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out->length = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out->storage);
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    out->length = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

Fd openListener(const SocketAddress& address, int backlog, bool reuseport, std::string* why) {
  Fd fd(socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  auto fail = [&](const char* what) {
    if (why) *why = std::string(what) + " " + address.toString() + ": " + strerror(errno);
    return Fd();
  };
  if (!fd) return fail("socket");
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport && setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    return fail("SO_REUSEPORT");
  }
  if (address.family() == AF_INET6) {
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  if (bind(fd.get(), address.get(), address.length) != 0) return fail("bind");
  if (listen(fd.get(), backlog) != 0) return fail("listen");
  return fd;
}

bool setListenOptions(int fd, const ListenOptions& options, std::string* why) {
  if (listen(fd, options.backlog) != 0) {
    *why = std::string("listen: ") + strerror(errno);
    return false;
  }
  if (setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &options.defer_accept_seconds,
                 sizeof options.defer_accept_seconds) != 0) {
    *why = std::string("TCP_DEFER_ACCEPT: ") + strerror(errno);
    return false;
  }
  return true;
}

bool localAddress(int fd, SocketAddress* out) {
  out->length = sizeof out->storage;
  return getsockname(fd, out->get(), &out->length) == 0;
}

Fd startConnect(const SocketAddress& address, int* error) {
  Fd fd(socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    *error = errno;
    return fd;
  }
  setNoDelay(fd.get());
  if (connect(fd.get(), address.get(), address.length) != 0 && errno != EINPROGRESS) {
    *error = errno;
    return Fd();
  }
  *error = 0;
  return fd;
}

bool isLocalResourceError(int error) {
  return error == EMFILE || error == ENFILE || error == EADDRNOTAVAIL || error == ENOBUFS || error == ENOMEM;
}

int socketError(int fd) {
  int error = 0;
  socklen_t len = sizeof error;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) return errno;
  return error;
}

void setNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

bool sendWithDescriptor(int channel, const void* bytes, size_t size, int fd) {
  iovec iov{const_cast<void*>(bytes), size};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  cmsghdr* cmsg = CMSG_FIRSTHDR(&message);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  return sendmsg(channel, &message, MSG_DONTWAIT | MSG_NOSIGNAL) == static_cast<ssize_t>(size);
}

ssize_t receiveWithDescriptor(int channel, void* bytes, size_t size, Fd* fd, bool* lost) {
  iovec iov{bytes, size};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  fd->reset();
  *lost = false;
  const ssize_t n = recvmsg(channel, &message, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (n <= 0) return n;
  const cmsghdr* cmsg = CMSG_FIRSTHDR(&message);
  if (cmsg != nullptr && cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS &&
      cmsg->cmsg_len == CMSG_LEN(sizeof(int))) {
    int received;
    memcpy(&received, CMSG_DATA(cmsg), sizeof received);
    fd->reset(received);
  }
  *lost = (message.msg_flags & MSG_CTRUNC) != 0;
  if ((message.msg_flags & MSG_TRUNC) != 0) {  // longer than we take: not one of ours
    errno = EBADMSG;
    return -1;
  }
  return n;
}

}  // namespace poolgate
