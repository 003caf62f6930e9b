// The immutable, typed configuration of one generation of poolgate.
//
// Built once by loadConfigFile() (or defaultConfig()), validated as a whole,
// then shared read-only by the master and every worker it forks. Nothing in
// here is changed after loading: a reload builds a new Config.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/ip_range.h"
#include "core/log_level.h"

namespace poolgate {

enum class AcceptMode { kReuseport, kExclusive, kShared, kMutex, kHandoff };
enum class AccessFormat { kCombined, kJson };
enum class Balance { kRoundRobin, kLeastConn, kRandomTwo, kHash };

const char* toString(AcceptMode mode);
const char* toString(LogLevel level);
const char* toString(Balance balance);
const char* toString(AccessFormat format);

// "host:port", "[v6]:port" or "name:port" split into its parts.
struct HostPort {
  std::string host;       // without brackets
  uint16_t port = 0;      // 0 allowed for listeners: the kernel picks one
  bool numeric = false;   // host is an IPv4 or IPv6 literal
  bool ipv6 = false;      // host is an IPv6 literal
  std::string text;       // as written in the file
};

// Parses "127.0.0.1:80", "[::1]:80", "*:80" (any IPv4), "name:80".
// Returns std::nullopt with *why set when the text is not an address.
std::optional<HostPort> parseHostPort(const std::string& text, std::string* why);

// Where a setting is written, as messages about it start:
// "file:line: listen[0].tls.certificates[0].key". Checks made after loading
// (a certificate file that does not load, say) report through it.
using SettingOrigin = std::string;

struct CertificateConfig {
  std::string cert;  // path, relative paths taken from the config file's folder
  std::string key;
  SettingOrigin cert_origin;
  SettingOrigin key_origin;
};

struct ListenTlsConfig {
  std::vector<CertificateConfig> certificates;  // at least one; first is the default
  std::string ciphers;                          // "" = OpenSSL's default
  std::string min_version = "TLSv1.2";          // TLSv1.2 | TLSv1.3
  double handshake_timeout = 10.0;
  SettingOrigin origin;          // of the tls group
  SettingOrigin ciphers_origin;  // of ciphers, when written
};

struct ListenConfig {
  HostPort address;
  int backlog = 511;
  double defer_accept = 0;  // TCP_DEFER_ACCEPT: accept only once data arrives, waiting up to this (0 = off)
  bool nodelay = true;      // TCP_NODELAY on accepted client connections
  // HTTP/2 to clients: with TLS, ALPN offers h2 before http/1.1; plain, a
  // client may open with the HTTP/2 preface (prior knowledge, h2c) or speak
  // HTTP/1.1. Off by default: ALPN then selects http/1.1 only.
  bool http2 = false;
  std::optional<ListenTlsConfig> tls;
};

struct AdminConfig {
  HostPort address;
  SettingOrigin address_origin;
  // Clients allowed to use the admin listener; the others get 403. Empty (no
  // `allow` key) means loopback only (127.0.0.0/8 and ::1). Written as an
  // empty list it is a configuration error, so empty always means the default.
  std::vector<IpRange> allow;

