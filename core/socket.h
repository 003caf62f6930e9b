// Thin, non-blocking socket helpers over the BSD API.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "core/fd.h"

namespace poolgate {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
  uint16_t port() const;
  void setPort(uint16_t port);
  // "1.2.3.4:80" or "[::1]:80".
  std::string toString() const;
};

// An IP address alone, in 17 bytes: what a client connection keeps of its
// peer while it waits (its text form is made per request, when needed).
struct IpAddress {
  uint8_t family = 0;  // AF_INET, AF_INET6, or 0 (none)
  uint8_t bytes[16] = {};

  static IpAddress of(const SocketAddress& address);
  struct Text {
    char chars[INET6_ADDRSTRLEN] = {};
    const char* c_str() const { return chars; }
  };
  // "192.0.2.1", "2001:db8::1", or "".
  Text text() const;
};

// Numeric host (IPv4/IPv6 literal) and port to an address.
bool makeSocketAddress(const std::string& host, uint16_t port, SocketAddress* out);

// A bound, listening, non-blocking, close-on-exec socket.
Fd openListener(const SocketAddress& address, int backlog, bool reuseport, std::string* why);

// Options of a listening socket that may change while it lives (on reload).
struct ListenOptions {
  int backlog = 511;
  int defer_accept_seconds = 0;  // TCP_DEFER_ACCEPT; 0 = off
};
// listen() again (a new backlog takes effect on a listening socket) and set
// TCP_DEFER_ACCEPT.
bool setListenOptions(int fd, const ListenOptions& options, std::string* why);

// The address a socket is bound to.
bool localAddress(int fd, SocketAddress* out);

// Starts a non-blocking connect. Returns the socket (connected or in progress)
// or an invalid Fd with *error set to errno.
Fd startConnect(const SocketAddress& address, int* error);

// An errno that says this host ran out of something (descriptors, local
// ports, buffer memory), not that the peer failed.
bool isLocalResourceError(int error);

// SO_ERROR of a socket whose connect has completed (0 = connected).
int socketError(int fd);

void setNoDelay(int fd);

// SCM_RIGHTS over a Unix socket: `size` bytes with one descriptor riding
// along, sent without blocking. true when the whole message left (the
// caller still owns `fd`: in flight, the kernel holds its own reference).
bool sendWithDescriptor(int channel, const void* bytes, size_t size, int fd);
// Reads one message of at most `size` bytes without blocking; returns what
// recvmsg() returned. `*fd` gets the descriptor that came with it, or is
// left empty: none came, or it was lost because our descriptor table was
// full (then *lost is true and the kernel has closed it).
ssize_t receiveWithDescriptor(int channel, void* bytes, size_t size, Fd* fd, bool* lost);

}  // namespace poolgate
