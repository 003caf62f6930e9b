// LogThrottle: keeps one recurring failure from flooding the error log.
//
// An upstream that is down, or a worker out of descriptors, fails the same way
// thousands of times a second. The first `burst` occurrences are logged in
// full; while the failure keeps recurring, the rest are only counted, and one
// summary line per interval says how many there were and the last reason:
//
//   upstream 127.0.0.1:5000: 35112 more errors in the last 1.0 s (last: connect: Connection refused)
//
// An interval with no occurrence ends the episode: the next failure is logged
// in full again. So an outage costs a few lines plus one line per second per
// worker, whatever the request rate.
#pragma once

#include <cstdint>
#include <string>

#include "core/log_level.h"
#include "core/timer.h"

namespace poolgate {

class LogThrottle {
 public:
  static constexpr uint64_t kIntervalMs = 1000;
  static constexpr uint32_t kBurst = 3;

  // `subject` starts the summary line ("upstream 127.0.0.1:5000"); `what`
  // names the occurrences in it ("errors").
  LogThrottle(TimerQueue& timers, LogLevel level, std::string subject, const char* what,
              uint64_t interval_ms = kIntervalMs, uint32_t burst = kBurst);
  LogThrottle(const LogThrottle&) = delete;
  LogThrottle& operator=(const LogThrottle&) = delete;

  // One occurrence. true: the caller logs it in full now. false: it was
  // counted for the summary; `reason` (copied) is shown there if it is the last.
  bool admit(const char* reason);

  uint64_t suppressed() const { return suppressed_; }  // in the current interval
  bool summarising() const { return summarising_; }

 private:
  void onInterval();

  Timer timer_;
  LogLevel level_;
  std::string subject_;
  const char* what_;
  uint64_t interval_ms_;
  uint32_t burst_;
  uint32_t logged_ = 0;        // full lines in the current episode
  uint64_t suppressed_ = 0;    // counted since the last summary
  uint64_t occurrences_ = 0;   // in the current interval
  bool summarising_ = false;   // past the burst: only summaries until a quiet interval
  char last_reason_[96] = "";
};

}  // namespace poolgate
