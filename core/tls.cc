#include "core/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <string.h>

namespace poolgate {

std::string takeTlsErrors() {
  std::string text;
  unsigned long code;
  while ((code = ERR_get_error()) != 0) {
    const char* reason = ERR_reason_error_string(code);
    if (!text.empty()) text += "; ";
    if (reason != nullptr) {
      text += reason;
    } else {
      char buffer[256];
      ERR_error_string_n(code, buffer, sizeof buffer);
      text += buffer;
    }
  }
  return text;
}

int tlsVersionFromName(const std::string& name) {
  if (name == "TLSv1.2") return TLS1_2_VERSION;
  if (name == "TLSv1.3") return TLS1_3_VERSION;
  return 0;
}

bool TlsSession::start(SSL_CTX* ctx, int fd, bool server) {
  reset();
  ERR_clear_error();
  ssl_.reset(SSL_new(ctx));
  if (!ssl_ || SSL_set_fd(ssl_.get(), fd) != 1) {
    failure_ = "cannot create the TLS session: " + takeTlsErrors();
    ssl_.reset();
    return false;
  }
  if (server) {
    SSL_set_accept_state(ssl_.get());
  } else {
    SSL_set_connect_state(ssl_.get());
  }
  return true;
}

void TlsSession::reset() {
  ssl_.reset();
  failure_.clear();
  established_ = fatal_ = read_wants_write_ = write_wants_read_ = verify_failed_ = false;
}

TlsResult TlsSession::classify(int ret) {
  int error = SSL_get_error(ssl_.get(), ret);
  switch (error) {
    case SSL_ERROR_WANT_READ:
      return TlsResult::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return TlsResult::kWantWrite;
    case SSL_ERROR_ZERO_RETURN:
      failure_ = "closed by the peer";
      fatal_ = true;
      return TlsResult::kFailed;
    case SSL_ERROR_SYSCALL: {
      int saved = errno;
      std::string queued = takeTlsErrors();
      failure_ = !queued.empty() ? queued
                 : saved != 0    ? std::string(strerror(saved))
                                 : std::string("connection closed");
      fatal_ = true;
      errno = saved != 0 ? saved : ECONNRESET;
      return TlsResult::kFailed;
    }
    default: {
      long verify = SSL_get_verify_result(ssl_.get());
      std::string queued = takeTlsErrors();
      if (verify != X509_V_OK && !established_) {
        verify_failed_ = true;
        failure_ = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
      } else {
        failure_ = queued.empty() ? "TLS error" : queued;
      }
      fatal_ = true;
      errno = EPROTO;
      return TlsResult::kFailed;
    }
  }
}

TlsResult TlsSession::handshake() {
  if (established_) return TlsResult::kDone;
  if (fatal_) return TlsResult::kFailed;
  ERR_clear_error();
  int ret = SSL_do_handshake(ssl_.get());
  if (ret == 1) {
    established_ = true;
    return TlsResult::kDone;
  }
  return classify(ret);
}

ssize_t TlsSession::read(void* buffer, size_t size) {
  read_wants_write_ = false;
  if (fatal_) {
    errno = EPROTO;
    return -1;
  }
  ERR_clear_error();
  size_t n = 0;
  int ret = SSL_read_ex(ssl_.get(), buffer, size, &n);
  if (ret == 1) return static_cast<ssize_t>(n);
  int error = SSL_get_error(ssl_.get(), ret);
  if (error == SSL_ERROR_ZERO_RETURN) return 0;  // close_notify (or EOF, see SSL_OP_IGNORE_UNEXPECTED_EOF)
  switch (classify(ret)) {
    case TlsResult::kWantWrite:
      read_wants_write_ = true;
      [[fallthrough]];
    case TlsResult::kWantRead:
      errno = EAGAIN;
      return -1;
    default:
      return -1;  // errno set by classify()
  }
}

ssize_t TlsSession::write(const void* buffer, size_t size) {
  write_wants_read_ = false;
  if (fatal_) {
    errno = EPIPE;
    return -1;
  }
  if (size == 0) return 0;
  ERR_clear_error();
  size_t n = 0;
  int ret = SSL_write_ex(ssl_.get(), buffer, size, &n);
  if (ret == 1) return static_cast<ssize_t>(n);
  switch (classify(ret)) {
    case TlsResult::kWantRead:
      write_wants_read_ = true;
      [[fallthrough]];
    case TlsResult::kWantWrite:
      errno = EAGAIN;
      return -1;
    default:
      if (errno == 0) errno = EPIPE;
      return -1;
  }
}

bool TlsSession::hasBuffered() const { return ssl_ && SSL_has_pending(ssl_.get()) == 1; }

void TlsSession::shutdown() {
  if (!ssl_ || !established_ || fatal_) return;
  ERR_clear_error();
  // Quiet if it cannot be sent now: a close_notify is a courtesy, the FIN follows anyway.
  SSL_shutdown(ssl_.get());
  ERR_clear_error();
  fatal_ = true;  // nothing more on this session
}

std::string TlsSession::alpn() const {
  if (!ssl_) return "";
  const unsigned char* data = nullptr;
  unsigned int length = 0;
  SSL_get0_alpn_selected(ssl_.get(), &data, &length);
  return std::string(reinterpret_cast<const char*>(data), data != nullptr ? length : 0);
}

const char* TlsSession::version() const { return ssl_ ? SSL_get_version(ssl_.get()) : ""; }

bool TlsSession::resumed() const { return ssl_ && SSL_session_reused(ssl_.get()) == 1; }

}  // namespace poolgate
