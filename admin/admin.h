// The admin listener's answers: /stats, /metrics, /health and the dashboard.
#pragma once

#include <string>
#include <string_view>

#include "proxy/client_host.h"
#include "shm/stats_segment.h"

namespace poolgate {

// AdminAnswer and kAdminHeaders (sent with every answer but the dashboard's)
// are in proxy/client_host.h: the client connection uses them too.
AdminAnswer answerAdmin(const StatsSegment& segment, std::string_view path);

// The dashboard's headers: those of kAdminHeaders, with the policy that lets
// its own script and style run (dashboardContentSecurityPolicy()). Built on
// the first call; workers call it at start so that no request pays for the
// hashing.
std::string_view dashboardHeaders();

}  // namespace poolgate
