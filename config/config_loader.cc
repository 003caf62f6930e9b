// Reading a libconfig file into the typed Config of config.h: the top-level
// key table, the checks across sections, and parsing. The sections' tables are
// in config_sections.h; the machinery they are all written with (Loader, Node,
// typed readers, Keys) is in config_reader.h.
//
// Every group is read through a table of its known keys: a setting whose name
// is not in the table is an error, a known one is handed to a typed reader that
// checks its type and range. Errors are collected, each located as
// "file:line: path: what", and thrown together as one ConfigError once the
// whole file has been read. Paths read like C++: "upstreams[0].pool.max_idle".
#include <algorithm>
#include <cstring>
#include <libconfig.h++>

#include "config/config.h"
#include "config/config_reader.h"
#include "config/config_sections.h"

namespace poolgate {
namespace {

using namespace config_internal;

// ---------------------------------------------------------------------------
// The top level.

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
      {"http2", group(&Config::http2, http2Keys())},
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
