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
#include "upstream/balancer.h"

namespace poolgate {

class Server {
 public:
  Server(const ServerConfig& config, const PoolConfig& pool_config, const HealthConfig& health,
         TimerQueue& timers, ServerCounters& counters, std::atomic<uint32_t>& healthy,
         std::atomic<int32_t>* shared_conns = nullptr, std::atomic<int32_t>* shared_waiters = nullptr);
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

  // Requests this worker has in flight on this server. The proxy raises it
  // around each exchange; least_conn and random_two read it.
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
  // `shared_conns` (may be null): one cross-worker connection count per server, for max_conns.
  UpstreamGroup(const UpstreamConfig& config, TimerQueue& timers, ServerCounters* const* counters,
                std::atomic<uint32_t>* const* healthy, std::atomic<int32_t>* const* shared_conns = nullptr,
                std::atomic<int32_t>* const* shared_waiters = nullptr);

  const std::string& name() const { return config_.name; }
  const UpstreamConfig& config() const { return config_; }
  size_t size() const { return servers_.size(); }
  Server& server(size_t index) { return *servers_[index]; }

  // Picks a server with the group's `balance` among those that are resolved,
  // available and not yet tried. Returns its index, or -1 when none is left.
  // `context` carries the request's hash key (used by `balance = "hash"` only).
  int pick(const TriedSet& tried, uint64_t now_ms, const PickContext& context);
  // Same with no request context (hash then falls back to round robin).
  int pick(const TriedSet& tried, uint64_t now_ms) { return pick(tried, now_ms, PickContext{}); }

  // NAME when balance is "hash" with hash_key "header:NAME" (the caller passes
  // that header's value as PickContext::hash_value); empty otherwise.
  const std::string& hashHeader() const { return hash_header_; }

  void closeIdle();

 private:
  const UpstreamConfig& config_;
  ServerList servers_;
  std::unique_ptr<Balancer> balancer_;
  std::string hash_header_;
};

}  // namespace poolgate
