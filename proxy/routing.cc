#include "proxy/routing.h"

#include "http/parser.h"

namespace poolgate {

namespace {

bool hostMatches(std::string_view pattern, std::string_view host) {
  if (pattern == "*") return true;
  if (pattern.size() > 2 && pattern.substr(0, 2) == "*.") {
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    if (host.size() <= suffix.size()) return false;
    std::string_view tail = host.substr(host.size() - suffix.size());
    std::string_view label = host.substr(0, host.size() - suffix.size());
    return equalsIgnoreCase(tail, suffix) && label.find('.') == std::string_view::npos;
  }
  return equalsIgnoreCase(pattern, host);
}

}  // namespace

const RouteConfig* findRoute(const std::vector<RouteConfig>& routes, std::string_view host, std::string_view path) {
  const RouteConfig* best = nullptr;
  for (const RouteConfig& route : routes) {
    if (!hostMatches(route.host, host)) continue;
    if (path.substr(0, route.prefix.size()) != route.prefix) continue;
    if (best == nullptr || route.prefix.size() > best->prefix.size()) best = &route;
  }
  return best;
}

}  // namespace poolgate
