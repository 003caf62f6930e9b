// TLS termination for `listen[].tls`: the OpenSSL contexts of one listener
// (one per certificate), certificate choice by SNI, ALPN, and the session
// ticket keys every worker shares.
//
// The master builds a TlsServer for each TLS listener before it forks (at
// start and on every reload, which therefore re-reads certificates and keys);
// workers inherit it with the rest of the master's memory and only read it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "core/tls.h"

namespace poolgate {

// Session ticket keys. The master draws a random secret once, before its
// first fork, and keeps it across reloads; the key of each hour is derived
// from it (HMAC-SHA256 of the secret and the hour number), so every worker of
// every generation computes the same key at the same time without talking to
// the others. Tickets are issued with the current hour's key and accepted
// with it or the previous hour's (then re-issued), so a ticket resumes on
// any worker for one to two hours.
class TicketKeys {
 public:
  static constexpr uint64_t kRotationSeconds = 3600;

  struct Key {
    unsigned char name[16];
    unsigned char aes[32];   // AES-256-CBC
    unsigned char hmac[32];  // HMAC-SHA256
  };

  // Draws the secret. False when the random generator fails.
  bool generate();
  // The secret, to hand to a new master (binary upgrade), and taking one over:
  // sessions issued by the old master's workers then resume on the new ones.
  static constexpr size_t kSecretBytes = 32;
  const unsigned char* secret() const { return secret_; }
  void adopt(const unsigned char (&secret)[kSecretBytes]);
  bool ready() const { return ready_; }

  // The key to issue tickets with at `now_seconds` (since the epoch).
  const Key& current(uint64_t now_seconds);
  // The key named `name` among the current and the previous one, or nullptr;
  // *previous tells it is the previous one (the ticket should be renewed).
  const Key* find(const unsigned char* name, uint64_t now_seconds, bool* previous);

 private:
  void refresh(uint64_t period);
  void derive(uint64_t period, Key* out) const;

  unsigned char secret_[kSecretBytes] = {};
  bool ready_ = false;
  uint64_t period_ = UINT64_MAX;  // of keys_[0]
  Key keys_[2] = {};              // [0] current period, [1] the one before
};

class TlsServer {
 public:
  // Loads every certificate of `config` and builds its contexts. Returns
  // nullptr and appends one "file:line: setting: what" message per problem to
  // *errors (a missing file, a key that does not match its certificate...).
  // `keys` may be null (no session tickets, e.g. for `poolgate -t`).
  static std::unique_ptr<TlsServer> create(const ListenTlsConfig& config, TicketKeys* keys,
                                           std::vector<std::string>* errors);
  ~TlsServer();
  TlsServer(const TlsServer&) = delete;
  TlsServer& operator=(const TlsServer&) = delete;

  // The context new connections start with (the first certificate's);
  // the SNI callback may switch a connection to another one.
  SSL_CTX* context() const { return contexts_.front().get(); }
  uint64_t handshakeTimeoutMs() const { return handshake_timeout_ms_; }
  // listen[].http2: ALPN selects h2 when the client offers it.
  void offerHttp2(bool on) { http2_ = on; }
  bool offersHttp2() const { return http2_; }

  // Index of the certificate for SNI `name`: an exact subject alternative
  // name, else a one-label wildcard, else 0 (the first certificate).
  size_t select(std::string_view name) const;

 private:
  TlsServer() = default;
  bool addCertificate(const ListenTlsConfig& config, const CertificateConfig& certificate,
                      std::vector<std::string>* errors);
  // Protocol versions, options, session tickets and the callbacks.
  void configureContext(SSL_CTX* c, const ListenTlsConfig& config);
  // Adds the DNS names of `cert` to exact_ and wildcard_ for certificate `index`.
  void indexNames(X509* cert, uint32_t index);
  static int onServerName(SSL* ssl, int* alert, void* arg);
  static int onAlpn(SSL* ssl, const unsigned char** out, unsigned char* out_length,
                    const unsigned char* in, unsigned int in_length, void* arg);
  static int onTicketKey(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                         EVP_MAC_CTX* mac, int encrypt);

  std::vector<SslCtxPtr> contexts_;  // one per certificate, in the configured order
  // Lowercased names -> certificate index, sorted by name (first certificate
  // first among equal names). Wildcards are stored without their "*.".
  std::vector<std::pair<std::string, uint32_t>> exact_;
  std::vector<std::pair<std::string, uint32_t>> wildcard_;
  TicketKeys* keys_ = nullptr;
  uint64_t handshake_timeout_ms_ = 10000;
  bool http2_ = false;
};

// Every TLS problem of `config` that only shows when files are read: listener
// certificates and keys, cipher lists, upstream CA files. Used by `-t`; the
// master finds the same problems when it builds the contexts.
std::vector<std::string> checkTlsFiles(const Config& config);

}  // namespace poolgate
