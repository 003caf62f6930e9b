#include "proxy/stats_segment.h"

#include <cstring>

namespace poolgate {

namespace {

// Writes "upstream" NUL "address" into key; false if it does not fit.
bool makeKey(std::string_view upstream, std::string_view address, char (&key)[2 * kNameBytes]) {
  if (upstream.size() + 1 + address.size() + 1 > sizeof key) return false;
  std::memset(key, 0, sizeof key);
  std::memcpy(key, upstream.data(), upstream.size());
  std::memcpy(key + upstream.size() + 1, address.data(), address.size());
  return true;
}

}  // namespace

int findSharedServer(const StatsSegment& segment, std::string_view upstream, std::string_view address) {
  char key[2 * kNameBytes];
  if (!makeKey(upstream, address, key)) return -1;
  for (size_t i = 0; i < kMaxSharedServers; ++i) {
    const SharedServer& entry = segment.shared[i];
    if (entry.used.load(std::memory_order_acquire) == 0) return -1;  // entries are added in order
    if (std::memcmp(entry.key, key, sizeof key) == 0) return static_cast<int>(i);
  }
  return -1;
}

int addSharedServer(StatsSegment& segment, std::string_view upstream, std::string_view address) {
  if (int found = findSharedServer(segment, upstream, address); found >= 0) return found;
  for (size_t i = 0; i < kMaxSharedServers; ++i) {
    SharedServer& entry = segment.shared[i];
    if (entry.used.load(std::memory_order_relaxed) != 0) continue;
    makeKey(upstream, address, entry.key);
    entry.conns.store(0, std::memory_order_relaxed);
    entry.waiters.store(0, std::memory_order_relaxed);
    entry.used.store(1, std::memory_order_release);
    return static_cast<int>(i);
  }
  return -1;
}

}  // namespace poolgate
