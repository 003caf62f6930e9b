#include "upstream/upstream.h"

#include "core/clock.h"
#include "core/log.h"

namespace poolgate {

Server::Server(std::string name, const SocketAddress& address, uint32_t weight,
               const UpstreamConfig& upstream, TimerQueue& timers, const ServerStorage& storage)
    : name_(std::move(name)),
      address_(address),
      weight_(weight),
      health_config_(upstream.health),
      pool_(timers, upstream.pool, *storage.counters, storage.pool),
      counters_(*storage.counters),
      health_(storage.health != nullptr ? *storage.health : own_health_),
      in_service_flag_(storage.in_service),
      error_log_(timers, LogLevel::kWarn, "upstream " + name_, "errors") {
  if (in_service_flag_ != nullptr) in_service_flag_->store(1, std::memory_order_relaxed);
}

void Server::noteFailure(uint64_t now_ms, bool only_server) {
  // Like nginx, a lone server is never taken out by passive health: there is
  // nothing to fail over to. (An active check may still take it out.)
  ServerCounters::add(counters_.fails_total);
  if (only_server) return;
  if (health_.noteFailure(now_ms, health_config_.max_fails, secondsToMs(health_config_.fail_timeout))) {
    LOG_WARN("upstream server %s marked down for %.1fs (%u failure(s))", name_.c_str(),
             health_config_.fail_timeout, health_config_.max_fails);
  }
}

void Server::setInService(bool in_service) {
  in_service_ = in_service;
  if (in_service_flag_ != nullptr) in_service_flag_->store(in_service ? 1 : 0, std::memory_order_relaxed);
  if (!in_service) pool_.closeIdle();
}

UpstreamGroup::UpstreamGroup(const UpstreamConfig& config, TimerQueue& timers)
    : config_(config), timers_(timers) {
  const std::string header_prefix = "header:";
  if (config.balance == Balance::kHash && config.hash_key.rfind(header_prefix, 0) == 0) {
    hash_header_ = config.hash_key.substr(header_prefix.size());
  }
  balancer_ = makeBalancer(config_, servers_);
  if (config.tls.enabled) {
    std::string why;
    tls_ = UpstreamTls::create(config.tls, &why);
    if (!tls_) LOG_ERROR("upstream %s: %s: its TLS connections will fail", config.name.c_str(), why.c_str());
  }
}

size_t UpstreamGroup::inServiceCount() const {
  size_t count = 0;
  for (const auto& s : servers_) count += s->inService() ? 1 : 0;
  return count;
}

size_t UpstreamGroup::addServer(std::string name, const SocketAddress& address, uint32_t weight,
                                const ServerStorage& storage, std::string_view configured) {
  servers_.push_back(std::make_unique<Server>(std::move(name), address, weight, config_, timers_, storage));
  if (config_.tls.enabled) {
    // The host of the configured address: a DNS name, or an IP address.
    std::string why;
    std::optional<HostPort> parsed =
        parseHostPort(configured.empty() ? servers_.back()->name() : std::string(configured), &why);
    servers_.back()->setTls(tls_.get(), parsed ? parsed->host : std::string());
  }
  balancer_ = makeBalancer(config_, servers_);
  return servers_.size() - 1;
}

int UpstreamGroup::find(std::string_view name) const {
  for (size_t i = 0; i < servers_.size(); ++i) {
    if (servers_[i]->name() == name) return static_cast<int>(i);
  }
  return -1;
}

void UpstreamGroup::setInService(size_t index, bool in_service) {
  Server& server = *servers_[index];
  if (server.inService() == in_service) return;
  server.setInService(in_service);
  balancer_ = makeBalancer(config_, servers_);
}

int UpstreamGroup::pick(const TriedSet& tried, uint64_t now_ms, const PickContext& context) {
  return balancer_->pick(servers_, tried, now_ms, context);
}

void UpstreamGroup::closeIdle() {
  for (auto& s : servers_) s->pool().closeIdle();
}

}  // namespace poolgate
