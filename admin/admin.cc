#include "admin/admin.h"

#include <signal.h>

#include "admin/admin_render.h"
#include "core/clock.h"
#include "version.h"

namespace poolgate {

namespace {

bool masterAlive(const StatsSegment& segment) {
  int pid = segment.header.master_pid.load(std::memory_order_relaxed);
  return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

size_t runningWorkers(const StatsSegment& segment) {
  size_t running = 0;
  for (const WorkerSlot& slot : segment.workers) {
    if (slot.state.load(std::memory_order_relaxed) == static_cast<uint32_t>(SlotState::kRunning)) ++running;
  }
  return running;
}

}  // namespace

std::string_view dashboardHeaders() {
  static const std::string headers = "X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n"
                                     "Content-Security-Policy: " +
                                     dashboardContentSecurityPolicy() + "\r\n";
  return headers;
}

AdminAnswer answerAdmin(const StatsSegment& segment, std::string_view path) {
  AdminAnswer answer;
  answer.headers = kAdminHeaders;
  RenderContext context{POOLGATE_VERSION, realtimeMs(), monotonicMs()};
  if (path == "/stats") {
    answer.content_type = "application/json";
    renderStatsJson(segment, context, answer.body);
  } else if (path == "/metrics") {
    answer.content_type = "text/plain; version=0.0.4; charset=utf-8";
    renderMetrics(segment, context, answer.body);
  } else if (path == "/health") {
    answer.content_type = "text/plain";
    if (masterAlive(segment) && runningWorkers(segment) > 0) {
      answer.body = "ok\n";
    } else {
      answer.status = 503;
      answer.body = "unavailable\n";
    }
  } else if (path == "/" || path == "/index.html") {
    answer.content_type = "text/html; charset=utf-8";
    answer.headers = dashboardHeaders();
    renderDashboard(context, answer.body);
  } else {
    answer.status = 404;
    answer.content_type = "text/plain";
    answer.body = "404 Not Found\n";
  }
  return answer;
}

}  // namespace poolgate
