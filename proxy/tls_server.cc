#include "proxy/tls_server.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include "upstream/upstream_tls.h"

namespace poolgate {

namespace {

constexpr unsigned char kSessionContext[] = "poolgate";
constexpr size_t kMaxServerName = 253;

std::string where(const SettingOrigin& origin, const char* fallback) {
  return origin.empty() ? std::string(fallback) : origin;
}

// "" when `path` can be opened for reading, else why not.
std::string unreadable(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::string("cannot read ") + path + ": " + strerror(errno);
  ::close(fd);
  return "";
}

struct GeneralNamesFree {
  void operator()(GENERAL_NAMES* names) const noexcept { GENERAL_NAMES_free(names); }
};

// The DNS names among the subject alternative names of `cert`, lowercased.
std::vector<std::string> dnsNames(X509* cert) {
  std::vector<std::string> names;
  std::unique_ptr<GENERAL_NAMES, GeneralNamesFree> alt(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!alt) return names;
  for (int i = 0; i < sk_GENERAL_NAME_num(alt.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(alt.get(), i);
    if (name->type != GEN_DNS) continue;
    const unsigned char* data = ASN1_STRING_get0_data(name->d.dNSName);
    int length = ASN1_STRING_length(name->d.dNSName);
    if (data == nullptr || length <= 0) continue;
    std::string text(reinterpret_cast<const char*>(data), static_cast<size_t>(length));
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    names.push_back(std::move(text));
  }
  return names;
}

// Whether both files of `certificate` can be opened; a message for each one
// that cannot.
bool filesReadable(const CertificateConfig& certificate, const std::string& cert_where,
                   const std::string& key_where, std::vector<std::string>* errors) {
  bool files_ok = true;
  for (const auto& [path, origin] : {std::pair{&certificate.cert, &cert_where}, std::pair{&certificate.key, &key_where}}) {
    std::string why = unreadable(*path);
    if (!why.empty()) {
      errors->push_back(*origin + ": " + why);
      files_ok = false;
    }
  }
  return files_ok;
}

// Loads the certificate chain and the private key of `certificate` into `c`,
// and checks that they belong together.
bool loadCertificateAndKey(SSL_CTX* c, const CertificateConfig& certificate, const std::string& cert_where,
                           const std::string& key_where, std::vector<std::string>* errors) {
  if (SSL_CTX_use_certificate_chain_file(c, certificate.cert.c_str()) != 1) {
    errors->push_back(cert_where + ": cannot load the certificate " + certificate.cert + ": " + takeTlsErrors());
    return false;
  }
  if (SSL_CTX_use_PrivateKey_file(c, certificate.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    std::string why = takeTlsErrors();
    if (why.find("values mismatch") != std::string::npos || why.find("mismatch") != std::string::npos) {
      errors->push_back(key_where + ": the key " + certificate.key + " does not match the certificate " +
                        certificate.cert);
    } else {
      errors->push_back(key_where + ": cannot load the private key " + certificate.key + ": " + why);
    }
    return false;
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    takeTlsErrors();
    errors->push_back(key_where + ": the key " + certificate.key + " does not match the certificate " +
                      certificate.cert);
    return false;
  }
  return true;
}

// Sorted by name, then by certificate; only the first certificate of each name kept.
void sortNames(std::vector<std::pair<std::string, uint32_t>>* names) {
  std::sort(names->begin(), names->end());
  names->erase(std::unique(names->begin(), names->end(),
                           [](const auto& a, const auto& b) { return a.first == b.first; }),
               names->end());
}

const std::pair<std::string, uint32_t>* findName(const std::vector<std::pair<std::string, uint32_t>>& names,
                                                 std::string_view name) {
  auto found = std::lower_bound(names.begin(), names.end(), name,
                                [](const auto& entry, std::string_view key) { return entry.first < key; });
  return found != names.end() && found->first == name ? &*found : nullptr;
}

TlsServer* serverOf(SSL* ssl) {
  return static_cast<TlsServer*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
}

bool setMacKey(EVP_MAC_CTX* mac, const unsigned char* key) {
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, const_cast<unsigned char*>(key), 32),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  return EVP_MAC_CTX_set_params(mac, params) == 1;
}

}  // namespace

// ---- Ticket keys ---------------------------------------------------------------

bool TicketKeys::generate() {
  ready_ = RAND_bytes(secret_, sizeof secret_) == 1;
  period_ = UINT64_MAX;
  return ready_;
}

void TicketKeys::adopt(const unsigned char (&secret)[kSecretBytes]) {
  memcpy(secret_, secret, kSecretBytes);
  ready_ = true;
  period_ = UINT64_MAX;
}

void TicketKeys::derive(uint64_t period, Key* out) const {
  // HMAC-SHA256(secret, label || period as 8 bytes big-endian), one label per part.
  auto part = [&](const char* label, unsigned char* dest, size_t size) {
    unsigned char input[32] = {};
    size_t label_length = strlen(label);
    memcpy(input, label, label_length);
    for (int i = 0; i < 8; ++i) input[label_length + i] = static_cast<unsigned char>(period >> (56 - 8 * i));
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    HMAC(EVP_sha256(), secret_, sizeof secret_, input, label_length + 8, digest, &length);
    memcpy(dest, digest, std::min<size_t>(size, length));
  };
  part("ticket name", out->name, sizeof out->name);
  part("ticket aes", out->aes, sizeof out->aes);
  part("ticket hmac", out->hmac, sizeof out->hmac);
}

void TicketKeys::refresh(uint64_t period) {
  if (period == period_) return;
  if (period == period_ + 1) {
    keys_[1] = keys_[0];
  } else {
    derive(period - 1, &keys_[1]);
  }
  derive(period, &keys_[0]);
  period_ = period;
}

const TicketKeys::Key& TicketKeys::current(uint64_t now_seconds) {
  refresh(now_seconds / kRotationSeconds);
  return keys_[0];
}

const TicketKeys::Key* TicketKeys::find(const unsigned char* name, uint64_t now_seconds, bool* previous) {
  refresh(now_seconds / kRotationSeconds);
  for (int i = 0; i < 2; ++i) {
    if (CRYPTO_memcmp(name, keys_[i].name, sizeof keys_[i].name) == 0) {
      *previous = i == 1;
      return &keys_[i];
    }
  }
  return nullptr;
}

// ---- Contexts -----------------------------------------------------------------

TlsServer::~TlsServer() = default;

std::unique_ptr<TlsServer> TlsServer::create(const ListenTlsConfig& config, TicketKeys* keys,
                                             std::vector<std::string>* errors) {
  std::unique_ptr<TlsServer> server(new TlsServer());
  server->keys_ = keys != nullptr && keys->ready() ? keys : nullptr;
  server->handshake_timeout_ms_ = static_cast<uint64_t>(config.handshake_timeout * 1000.0);
  size_t errors_before = errors->size();
  if (config.certificates.empty()) {
    errors->push_back(where(config.origin, "listen.tls") + ".certificates: at least one certificate is required");
  }
  for (const CertificateConfig& certificate : config.certificates) {
    server->addCertificate(config, certificate, errors);
  }
  if (errors->size() != errors_before) return nullptr;
  sortNames(&server->exact_);
  sortNames(&server->wildcard_);
  return server;
}

bool TlsServer::addCertificate(const ListenTlsConfig& config, const CertificateConfig& certificate,
                               std::vector<std::string>* errors) {
  const std::string cert_where = where(certificate.cert_origin, "cert");
  const std::string key_where = where(certificate.key_origin, "key");
  if (!filesReadable(certificate, cert_where, key_where, errors)) return false;

  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) {
    errors->push_back(where(config.origin, "listen.tls") + ": cannot create a TLS context: " + takeTlsErrors());
    return false;
  }
  SSL_CTX* c = ctx.get();
  configureContext(c, config);
  if (!config.ciphers.empty() && SSL_CTX_set_cipher_list(c, config.ciphers.c_str()) != 1) {
    takeTlsErrors();
    errors->push_back(where(config.ciphers_origin, "ciphers") + ": no cipher matches \"" + config.ciphers + "\"");
    return false;
  }
  if (!loadCertificateAndKey(c, certificate, cert_where, key_where, errors)) return false;

