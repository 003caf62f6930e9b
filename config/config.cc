// The small, libconfig-free parts of config.h: enum names, addresses, the
// built-in default and ConfigError. Reading files lives in config_loader.cc.
#include "config/config.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include "core/socket.h"

namespace poolgate {

const char* toString(AcceptMode mode) {
  switch (mode) {
    case AcceptMode::kReuseport: return "reuseport";
    case AcceptMode::kExclusive: return "exclusive";
    case AcceptMode::kShared: return "shared";
    case AcceptMode::kMutex: return "mutex";
    case AcceptMode::kHandoff: return "handoff";
  }
  return "?";
}

const char* toString(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kInfo: return "info";
    case LogLevel::kDebug: return "debug";
  }
  return "?";
}

const char* toString(Balance balance) {
  switch (balance) {
    case Balance::kRoundRobin: return "round_robin";
    case Balance::kLeastConn: return "least_conn";
    case Balance::kRandomTwo: return "random_two";
    case Balance::kHash: return "hash";
  }
  return "?";
}

const char* toString(AccessFormat format) {
  switch (format) {
    case AccessFormat::kCombined: return "combined";
    case AccessFormat::kJson: return "json";
  }
  return "?";
}

namespace {

bool fail(std::string* why, const std::string& what) {
  if (why != nullptr) *why = what;
  return false;
}

bool parsePort(const std::string& text, uint16_t* port, std::string* why) {
  if (text.empty()) return fail(why, "missing port");
  uint32_t value = 0;
  for (char c : text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) {
      return fail(why, "port \"" + text + "\" is not a number");
    }
    value = value * 10 + static_cast<uint32_t>(c - '0');
    if (value > 65535) return fail(why, "port " + text + " is out of range (0..65535)");
  }
  *port = static_cast<uint16_t>(value);
  return true;
}

bool isIpv4(const std::string& host) {
  in_addr addr;
  return inet_pton(AF_INET, host.c_str(), &addr) == 1;
}

bool isIpv6(const std::string& host) {
  in6_addr addr;
  return inet_pton(AF_INET6, host.c_str(), &addr) == 1;
}

// Letters, digits, '-', '_' and '.': what a DNS name may hold.
bool isHostName(const std::string& host) {
  return std::all_of(host.begin(), host.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// "[v6]:port".
bool splitBracketed(const std::string& text, HostPort* out, std::string* why) {
  size_t close = text.find(']');
  if (close == std::string::npos) return fail(why, "'[' without a matching ']'");
  out->host = text.substr(1, close - 1);
  if (out->host.empty()) return fail(why, "empty host");
  if (!isIpv6(out->host)) return fail(why, "\"" + out->host + "\" is not an IPv6 address");
  if (close + 1 >= text.size() || text[close + 1] != ':') {
    return fail(why, "missing port (expected [v6]:port)");
  }
  if (!parsePort(text.substr(close + 2), &out->port, why)) return false;
  out->numeric = true;
  out->ipv6 = true;
  return true;
}

// "host:port" where host is an IPv4 literal, "*" or a name.
bool splitPlain(const std::string& text, HostPort* out, std::string* why) {
  if (text.find(']') != std::string::npos) return fail(why, "']' without a matching '['");
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) return fail(why, "missing port (expected host:port)");
  out->host = text.substr(0, colon);
  if (out->host.empty()) return fail(why, "empty host");
  if (out->host.find(':') != std::string::npos) {
    return fail(why, "an IPv6 address must be written in brackets, as [::1]:80");
  }
  if (!parsePort(text.substr(colon + 1), &out->port, why)) return false;
  if (out->host == "*") {
    out->host = "0.0.0.0";
    out->numeric = true;
  } else if (isIpv4(out->host)) {
    out->numeric = true;
  } else if (!isHostName(out->host)) {
    return fail(why, "\"" + out->host + "\" is not a valid host name");
  }
  return true;
}

}  // namespace

std::optional<HostPort> parseHostPort(const std::string& text, std::string* why) {
  HostPort result;
  result.text = text;
  if (text.empty()) {
    fail(why, "empty address");
    return std::nullopt;
  }
  bool ok = text[0] == '[' ? splitBracketed(text, &result, why) : splitPlain(text, &result, why);
  if (!ok) return std::nullopt;
  return result;
}

uint32_t Config::effectiveWorkers() const {
  if (workers != 0) return workers;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus < 1) return 1;
  return static_cast<uint32_t>(std::min<long>(cpus, kMaxWorkers));
}

namespace {

std::string joinLines(const std::vector<std::string>& lines) {
  std::string joined;
  for (const std::string& line : lines) {
    if (!joined.empty()) joined += '\n';
    joined += line;
  }
  return joined;
}

HostPort mustParse(const std::string& text) {
  std::optional<HostPort> address = parseHostPort(text, nullptr);
  return *address;  // only called with the constants below
}

}  // namespace

ConfigError::ConfigError(std::vector<std::string> messages)
    : std::runtime_error(joinLines(messages)), messages_(std::move(messages)) {}

bool AdminConfig::allows(const sockaddr* peer) const {
  return allow.empty() ? isLoopback(peer) : matchesAny(allow, peer);
}

std::vector<std::string> configWarnings(const Config& config) {
  std::vector<std::string> warnings;
  if (config.admin && config.admin->allow.empty()) {
    const HostPort& address = config.admin->address;
    SocketAddress bound;
    if (makeSocketAddress(address.host, address.port, &bound) && !isLoopback(bound.get())) {
      const std::string where = config.admin->address_origin.empty() ? "admin.address"
                                                                      : config.admin->address_origin;
      warnings.push_back(where + ": the admin listener is on " + address.text +
                         ", not a loopback address, and has no allow list: it answers loopback "
                         "clients only (403 to the others); set admin.allow to admit others");
    }
  }
  return warnings;
}

Config defaultConfig() {
  Config config;
  ListenConfig listen;
  listen.address = mustParse("127.0.0.1:8080");
  config.listen.push_back(std::move(listen));
  config.admin.emplace();
  config.admin->address = mustParse("127.0.0.1:9901");

  UpstreamConfig app;
  app.name = "app";
  app.servers.emplace_back();
  app.servers[0].address = mustParse("127.0.0.1:5000");
  config.upstreams.push_back(std::move(app));

  RouteConfig route;
  route.upstream = "app";
  config.routes.push_back(std::move(route));
  return config;
}

}  // namespace poolgate
