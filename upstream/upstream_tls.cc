#include "upstream/upstream_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <unistd.h>

namespace poolgate {

namespace {

bool isIpLiteral(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 || inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

}  // namespace

std::unique_ptr<UpstreamTls> UpstreamTls::create(const UpstreamTlsConfig& config, std::string* error) {
  std::unique_ptr<UpstreamTls> tls(new UpstreamTls(config));
  const std::string origin = config.origin.empty() ? std::string("upstreams.tls") : config.origin;
  const std::string ca_origin = config.ca_file_origin.empty() ? origin + ".ca_file" : config.ca_file_origin;
  ERR_clear_error();
  tls->ctx_.reset(SSL_CTX_new(TLS_client_method()));
  SSL_CTX* c = tls->ctx_.get();
  if (c == nullptr) {
    *error = origin + ": cannot create a TLS context: " + takeTlsErrors();
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Sessions go to the server's slot through onNewSession, not to OpenSSL's cache.
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(c, onNewSession);
  static const unsigned char kAlpn[] = "\x08http/1.1";
  SSL_CTX_set_alpn_protos(c, kAlpn, sizeof kAlpn - 1);
  if (config.verify) {
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
    if (!config.ca_file.empty()) {
      int fd = ::open(config.ca_file.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        *error = ca_origin + ": cannot read " + config.ca_file + ": " + strerror(errno);
        return nullptr;
      }
      ::close(fd);
      if (SSL_CTX_load_verify_locations(c, config.ca_file.c_str(), nullptr) != 1) {
        *error = ca_origin + ": cannot load the CA certificates in " + config.ca_file + ": " + takeTlsErrors();
        return nullptr;
      }
    } else if (SSL_CTX_set_default_verify_paths(c) != 1) {
      *error = origin + ": cannot load the system's CA certificates: " + takeTlsErrors();
      return nullptr;
    }
  } else {
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
  }
  return tls;
}

bool UpstreamTls::prepare(TlsSession& session, const std::string& host, SSL_SESSION* resume,
                          SslSessionPtr* slot) const {
  SSL* ssl = session.ssl();
  const std::string& name = config_.server_name.empty() ? host : config_.server_name;
  const bool ip = isIpLiteral(name);
  if (!name.empty() && !ip && SSL_set_tlsext_host_name(ssl, name.c_str()) != 1) return false;
  if (config_.verify && !name.empty()) {
    if (ip) {
      if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) != 1) return false;
    } else {
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (SSL_set1_host(ssl, name.c_str()) != 1) return false;
    }
  }
  if (resume != nullptr) SSL_set_session(ssl, resume);
  SSL_set_app_data(ssl, slot);
  return true;
}

int UpstreamTls::onNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* slot = static_cast<SslSessionPtr*>(SSL_get_app_data(ssl));
  if (slot == nullptr || SSL_SESSION_is_resumable(session) != 1) return 0;
  slot->reset(session);  // we keep the reference OpenSSL gave us
  return 1;
}

}  // namespace poolgate