  indexNames(SSL_CTX_get0_certificate(c), static_cast<uint32_t>(contexts_.size()));
  contexts_.push_back(std::move(ctx));
  return true;
}

void TlsServer::configureContext(SSL_CTX* c, const ListenTlsConfig& config) {
  SSL_CTX_set_min_proto_version(c, tlsVersionFromName(config.min_version));
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                             SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Idle keep-alive clients hold no OpenSSL read/write buffers.
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Resumption by tickets only: a server-side cache would be per worker.
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_session_id_context(c, kSessionContext, sizeof kSessionContext - 1);
  SSL_CTX_set_timeout(c, static_cast<long>(TicketKeys::kRotationSeconds));
  SSL_CTX_set_num_tickets(c, 1);
  if (keys_ != nullptr) {
    SSL_CTX_set_tlsext_ticket_key_evp_cb(c, onTicketKey);
  } else {
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
  }
  SSL_CTX_set_tlsext_servername_callback(c, onServerName);
  SSL_CTX_set_tlsext_servername_arg(c, this);
  SSL_CTX_set_alpn_select_cb(c, onAlpn, this);
  SSL_CTX_set_app_data(c, this);
}

void TlsServer::indexNames(X509* cert, uint32_t index) {
  for (std::string& name : dnsNames(cert)) {
    if (name.size() > 2 && name.compare(0, 2, "*.") == 0) {
      wildcard_.emplace_back(name.substr(2), index);
    } else if (name.find('*') == std::string::npos) {
      exact_.emplace_back(std::move(name), index);
    }
  }
}

size_t TlsServer::select(std::string_view name) const {
  if (name.empty() || name.size() > kMaxServerName) return 0;
  char lower[kMaxServerName + 1];
  for (size_t i = 0; i < name.size(); ++i) {
    lower[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
  }
  std::string_view key(lower, name.size());
  if (key.back() == '.') key.remove_suffix(1);  // "example.com." is example.com
  if (const auto* found = findName(exact_, key)) return found->second;
  size_t dot = key.find('.');
  if (dot == std::string_view::npos || dot == 0) return 0;
  if (const auto* found = findName(wildcard_, key.substr(dot + 1))) return found->second;
  return 0;
}

int TlsServer::onServerName(SSL* ssl, int*, void* arg) {
  auto* server = static_cast<TlsServer*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_OK;  // no SNI: the default certificate
  size_t index = server->select(name);
  if (index != 0) SSL_set_SSL_CTX(ssl, server->contexts_[index].get());
  return SSL_TLSEXT_ERR_OK;
}

int TlsServer::onAlpn(SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
                      unsigned int in_length, void* arg) {
  // `in`: the client's protocols, each prefixed by its length. We speak h2
  // where the listener has http2 on (our preference, whatever the client's
  // order), HTTP/1.1 (and so 1.0); a client offering none goes on without ALPN.
  const auto* server = static_cast<const TlsServer*>(arg);
  if (server != nullptr && server->http2_) {
    for (unsigned int i = 0; i < in_length;) {
      unsigned int length = in[i];
      if (i + 1 + length > in_length) break;
      if (length == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
        *out = in + i + 1;
        *out_length = 2;
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + length;
    }
  }
  const unsigned char* http10 = nullptr;
  for (unsigned int i = 0; i < in_length;) {
    unsigned int length = in[i];
    if (i + 1 + length > in_length) break;
    const unsigned char* name = in + i + 1;
    if (length == 8 && memcmp(name, "http/1.1", 8) == 0) {
      *out = name;
      *out_length = 8;
      return SSL_TLSEXT_ERR_OK;
    }
    if (length == 8 && memcmp(name, "http/1.0", 8) == 0) http10 = name;
    i += 1 + length;
  }
  if (http10 != nullptr) {
    *out = http10;
    *out_length = 8;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

int TlsServer::onTicketKey(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                           EVP_MAC_CTX* mac, int encrypt) {
  TlsServer* server = serverOf(ssl);
  if (server == nullptr || server->keys_ == nullptr) return 0;
  const uint64_t now = static_cast<uint64_t>(time(nullptr));
  if (encrypt == 1) {
    const TicketKeys::Key& key = server->keys_->current(now);
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) return -1;
    memcpy(name, key.name, sizeof key.name);
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv) != 1) return -1;
    return setMacKey(mac, key.hmac) ? 1 : -1;
  }
  bool previous = false;
  const TicketKeys::Key* key = server->keys_->find(name, now, &previous);
  if (key == nullptr) return 0;  // unknown or expired key: a full handshake
  if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key->aes, iv) != 1) return -1;
  if (!setMacKey(mac, key->hmac)) return -1;
  return previous ? 2 : 1;  // 2: valid, but issue a ticket under the current key
}

// ---- Checks for -t ----------------------------------------------------------------

std::vector<std::string> checkTlsFiles(const Config& config) {
  std::vector<std::string> errors;
  for (const ListenConfig& listen : config.listen) {
    if (listen.tls) TlsServer::create(*listen.tls, nullptr, &errors);
  }
  for (const UpstreamConfig& upstream : config.upstreams) {
    if (!upstream.tls.enabled) continue;
    std::string why;
    if (!UpstreamTls::create(upstream.tls, &why)) errors.push_back(why);
  }
  return errors;
}

}  // namespace poolgate
