// The key tables of the upstreams (servers, pool, health, tls, dns) and of
// the routes; declared in config_sections.h.
#include <algorithm>
#include <cctype>

#include "config/config_sections.h"

namespace poolgate::config_internal {

namespace {

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

}  // namespace

void readUpstream(Loader& loader, const Node& node, UpstreamConfig& out) {
  if (!readGroup(loader, node, upstreamKeys(), out)) return;
  if (out.balance == Balance::kHash && hashKeyLeftEmpty(node)) {
    loader.error(joinPath(node.path, "hash_key"),
                 "required when balance is \"hash\" (\"ip\" or \"header:NAME\")");
  }
}

namespace {


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

}  // namespace

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

}  // namespace poolgate::config_internal
