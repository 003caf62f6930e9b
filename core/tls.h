// TLS over one non-blocking socket, with OpenSSL.
//
// RAII owners for the OpenSSL objects poolgate keeps (SSL_CTX, SSL,
// SSL_SESSION), and TlsSession: one connection's SSL object driven from an
// edge-triggered event loop. TlsSession::read() and write() behave like
// recv() and send() on a non-blocking socket (bytes, 0 at the end, or -1 with
// errno EAGAIN), so that the code around them stays the code of a plain
// socket. Whether the TLS layer waits for the other direction (a read that
// must first write, or the reverse) is kept in the session, and the owner
// retries the blocked operation on the other readiness event.
//
// Nothing here blocks, throws, or knows about configuration.
#pragma once

#include <openssl/ssl.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

namespace poolgate {

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const noexcept { SSL_CTX_free(ctx); }
};
struct SslFree {
  void operator()(SSL* ssl) const noexcept { SSL_free(ssl); }
};
struct SslSessionFree {
  void operator()(SSL_SESSION* session) const noexcept { SSL_SESSION_free(session); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;
using SslSessionPtr = std::unique_ptr<SSL_SESSION, SslSessionFree>;

// The OpenSSL errors queued on this thread, as one line ("" when none), and
// the queue cleared. Prefixes the reason of the first one.
std::string takeTlsErrors();

// "TLSv1.2" or "TLSv1.3" to the OpenSSL constant; 0 when unknown.
int tlsVersionFromName(const std::string& name);

enum class TlsResult : uint8_t {
  kDone,       // the operation completed
  kWantRead,   // wait until the socket is readable, then call again
  kWantWrite,  // wait until the socket is writable, then call again
  kFailed,     // fatal: close the connection (see failure())
};

class TlsSession {
 public:
  TlsSession() = default;
  TlsSession(TlsSession&&) noexcept = default;
  TlsSession& operator=(TlsSession&&) noexcept = default;
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Starts TLS on `fd` with a new SSL object from `ctx`, as a server (accept)
  // or a client (connect). False (with the reason in failure()) when OpenSSL
  // cannot allocate it.
  bool start(SSL_CTX* ctx, int fd, bool server);

  explicit operator bool() const { return static_cast<bool>(ssl_); }
  SSL* ssl() const { return ssl_.get(); }
  bool established() const { return established_; }

  // Drives the handshake.
  TlsResult handshake();

  // Like recv(): > 0 bytes; 0 at the end of the stream (close_notify, or a
  // bare TCP EOF); -1 with errno EAGAIN (wait: see readWantsWrite()) or
  // another errno on a fatal error.
  ssize_t read(void* buffer, size_t size);
  // Like send(): > 0 bytes taken; -1 with errno EAGAIN (wait: see
  // writeWantsRead()) or another errno on a fatal error. Retrying after
  // EAGAIN must offer the same bytes again (more may follow them).
  ssize_t write(const void* buffer, size_t size);

  // The last read() (write()) waits for the socket to become writable
  // (readable): the TLS layer must send (receive) before it can go on.
  bool readWantsWrite() const { return read_wants_write_; }
  bool writeWantsRead() const { return write_wants_read_; }

  // Decrypted bytes, or bytes of a record, already taken from the socket.
  bool hasBuffered() const;

  // Sends close_notify if that can be done without waiting; never blocks,
  // never retries. Nothing is sent after a fatal error.
  void shutdown();

  // Why the last operation failed, e.g. "certificate verify failed: certificate
  // has expired" or "http request" (plain HTTP sent to a TLS port).
  const std::string& failure() const { return failure_; }
  // The last failure was a peer certificate verification error.
  bool verifyFailed() const { return verify_failed_; }

  // The negotiated ALPN protocol ("" when none), the version name, whether
  // the session was resumed.
  std::string alpn() const;
  const char* version() const;
  bool resumed() const;

  void reset();

 private:
  TlsResult classify(int ret);  // after an SSL_* call returning `ret` <= 0

  SslPtr ssl_;
  std::string failure_;
  bool established_ = false;
  bool fatal_ = false;
  bool read_wants_write_ = false;
  bool write_wants_read_ = false;
  bool verify_failed_ = false;
};

}  // namespace poolgate
