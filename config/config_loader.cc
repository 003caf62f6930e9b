// Reading a libconfig file into the typed Config of config.h: the key tables
// of every section, the checks across sections, and parsing. The machinery
// they are written with (Loader, Node, typed readers, Keys) is in
// config_reader.h.
//
// Every group is read through a table of its known keys: a setting whose name
// is not in the table is an error, a known one is handed to a typed reader that
// checks its type and range. Errors are collected, each located as
// "file:line: path: what", and thrown together as one ConfigError once the
// whole file has been read. Paths read like C++: "upstreams[0].pool.max_idle".
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <libconfig.h++>

#include "config/config.h"
#include "config/config_reader.h"

namespace poolgate {
namespace {

using namespace config_internal;

// ---------------------------------------------------------------------------
// The tables, section by section, in the order of the README's reference.

void readErrorLog(Loader& loader, const Node& node, LogConfig& out) {
  std::string value;
  if (!readString(loader, node, &value)) return;
  if (value.empty()) {
    loader.error(node, "must not be empty (a path or \"stderr\")");
  } else {
    out.error = value;
  }
}

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

const Keys<ListenConfig>& listenKeys() {
  static const Keys<ListenConfig> keys = {
      {"address", address(&ListenConfig::address, AddressUse::kListener), true},
      {"backlog", integer(&ListenConfig::backlog, {.min = 1})},
      {"defer_accept", duration(&ListenConfig::defer_accept)},
      {"nodelay", flag(&ListenConfig::nodelay)},
      {"tls", readListenTls},
  };
  return keys;
}

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

const Keys<AdminConfig>& adminKeys() {
  static const Keys<AdminConfig> keys = {
      {"address",
       located(address(&AdminConfig::address, AddressUse::kListener), &AdminConfig::address_origin),
       true},
      {"allow", readAdminAllow},
  };
  return keys;
}

void readResolverServer(Loader& loader, const Node& node, HostPort& out) {
  readAddress(loader, node, &out, AddressUse::kResolver);
}

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

const Keys<ServerConfig>& serverKeys() {
  static const Keys<ServerConfig> keys = {
      {"address", address(&ServerConfig::address, AddressUse::kServer), true},
      {"weight", integer(&ServerConfig::weight, {.min = 1, .max = 65535})},
  };
  return keys;
}

const Keys<PoolConfig>& poolKeys() {
  static const Keys<PoolConfig> keys = {
      {"max_idle", integer(&PoolConfig::max_idle)},
      {"trim_after", duration(&PoolConfig::trim_after)},
      {"max_conns", integer(&PoolConfig::max_conns)},
      {"queue_timeout", duration(&PoolConfig::queue_timeout)},
      {"idle_timeout", duration(&PoolConfig::idle_timeout)},
      {"max_requests", integer(&PoolConfig::max_requests)},
      {"max_lifetime", duration(&PoolConfig::max_lifetime)},
  };
  return keys;
}

void readCheckPath(Loader& loader, const Node& node, HealthConfig& out) {
  std::string value;
  if (!readString(loader, node, &value)) return;
  if (!value.empty() && value[0] != '/') {
    loader.error(node, "must be \"\" or start with '/'");
  } else {
    out.check_path = value;
  }
}

const Keys<HealthConfig>& healthKeys() {
  static const Keys<HealthConfig> keys = {
      {"max_fails", integer(&HealthConfig::max_fails)},
      {"fail_timeout", duration(&HealthConfig::fail_timeout)},
      {"check_path", readCheckPath},
      {"check_interval", duration(&HealthConfig::check_interval, true)},
  };
  return keys;
}

const Keys<UpstreamTlsConfig>& upstreamTlsKeys() {
  static const Keys<UpstreamTlsConfig> keys = {
      {"enabled", flag(&UpstreamTlsConfig::enabled)},
      {"verify", flag(&UpstreamTlsConfig::verify)},
      {"ca_file", located(path(&UpstreamTlsConfig::ca_file), &UpstreamTlsConfig::ca_file_origin)},
      {"server_name", text(&UpstreamTlsConfig::server_name)},
  };
  return keys;
}

void readUpstreamTls(Loader& loader, const Node& node, UpstreamConfig& out) {
  out.tls.origin = originOf(loader, node);
  readGroup(loader, node, upstreamTlsKeys(), out.tls);
}

const Keys<UpstreamConfig>& dnsKeys() {
  static const Keys<UpstreamConfig> keys = {
      {"refresh", duration(&UpstreamConfig::dns_refresh)},
  };
  return keys;
}

// "" (only meaningful without hash), "ip" or "header:NAME".
void readHashKey(Loader& loader, const Node& node, UpstreamConfig& out) {
  std::string value;
  if (!readString(loader, node, &value)) return;
  const std::string header = "header:";
  bool is_header = value.rfind(header, 0) == 0 && value.size() > header.size() &&
                   std::all_of(value.begin() + header.size(), value.end(), isTokenChar);
  if (value.empty() || value == "ip" || is_header) {
    out.hash_key = value;
  } else {
    loader.error(node,
                 "unknown value " + inQuotes(value) + " (expected \"ip\" or \"header:NAME\")");
  }
}

// Names show in logs, /stats JSON and /metrics labels: keep them plain.
void readName(Loader& loader, const Node& node, UpstreamConfig& out) {
  std::string value;
  if (!readString(loader, node, &value)) return;
  if (value.empty()) {
    loader.error(node, "must not be empty");
  } else if (!std::all_of(value.begin(), value.end(), isHostNameChar)) {
    loader.error(node, "bad name " + inQuotes(value) + " (letters, digits, '-', '_' and '.' only)");
  } else {
    out.name = value;
  }
}

const Keys<UpstreamConfig>& upstreamKeys() {
  static const Keys<UpstreamConfig> keys = {
      {"name", readName, true},
      {"servers",
       listOf(&UpstreamConfig::servers, groupElement(serverKeys()),
              "at least one server is required"),
       true},
      {"balance", choice(&UpstreamConfig::balance, {Balance::kRoundRobin, Balance::kLeastConn,
                                                    Balance::kRandomTwo, Balance::kHash})},
      {"hash_key", readHashKey},
      {"pool", group(&UpstreamConfig::pool, poolKeys())},
      {"health", group(&UpstreamConfig::health, healthKeys())},
      {"retries", integer(&UpstreamConfig::retries)},
      {"tls", readUpstreamTls},
      {"dns", flatGroup(dnsKeys())},
  };
  return keys;
}

// True when hash_key is absent or written as "" (a wrong value written there
// has been reported by readHashKey already).
bool hashKeyLeftEmpty(const Node& upstream) {
  if (!upstream.has("hash_key")) return true;
  const Setting& key = upstream.setting["hash_key"];
  return key.getType() == Setting::TypeString && *static_cast<const char*>(key) == '\0';
}

void readUpstream(Loader& loader, const Node& node, UpstreamConfig& out) {
  if (!readGroup(loader, node, upstreamKeys(), out)) return;
  if (out.balance == Balance::kHash && hashKeyLeftEmpty(node)) {
    loader.error(joinPath(node.path, "hash_key"),
                 "required when balance is \"hash\" (\"ip\" or \"header:NAME\")");
  }
}

// "*", "*.example.com" or "example.com"; stored lowercased.
void readRouteHost(Loader& loader, const Node& node, RouteConfig& out) {
  std::string value;
  if (!readString(loader, node, &value)) return;
  std::string name = value.rfind("*.", 0) == 0 ? value.substr(2) : value;
  bool valid =
      value == "*" || (!name.empty() && std::all_of(name.begin(), name.end(), isHostNameChar));
  if (!valid) {
    loader.error(node, "bad host " + inQuotes(value) +
                           " (expected \"*\", a name, or \"*.\" followed by a name)");
    return;
  }
  std::transform(value.begin(), value.end(), value.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  out.host = value;
}

void readRoutePrefix(Loader& loader, const Node& node, RouteConfig& out) {
  std::string value;
  if (!readString(loader, node, &value)) return;
  if (value.empty() || value[0] != '/') {
    loader.error(node, "must start with '/'");
  } else {
    out.prefix = value;
  }
}

const Keys<RouteConfig>& routeKeys() {
  static const Keys<RouteConfig> keys = {
      {"host", readRouteHost},
      {"prefix", readRoutePrefix},
      {"upstream", text(&RouteConfig::upstream), true},
      {"request_buffering", flag(&RouteConfig::request_buffering)},
      {"response_buffering", flag(&RouteConfig::response_buffering)},
  };
  return keys;
}

// Present means an admin listener; absent leaves Config::admin empty.
void readAdmin(Loader& loader, const Node& node, Config& out) {
  AdminConfig admin;
  if (readGroup(loader, node, adminKeys(), admin)) out.admin = std::move(admin);
}

const Keys<Config>& topKeys() {
  static const Keys<Config> keys = {
      {"workers", integer(&Config::workers, {.min = 0, .max = kMaxWorkers})},
      {"accept_mode", choice(&Config::accept_mode,
                             {AcceptMode::kReuseport, AcceptMode::kExclusive, AcceptMode::kShared,
                              AcceptMode::kMutex, AcceptMode::kHandoff})},
      {"worker_connections", integer(&Config::worker_connections, {.min = 1})},
      {"fd_reserve", integer(&Config::fd_reserve)},
      {"max_requests_per_worker", integer(&Config::max_requests_per_worker)},
      {"shutdown_timeout", duration(&Config::shutdown_timeout)},
      {"pid_file", text(&Config::pid_file)},
      {"log", group(&Config::log, logKeys())},
      {"listen", listOf(&Config::listen, groupElement(listenKeys()),
                        "at least one listen address is required")},
      {"admin", readAdmin},
      {"resolver", group(&Config::resolver, resolverKeys())},
      {"timeouts", group(&Config::timeouts, timeoutKeys())},
      {"limits", group(&Config::limits, limitKeys())},
      {"buffering", group(&Config::buffering, bufferingKeys())},
      {"upstreams",
       listOf(&Config::upstreams, ElementFn<UpstreamConfig>(readUpstream),
              "at least one upstream is required"),
       true},
      {"routes", listOf(&Config::routes, groupElement(routeKeys()))},
  };
  return keys;
}

// ---------------------------------------------------------------------------
// Checks across sections, once everything is read.

void checkUniqueUpstreams(Loader& loader, const Config& config) {
  for (size_t i = 0; i < config.upstreams.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (!config.upstreams[i].name.empty() &&
          config.upstreams[i].name == config.upstreams[j].name) {
        std::string first = "upstreams[" + std::to_string(j) + "].name";
        loader.error("upstreams[" + std::to_string(i) + "].name",
                     "duplicate upstream name " + inQuotes(config.upstreams[i].name) +
                         " (first at line " + std::to_string(loader.locate(first).line) + ")");
        break;
      }
    }
  }
}

void checkUniqueListeners(Loader& loader, const Config& config) {
  auto same = [](const HostPort& a, const HostPort& b) {
    return a.port != 0 && a.port == b.port && a.host == b.host;
  };
  for (size_t i = 0; i < config.listen.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (same(config.listen[i].address, config.listen[j].address)) {
        loader.error("listen[" + std::to_string(i) + "].address",
                     "same address as listen[" + std::to_string(j) + "]");
        break;
      }
    }
    if (config.admin && same(config.admin->address, config.listen[i].address)) {
      loader.error("admin.address", "same address as listen[" + std::to_string(i) + "]");
    }
  }
}

void resolveRoutes(Loader& loader, const Node& root, Config& config) {
  if (config.upstreams.empty()) return;  // reported already
  if (config.routes.empty()) {
    if (config.upstreams.size() == 1) {
      RouteConfig catch_all;  // host "*", prefix "/"
      catch_all.upstream = config.upstreams[0].name;
      config.routes.push_back(std::move(catch_all));
    } else {
      loader.error(root.has("routes") ? "routes" : "upstreams",
                   "routes are required when there is more than one upstream");
    }
    return;
  }
  for (size_t i = 0; i < config.routes.size(); ++i) {
    RouteConfig& route = config.routes[i];
    if (route.upstream.empty()) continue;  // reported already
    auto found = std::find_if(config.upstreams.begin(), config.upstreams.end(),
                              [&](const UpstreamConfig& u) { return u.name == route.upstream; });
    if (found == config.upstreams.end()) {
      loader.error("routes[" + std::to_string(i) + "].upstream",
                   "no upstream named " + inQuotes(route.upstream));
    } else {
      route.upstream_index = static_cast<size_t>(found - config.upstreams.begin());
    }
  }
}

Config buildConfig(Loader& loader, const Node& root) {
  Config config;
  readGroup(loader, root, topKeys(), config);
  if (!root.has("listen")) config.listen = defaultConfig().listen;
  checkUniqueUpstreams(loader, config);
  checkUniqueListeners(loader, config);
  resolveRoutes(loader, root, config);
  return config;
}

// ---------------------------------------------------------------------------
// Parsing.

std::string syntaxMessage(const libconfig::ParseException& e, const std::string& text,
                          const std::string& name) {
  std::string file = sourceName(e.getFile(), name);
  bool in_text = file == name;
  std::string detail = e.getError() != nullptr ? e.getError() : "";
  if (detail.empty() || detail == "syntax error") {
    std::string near = in_text ? lineOf(text, e.getLine()) : "";
    detail = near.empty() ? "unexpected input" : "near " + inQuotes(near);
  }
  return file + ":" + std::to_string(e.getLine()) + ": syntax error: " + detail;
}

Config parseAndBuild(const std::string& text, const std::string& name) {
  libconfig::Config parsed;
  std::string include_dir = Loader::folderOf(name).string();
  parsed.setIncludeDir(include_dir.c_str());
  try {
    parsed.readString(text);
  } catch (const libconfig::ParseException& e) {
    throw ConfigError({syntaxMessage(e, text, name)});
  }
  Loader loader(name, text);
  Config config = buildConfig(loader, Node{parsed.getRoot(), ""});
  if (loader.failed()) throw ConfigError(loader.messages());
  config.source_file = name;
  return config;
}

}  // namespace

Config loadConfigText(const std::string& text, const std::string& name) {
  try {
    return parseAndBuild(text, name);
  } catch (const ConfigError&) {
    throw;
  } catch (const libconfig::ConfigException& e) {
    throw ConfigError({name + ": " + e.what()});
  } catch (const std::exception& e) {
    throw ConfigError({name + ": " + e.what()});
  }
}

Config loadConfigFile(const std::string& path) {
  std::string text;
  int error = 0;
  if (!readWholeFile(path, &text, &error)) {
    throw ConfigError({path + ": cannot read: " + std::strerror(error)});
  }
  return loadConfigText(text, path);
}

}  // namespace poolgate
