#include "shm/stats_segment.h"

#include <algorithm>
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

// Tables whose entries are keyed by makeKey() and added in order, never removed.
template <class Entry, size_t N>
int findEntry(const Entry (&table)[N], std::string_view upstream, std::string_view name) {
  char key[2 * kNameBytes];
  if (!makeKey(upstream, name, key)) return -1;
  for (size_t i = 0; i < N; ++i) {
    const Entry& entry = table[i];
    if (entry.used.load(std::memory_order_acquire) == 0) return -1;  // entries are added in order
    if (std::memcmp(entry.key, key, sizeof key) == 0) return static_cast<int>(i);
  }
  return -1;
}

template <class Entry, size_t N, class Init>
int addEntry(Entry (&table)[N], std::string_view upstream, std::string_view name, Init init) {
  if (int found = findEntry(table, upstream, name); found >= 0) return found;
  for (size_t i = 0; i < N; ++i) {
    Entry& entry = table[i];
    if (entry.used.load(std::memory_order_relaxed) != 0) continue;
    if (!makeKey(upstream, name, entry.key)) return -1;
    init(entry);
    entry.used.store(1, std::memory_order_release);
    return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

const char* toString(SlotState state) {
  switch (state) {
    case SlotState::kFree: return "free";
    case SlotState::kStarting: return "starting";
    case SlotState::kRunning: return "running";
    case SlotState::kDraining: return "draining";
  }
  return "unknown";
}

int findSharedServer(const StatsSegment& segment, std::string_view upstream, std::string_view address) {
  return findEntry(segment.shared, upstream, address);
}

int addSharedServer(StatsSegment& segment, std::string_view upstream, std::string_view address) {
  return addEntry(segment.shared, upstream, address, [](SharedServer& entry) {
    entry.conns.store(0, std::memory_order_relaxed);
    entry.waiters.store(0, std::memory_order_relaxed);
    entry.tickets.next.store(1, std::memory_order_relaxed);
    for (auto& first : entry.tickets.first) first.store(0, std::memory_order_relaxed);
    entry.health.reset();
  });
}

int findSharedName(const StatsSegment& segment, std::string_view upstream, std::string_view name) {
  return findEntry(segment.names, upstream, name);
}

int addSharedName(StatsSegment& segment, std::string_view upstream, std::string_view name) {
  return addEntry(segment.names, upstream, name, [](SharedName& entry) { entry.count = 0; });
}

void publishAddresses(SharedName& entry, const std::vector<std::string>& addresses) {
  uint64_t version = entry.version.load(std::memory_order_relaxed);
  entry.version.store(version + 1, std::memory_order_relaxed);  // odd: writing
  std::atomic_thread_fence(std::memory_order_release);
  size_t count = std::min(addresses.size(), kMaxNameAddresses);
  for (size_t i = 0; i < count; ++i) {
    std::memset(entry.addresses[i], 0, kNameBytes);
    std::memcpy(entry.addresses[i], addresses[i].data(), std::min(addresses[i].size(), kNameBytes - 1));
  }
  entry.count = static_cast<uint32_t>(count);
  entry.version.store(version + 2, std::memory_order_release);
}

uint64_t readAddresses(const SharedName& entry, std::vector<std::string>* addresses) {
  for (;;) {
    uint64_t before = entry.version.load(std::memory_order_acquire);
    if (before % 2 != 0) continue;  // the master is writing: a few stores, soon done
    addresses->clear();
    uint32_t count = std::min<uint32_t>(entry.count, kMaxNameAddresses);
    for (uint32_t i = 0; i < count; ++i) {
      addresses->emplace_back(entry.addresses[i], strnlen(entry.addresses[i], kNameBytes));
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    if (entry.version.load(std::memory_order_relaxed) == before) return before;
  }
}

}  // namespace poolgate
