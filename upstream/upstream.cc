#include "upstream/upstream.h"

#include "core/clock.h"
#include "core/log.h"

namespace poolgate {

Server::Server(const ServerConfig& config, const PoolConfig& pool_config, const HealthConfig& health,
               TimerQueue& timers, ServerCounters& counters, std::atomic<uint32_t>& healthy,
               std::atomic<int32_t>* shared_conns, std::atomic<int32_t>* shared_waiters)
    : config_(config),
      health_(health),
      pool_(timers, pool_config, counters, shared_conns, shared_waiters),
      counters_(counters),
      healthy_(healthy) {
  resolved_ = makeSocketAddress(config.address.host, config.address.port, &address_);
  healthy_.store(1, std::memory_order_relaxed);
}

void Server::noteFailure(uint64_t now_ms, bool only_server) {
  // Like nginx, a lone server is never taken out: there is nothing to fail over to.
  if (only_server || health_.max_fails == 0) return;
  uint64_t window = secondsToMs(health_.fail_timeout);
  if (fails_ == 0 || now_ms - first_fail_ms_ > window) {
    fails_ = 0;
    first_fail_ms_ = now_ms;
  }
  if (++fails_ >= health_.max_fails) {
    down_until_ms_ = now_ms + window;
    fails_ = 0;
    healthy_.store(0, std::memory_order_relaxed);
    LOG_WARN("upstream server %s marked down for %.1fs", name().c_str(), health_.fail_timeout);
  }
}

void Server::noteSuccess() {
  fails_ = 0;
  if (healthy_.load(std::memory_order_relaxed) == 0) healthy_.store(1, std::memory_order_relaxed);
}

UpstreamGroup::UpstreamGroup(const UpstreamConfig& config, TimerQueue& timers,
                             ServerCounters* const* counters, std::atomic<uint32_t>* const* healthy,
                             std::atomic<int32_t>* const* shared_conns,
                             std::atomic<int32_t>* const* shared_waiters)
    : config_(config) {
  servers_.reserve(config.servers.size());
  for (size_t i = 0; i < config.servers.size(); ++i) {
    servers_.push_back(std::make_unique<Server>(config.servers[i], config.pool, config.health, timers,
                                                *counters[i], *healthy[i],
                                                shared_conns != nullptr ? shared_conns[i] : nullptr,
                                                shared_waiters != nullptr ? shared_waiters[i] : nullptr));
  }
  balancer_ = makeBalancer(config, servers_);
  const std::string header_prefix = "header:";
  if (config.balance == Balance::kHash && config.hash_key.rfind(header_prefix, 0) == 0) {
    hash_header_ = config.hash_key.substr(header_prefix.size());
  }
}

int UpstreamGroup::pick(const TriedSet& tried, uint64_t now_ms, const PickContext& context) {
  return balancer_->pick(servers_, tried, now_ms, context);
}

void UpstreamGroup::closeIdle() {
  for (auto& s : servers_) s->pool().closeIdle();
}

}  // namespace poolgate
