#include "core/log_throttle.h"

#include <cstdio>

#include "core/log.h"

namespace poolgate {

LogThrottle::LogThrottle(TimerQueue& timers, LogLevel level, std::string subject, const char* what,
                         uint64_t interval_ms, uint32_t burst)
    : timer_(timers, [this] { onInterval(); }),
      level_(level),
      subject_(std::move(subject)),
      what_(what),
      interval_ms_(interval_ms),
      burst_(burst) {}

bool LogThrottle::admit(const char* reason) {
  ++occurrences_;
  if (!timer_.armed()) timer_.arm(interval_ms_);  // a new episode starts
  if (!summarising_ && logged_ < burst_) {
    ++logged_;
    return true;
  }
  summarising_ = true;
  ++suppressed_;
  snprintf(last_reason_, sizeof last_reason_, "%s", reason != nullptr ? reason : "");
  return false;
}

void LogThrottle::onInterval() {
  if (suppressed_ > 0) {
    PG_LOG(level_, "%s: %llu more %s in the last %.1f s (last: %s)", subject_.c_str(),
           static_cast<unsigned long long>(suppressed_), what_, static_cast<double>(interval_ms_) / 1000.0,
           last_reason_);
  }
  const bool quiet = occurrences_ == 0;
  suppressed_ = 0;
  occurrences_ = 0;
  if (quiet) {  // the episode is over: the next occurrence is logged in full
    summarising_ = false;
    logged_ = 0;
    return;
  }
  timer_.arm(interval_ms_);
}

}  // namespace poolgate
