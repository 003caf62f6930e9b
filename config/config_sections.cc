// The key tables of the sections that set up listeners and the process:
// log, listen (and its tls), admin, resolver, timeouts, limits, buffering.
// In the order of the README's reference; declared in config_sections.h.
#include <sys/stat.h>
#include <unistd.h>

#include "config/config_sections.h"

namespace poolgate::config_internal {

namespace {

void readErrorLog(Loader& loader, const Node& node, LogConfig& out) {
  std::string value;
  if (!readString(loader, node, &value)) return;
  if (value.empty()) {
    loader.error(node, "must not be empty (a path or \"stderr\")");
  } else {
    out.error = value;
  }
}

}  // namespace

const Keys<LogConfig>& logKeys() {
  static const Keys<LogConfig> keys = {
      {"level", choice(&LogConfig::level,
                       {LogLevel::kError, LogLevel::kWarn, LogLevel::kInfo, LogLevel::kDebug})},
      {"error", readErrorLog},
      {"access", text(&LogConfig::access)},
      {"access_format",
       choice(&LogConfig::access_format, {AccessFormat::kCombined, AccessFormat::kJson})},
  };
  return keys;
}

namespace {

const Keys<CertificateConfig>& certificateKeys() {
  static const Keys<CertificateConfig> keys = {
      {"cert", located(path(&CertificateConfig::cert, true), &CertificateConfig::cert_origin), true},
      {"key", located(path(&CertificateConfig::key, true), &CertificateConfig::key_origin), true},
  };
  return keys;
}

const Keys<ListenTlsConfig>& listenTlsKeys() {
  static const Keys<ListenTlsConfig> keys = {
      {"certificates",
       listOf(&ListenTlsConfig::certificates, groupElement(certificateKeys()),
              "at least one certificate is required"),
       true},
      {"ciphers", located(text(&ListenTlsConfig::ciphers), &ListenTlsConfig::ciphers_origin)},
      {"min_version", oneOf(&ListenTlsConfig::min_version, {"TLSv1.2", "TLSv1.3"})},
      {"handshake_timeout", duration(&ListenTlsConfig::handshake_timeout, true)},
  };
  return keys;
}

void readListenTls(Loader& loader, const Node& node, ListenConfig& out) {
  ListenTlsConfig tls;
  tls.origin = originOf(loader, node);
  if (readGroup(loader, node, listenTlsKeys(), tls)) out.tls = std::move(tls);
}

}  // namespace

const Keys<ListenConfig>& listenKeys() {
  static const Keys<ListenConfig> keys = {
      {"address", address(&ListenConfig::address, AddressUse::kListener), true},
      {"backlog", integer(&ListenConfig::backlog, {.min = 1})},
      {"defer_accept", duration(&ListenConfig::defer_accept)},
      {"nodelay", flag(&ListenConfig::nodelay)},
      {"http2", flag(&ListenConfig::http2)},
      {"tls", readListenTls},
  };
  return keys;
}


namespace {

// admin.allow: an array [ ] or list ( ) of "ADDRESS" or "ADDRESS/PREFIX"
// strings, IPv4 or IPv6. Each bad entry is reported at its own index.
void readAdminAllow(Loader& loader, const Node& node, AdminConfig& out) {
  if (!expectType(loader, node, {Setting::TypeArray, Setting::TypeList},
                  "an array [ ] of addresses or CIDR ranges")) {
    return;
  }
  if (node.size() == 0) {
    loader.error(node, "empty: no client could use the admin listener (omit allow for loopback "
                       "only, or omit admin for no admin listener)");
    return;
  }
  std::vector<IpRange> ranges;
  bool ok = true;
  for (int i = 0; i < node.size(); ++i) {
    Node child = node.child(i);
    loader.visit(child);
    std::string text;
    if (!readString(loader, child, &text)) {
      ok = false;
      continue;
    }
    std::string why;
    std::optional<IpRange> range = parseIpRange(text, &why);
    if (!range) {
      loader.error(child, "bad address or CIDR range " + inQuotes(text) + ": " + why);
      ok = false;
      continue;
    }
    ranges.push_back(*range);
  }
  if (ok) out.allow = std::move(ranges);
}

}  // namespace

const Keys<AdminConfig>& adminKeys() {
  static const Keys<AdminConfig> keys = {
      {"address",
       located(address(&AdminConfig::address, AddressUse::kListener), &AdminConfig::address_origin),
       true},
      {"allow", readAdminAllow},
  };
  return keys;
}

namespace {

void readResolverServer(Loader& loader, const Node& node, HostPort& out) {
  readAddress(loader, node, &out, AddressUse::kResolver);
}

}  // namespace

const Keys<ResolverConfig>& resolverKeys() {
  static const Keys<ResolverConfig> keys = {
      {"servers", listOf(&ResolverConfig::servers, ElementFn<HostPort>(readResolverServer))},
      {"timeout", duration(&ResolverConfig::timeout, true)},
  };
  return keys;
}

const Keys<TimeoutsConfig>& timeoutKeys() {
  static const Keys<TimeoutsConfig> keys = {
      {"client_header", duration(&TimeoutsConfig::client_header)},
      {"client_body", duration(&TimeoutsConfig::client_body)},
      {"client_keepalive", duration(&TimeoutsConfig::client_keepalive)},
      {"client_send", duration(&TimeoutsConfig::client_send)},
      {"upstream_connect", duration(&TimeoutsConfig::upstream_connect)},
      {"upstream_read", duration(&TimeoutsConfig::upstream_read)},
      {"upstream_send", duration(&TimeoutsConfig::upstream_send)},
  };
  return keys;
}

const Keys<LimitsConfig>& limitKeys() {
  static const Keys<LimitsConfig> keys = {
      {"max_request_line", integer(&LimitsConfig::max_request_line, {.min = 1})},
      {"max_header_bytes", integer(&LimitsConfig::max_header_bytes, {.min = 1})},
      {"max_headers", integer(&LimitsConfig::max_headers, {.min = 1})},
      {"max_body_bytes", integer(&LimitsConfig::max_body_bytes)},
  };
  return keys;
}

const Keys<Http2Config>& http2Keys() {
  // The window and the header list are bounded by what the protocol allows
  // (2^31-1) and by what one stream may make a worker hold.
  static const Keys<Http2Config> keys = {
      {"max_concurrent_streams", integer(&Http2Config::max_concurrent_streams, {.min = 1, .max = 65536, .bounded = true})},
      {"initial_window_bytes",
       integer(&Http2Config::initial_window_bytes, {.min = 1024, .max = 16 * 1024 * 1024, .bounded = true})},
      {"max_header_list_bytes",
       integer(&Http2Config::max_header_list_bytes, {.min = 1024, .max = 1024 * 1024, .bounded = true})},
  };
  return keys;
}

namespace {

// A directory that exists and that we may write into: temporary files are
// opened there under load, when it is too late to say the path is wrong.
void readTempPath(Loader& loader, const Node& node, BufferingConfig& out) {
  std::string value;
  if (!readString(loader, node, &value)) return;
  struct stat info {};
  if (value.empty() || ::stat(value.c_str(), &info) != 0 || !S_ISDIR(info.st_mode) ||
      ::access(value.c_str(), W_OK | X_OK) != 0) {
    loader.error(node, inQuotes(value) + " is not a directory this process can write into");
    return;
  }
  out.temp_path = value;
}

}  // namespace

const Keys<BufferingConfig>& bufferingKeys() {
  static const Keys<BufferingConfig> keys = {
      {"request", flag(&BufferingConfig::request)},
      {"response", flag(&BufferingConfig::response)},
      {"memory", integer(&BufferingConfig::memory)},
      {"max_temp_file", integer(&BufferingConfig::max_temp_file)},
      {"worker_memory", integer(&BufferingConfig::worker_memory)},
      {"temp_path", readTempPath},
  };
  return keys;
}

}  // namespace poolgate::config_internal
