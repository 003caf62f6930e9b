// TLS to upstream servers (`upstreams[].tls`): the client context of one
// upstream group in one worker.
//
// Verification (tls.verify, the default) checks the server's certificate
// chain against tls.ca_file, or the system's trust store when ca_file is "",
// and the certificate's name against tls.server_name, or else the host of
// the server's configured address (a DNS name, or an IP address that must
// then be among the certificate's IP subject alternative names). The same
// name goes out as SNI unless it is an IP address.
//
// Resumption: the newest session a server gave us is kept per server (see
// Server::tlsSession()) and offered by the next new connection to it.
#pragma once

#include <memory>
#include <string>

#include "config/config.h"
#include "core/tls.h"

namespace poolgate {

class UpstreamTls {
 public:
  // nullptr and *error ("file:line: upstreams[0].tls.ca_file: what") when the
  // CA file does not load.
  static std::unique_ptr<UpstreamTls> create(const UpstreamTlsConfig& config, std::string* error);

  SSL_CTX* context() const { return ctx_.get(); }
  const UpstreamTlsConfig& config() const { return config_; }

  // Prepares `session` (started on this context) for a server whose configured
  // host is `host`: SNI, the name to verify, the session to resume.
  // `resume` may be null. `slot` receives new sessions the server issues.
  bool prepare(TlsSession& session, const std::string& host, SSL_SESSION* resume,
               SslSessionPtr* slot) const;

 private:
  explicit UpstreamTls(const UpstreamTlsConfig& config) : config_(config) {}
  static int onNewSession(SSL* ssl, SSL_SESSION* session);

  UpstreamTlsConfig config_;
  SslCtxPtr ctx_;
};

}  // namespace poolgate
