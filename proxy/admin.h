// The admin listener's answers: /stats, /metrics, /health and the dashboard.
#pragma once

#include <string>
#include <string_view>

#include "shm/stats_segment.h"

namespace poolgate {

struct AdminAnswer {
  int status = 200;
  std::string_view content_type;
  std::string_view headers;  // whole header lines, each ending in CRLF
  std::string body;
};

AdminAnswer answerAdmin(const StatsSegment& segment, std::string_view path);

// Sent with every admin answer but the dashboard (JSON, metrics, health, and
// the admin listener's errors, 403 included): the browser must not guess
// another type, frame the answer, or load anything on its behalf.
inline constexpr std::string_view kAdminHeaders =
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n";

// The dashboard's: the same, with the policy that lets its own script and
// style run (dashboardContentSecurityPolicy()). Built on the first call;
// workers call it at start so that no request pays for the hashing.
std::string_view dashboardHeaders();

}  // namespace poolgate
