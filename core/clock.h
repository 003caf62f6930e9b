// Clocks in milliseconds. Monotonic for timeouts, realtime for display.
#pragma once

#include <time.h>

#include <cstdint>

namespace poolgate {

inline uint64_t monotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

inline uint64_t realtimeMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

// Seconds from the configuration (float) to whole milliseconds, at least 1 when > 0.
inline uint64_t secondsToMs(double seconds) {
  if (seconds <= 0) return 0;
  uint64_t ms = static_cast<uint64_t>(seconds * 1000.0 + 0.5);
  return ms == 0 ? 1 : ms;
}

}  // namespace poolgate
