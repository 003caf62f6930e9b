// Transport: a connected non-blocking socket and, when it speaks TLS, the
// session on top of it.
//
// A client connection, an upstream connection and a health check all read
// and write through one: the plain-or-TLS choice, the readiness a TLS record
// layer waits for, and the close (close_notify first, if it can leave at
// once) are written once, here.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "core/fd.h"
#include "core/tls.h"

namespace poolgate {

class Transport {
 public:
  Transport() = default;
  explicit Transport(Fd fd) : fd_(std::move(fd)) {}

  int fd() const { return fd_.get(); }
  explicit operator bool() const { return static_cast<bool>(fd_); }
  // A socket that connects (a health check's next probe).
  void adopt(Fd fd) { fd_ = std::move(fd); }

  // TLS on this socket, as a server (accept) or a client (connect); false
  // when OpenSSL cannot make the session (tls().failure() says why).
  bool startTls(SSL_CTX* ctx, bool server) { return tls_.start(ctx, fd_.get(), server); }
  bool secure() const { return static_cast<bool>(tls_); }
  TlsSession& tls() { return tls_; }
  const TlsSession& tls() const { return tls_; }

  // Like recv() and send() (without SIGPIPE), through TLS when secure.
  ssize_t receive(void* buffer, size_t size);
  ssize_t transmit(const void* data, size_t size);
  // The events to act on for `events` from epoll: TLS may wait for the other
  // direction than the one it serves (a read that must first write, a write
  // that must first read).
  uint32_t widen(uint32_t events) const;

  // close_notify if it can leave at once, then the session and the socket go.
  void close();
  // The socket alone, for another process (plain connections only).
  int releaseSocket() { return fd_.release(); }

 private:
  Fd fd_;
  TlsSession tls_;
};

}  // namespace poolgate
