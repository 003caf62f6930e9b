// The key tables of the configuration's sections, which config_loader.cc's
// top-level table reads them through. Private to config/.
//
// Listeners and the process (config_sections.cc): log, listen, admin,
// resolver, timeouts, limits, buffering. Upstreams and routes
// (config_upstreams.cc).
#pragma once

#include "config/config.h"
#include "config/config_reader.h"

namespace poolgate::config_internal {

const Keys<LogConfig>& logKeys();
const Keys<ListenConfig>& listenKeys();
const Keys<AdminConfig>& adminKeys();
const Keys<ResolverConfig>& resolverKeys();
const Keys<TimeoutsConfig>& timeoutKeys();
const Keys<LimitsConfig>& limitKeys();
const Keys<Http2Config>& http2Keys();
const Keys<BufferingConfig>& bufferingKeys();

// One element of `upstreams`: its table, then the checks across its keys
// (hash_key is required when balance is "hash").
void readUpstream(Loader& loader, const Node& node, UpstreamConfig& out);
const Keys<RouteConfig>& routeKeys();

}  // namespace poolgate::config_internal
