// Upstream groups and their servers, as one worker sees them.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/socket.h"
#include "core/timer.h"
#include "pool/pool.h"

namespace poolgate {

class Server {
 public:
  Server(const ServerConfig& config, const PoolConfig& pool_config, const HealthConfig& health,
         TimerQueue& timers, ServerCounters& counters, std::atomic<uint32_t>& healthy);
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  const std::string& name() const { return config_.address.text; }
  const SocketAddress& address() const { return address_; }
  bool resolved() const { return resolved_; }
  uint32_t weight() const { return config_.weight; }
  Pool& pool() { return pool_; }
  ServerCounters& counters() { return counters_; }

  // Passive health: `max_fails` failures within `fail_timeout` take the server
  // out of rotation for `fail_timeout`.
  bool available(uint64_t now_ms) const { return now_ms >= down_until_ms_; }
  void noteFailure(uint64_t now_ms, bool only_server);
  void noteSuccess();

  // Smooth weighted round robin state (nginx's algorithm).
  int64_t current_weight = 0;
  uint32_t active_requests = 0;

 private:
  const ServerConfig& config_;
  const HealthConfig& health_;
  SocketAddress address_;
  bool resolved_ = false;
  Pool pool_;
  ServerCounters& counters_;
  std::atomic<uint32_t>& healthy_;
  uint32_t fails_ = 0;
  uint64_t first_fail_ms_ = 0;
  uint64_t down_until_ms_ = 0;
};

// Servers already tried for one request (retries move on to the next).
class TriedSet {
 public:
  bool contains(size_t index) const { return index < 64 && (bits_ & (uint64_t{1} << index)) != 0; }
  void add(size_t index) {
    if (index < 64) bits_ |= uint64_t{1} << index;
  }
  void clear() { bits_ = 0; }

 private:
  uint64_t bits_ = 0;
};

class UpstreamGroup {
 public:
  // `counters` and `healthy` point at one entry per server, in order.
  UpstreamGroup(const UpstreamConfig& config, TimerQueue& timers, ServerCounters* const* counters,
                std::atomic<uint32_t>* const* healthy);

  const std::string& name() const { return config_.name; }
  const UpstreamConfig& config() const { return config_; }
  size_t size() const { return servers_.size(); }
  Server& server(size_t index) { return *servers_[index]; }

  // Picks a server by smooth weighted round robin among the available ones
  // not yet tried. Returns its index, or -1 when none is left.
  int pick(const TriedSet& tried, uint64_t now_ms);

  void closeIdle();

 private:
  const UpstreamConfig& config_;
  std::vector<std::unique_ptr<Server>> servers_;
};

}  // namespace poolgate
