// The admin listener's answers: /stats, /metrics, /health and the dashboard.
#pragma once

#include <string>
#include <string_view>

#include "proxy/stats_segment.h"

namespace poolgate {

struct AdminAnswer {
  int status = 200;
  std::string_view content_type;
  std::string body;
};

AdminAnswer answerAdmin(const StatsSegment& segment, std::string_view path);

}  // namespace poolgate
