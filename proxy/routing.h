// Routing: which configured route a request takes, by Host and path.
#pragma once

#include <string_view>
#include <vector>

#include "config/config.h"

namespace poolgate {

// The first of the routes with the longest matching prefix among those whose
// host matches ("*", "*.example.com": one label, or the exact name, in any
// case). nullptr = 404.
const RouteConfig* findRoute(const std::vector<RouteConfig>& routes, std::string_view host, std::string_view path);

}  // namespace poolgate