  // Whether a client at `peer` may use the admin listener.
  bool allows(const sockaddr* peer) const;
};

struct LogConfig {
  LogLevel level = LogLevel::kInfo;
  std::string error = "stderr";  // path or "stderr"
  std::string access;            // path, "stdout", or "" (off)
  AccessFormat access_format = AccessFormat::kCombined;
};

struct ResolverConfig {
  std::vector<HostPort> servers;  // empty = /etc/resolv.conf
  double timeout = 2.0;
};

struct TimeoutsConfig {
  double client_header = 10.0;
  double client_body = 30.0;
  double client_keepalive = 60.0;
  double client_send = 30.0;
  double upstream_connect = 5.0;
  double upstream_read = 60.0;
  double upstream_send = 30.0;
};

struct LimitsConfig {
  uint32_t max_request_line = 8192;
  uint32_t max_header_bytes = 32768;
  uint32_t max_headers = 100;
  uint64_t max_body_bytes = 104857600;  // 0 = unlimited
};

// HTTP/2 connections (listen[].http2): what poolgate announces in its
// SETTINGS, and the limits it holds clients to.
struct Http2Config {
  uint32_t max_concurrent_streams = 128;  // SETTINGS_MAX_CONCURRENT_STREAMS
  uint32_t initial_window_bytes = 65535;  // SETTINGS_INITIAL_WINDOW_SIZE, per stream
  uint32_t max_header_list_bytes = 32768; // SETTINGS_MAX_HEADER_LIST_SIZE, enforced on decoded fields
};

// Request and response buffering: a request body is received whole before an
// upstream connection is taken; what the upstream sends faster than the
// client reads is kept (memory, then an unlinked temporary file), so the
// upstream connection is released as soon as the response is complete.
struct BufferingConfig {
  bool request = true;                      // per route: routes[].request_buffering
  bool response = true;                     // per route: routes[].response_buffering
  uint64_t memory = 262144;                 // per body, in memory
  uint64_t max_temp_file = 1073741824;      // per body, on disk (0 = never: memory, then streaming)
  uint64_t worker_memory = 67108864;        // all bodies of a worker together, in memory
  std::string temp_path = "/tmp";           // directory of the temporary files
};

struct PoolConfig {
  uint32_t max_idle = 32;   // idle connections kept for a while (0 = none: never pooled)
  double trim_after = 1.0;  // surplus idle connections (beyond max_idle) closed after this idle time
  uint32_t max_conns = 0;
  double queue_timeout = 5.0;
  double idle_timeout = 60.0;
  uint64_t max_requests = 0;
  double max_lifetime = 0.0;
};

struct HealthConfig {
  uint32_t max_fails = 1;
  double fail_timeout = 10.0;
  std::string check_path;  // "" = no active check
  double check_interval = 5.0;
};

struct UpstreamTlsConfig {
  bool enabled = false;
  bool verify = true;
  std::string ca_file;
  std::string server_name;
  SettingOrigin origin;          // of the tls group, when written
  SettingOrigin ca_file_origin;  // of ca_file, when written
};

struct ServerConfig {
  HostPort address;
  uint32_t weight = 1;
};

struct UpstreamConfig {
  std::string name;
  std::vector<ServerConfig> servers;  // at least one
  Balance balance = Balance::kRoundRobin;
  std::string hash_key;  // "ip" or "header:NAME" when balance is hash
  PoolConfig pool;
  HealthConfig health;
  uint32_t retries = 1;
  UpstreamTlsConfig tls;
  double dns_refresh = 0.0;
};

struct RouteConfig {
  std::string host = "*";   // "*", an exact name, or "*.example.com"; lowercased
  std::string prefix = "/";
  std::string upstream;
  size_t upstream_index = 0;  // index into Config::upstreams, resolved at load
  bool request_buffering = true;   // false: stream request bodies (uploads the app reads as they come)
  bool response_buffering = true;  // false: stream (server-sent events, long polls...)
};

// Upper bound of Config::workers (and of effectiveWorkers()).
inline constexpr uint32_t kMaxWorkers = 64;

struct Config {
  std::string source_file;  // "" for the built-in default

  uint32_t workers = 0;  // 0 = one per CPU; see effectiveWorkers()
  AcceptMode accept_mode = AcceptMode::kReuseport;
  uint32_t worker_connections = 10000;
  // Descriptors a worker keeps free below its RLIMIT_NOFILE for what its
  // accepted clients need next (upstream connections); it stops accepting
  // before eating into them. 0 = automatic: an eighth of the limit, at least 16.
  uint32_t fd_reserve = 0;
  uint64_t max_requests_per_worker = 0;
  double shutdown_timeout = 30.0;
  std::string pid_file;

  LogConfig log;
  std::vector<ListenConfig> listen;  // at least one
  std::optional<AdminConfig> admin;
  ResolverConfig resolver;
  TimeoutsConfig timeouts;
  LimitsConfig limits;
  BufferingConfig buffering;
  Http2Config http2;
  std::vector<UpstreamConfig> upstreams;  // at least one
  // Always filled after loading: with exactly one upstream and no routes in the
  // file, one catch-all route { "*", "/", that upstream } is added.
  std::vector<RouteConfig> routes;

  // workers, or the number of online CPUs (1..kMaxWorkers) when workers is 0.
  uint32_t effectiveWorkers() const;
};

// Things that are allowed but probably not meant, each "file:line:
// setting.path: what": an admin listener on a non-loopback address without an
// `allow` list (it answers loopback clients only). `poolgate -t` prints them
// and the master logs them at start-up and on reload.
std::vector<std::string> configWarnings(const Config& config);

// Every problem found in a file, each "file:line: setting.path: what is wrong".
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<std::string> messages);
  const std::vector<std::string>& messages() const { return messages_; }

 private:
  std::vector<std::string> messages_;
};

// Reads and validates a libconfig file. Throws ConfigError listing every error
// found (syntax errors stop at the first one, as libconfig does).
Config loadConfigFile(const std::string& path);

// Same, from text already in memory; `name` is used in messages.
Config loadConfigText(const std::string& text, const std::string& name);

// The built-in default (README "Configuration"): listen 127.0.0.1:8080, admin 127.0.0.1:9901,
// one upstream "app" with server 127.0.0.1:5000, one worker per CPU.
Config defaultConfig();

}  // namespace poolgate
