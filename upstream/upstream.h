// Upstream groups and their servers, as one worker sees them.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "core/log.h"
#include "core/log_throttle.h"
#include "core/socket.h"
#include "core/timer.h"
#include "core/tls.h"
#include "pool/pool.h"
#include "upstream/balancer.h"
#include "upstream/health.h"
#include "upstream/upstream_tls.h"

namespace poolgate {

// Where a server's figures live: the worker's stats slot and the shared
// segment in the proxy, plain objects in unit tests.
struct ServerStorage {
  ServerCounters* counters = nullptr;
  SharedHealth* health = nullptr;                 // null: the server keeps its own
  PoolShared pool;                                // max_conns across workers, hand-overs
  std::atomic<uint32_t>* in_service = nullptr;    // mirrors Server::inService() for stats, or null
};

// One upstream address (a configured IP, or one address a name resolved to).
class Server {
 public:
  Server(std::string name, const SocketAddress& address, uint32_t weight, const UpstreamConfig& upstream,
         TimerQueue& timers, const ServerStorage& storage);
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  const std::string& name() const { return name_; }  // "10.0.0.1:5000", "[::1]:5000"
  const SocketAddress& address() const { return address_; }
  uint32_t weight() const { return weight_; }
  Pool& pool() { return pool_; }
  ServerCounters& counters() { return counters_; }

  // In service: part of the group's current address set. An address that
  // dropped out of DNS is retired: never picked, its idle connections
  // closed, its busy ones finish their exchange and are not pooled.
  bool inService() const { return in_service_; }
  void setInService(bool in_service);

  // Shared health (see upstream/health.h): passive failures and the active check.
  bool available(uint64_t now_ms) const { return health_.healthy(now_ms); }
  const SharedHealth& health() const { return health_; }
  void noteFailure(uint64_t now_ms, bool only_server);
  void noteSuccess() { health_.noteSuccess(); }

  // Failures of this server logged without flooding: an outage under load
  // gives a few lines, then one summary per second (see core/log_throttle.h).
  LogThrottle& errorLog() { return error_log_; }

  // Requests this worker has in flight on this server. The proxy raises it
  // around each exchange; least_conn and random_two read it.
  uint32_t active_requests = 0;

  // Upstream TLS (upstreams[].tls.enabled): the group's client context (null
  // for plain HTTP, or when it failed to load: connections then fail), the
  // host to send as SNI and to verify unless tls.server_name is set, and the
  // newest session the server issued, offered by the next new connection.
  bool tlsEnabled() const { return tls_enabled_; }
  const UpstreamTls* tls() const { return tls_; }
  const std::string& tlsHost() const { return tls_host_; }
  SslSessionPtr& tlsSession() { return tls_session_; }
  void setTls(const UpstreamTls* tls, std::string host) {
    tls_enabled_ = true;
    tls_ = tls;
    tls_host_ = std::move(host);
  }

 private:
  bool tls_enabled_ = false;
  const UpstreamTls* tls_ = nullptr;
  std::string tls_host_;
  SslSessionPtr tls_session_;
  std::string name_;
  SocketAddress address_;
  uint32_t weight_;
  const HealthConfig& health_config_;
  Pool pool_;
  ServerCounters& counters_;
  SharedHealth own_health_;  // used when the storage has none
  SharedHealth& health_;
  std::atomic<uint32_t>* in_service_flag_;
  bool in_service_ = true;
  LogThrottle error_log_;
};

// LOG_WARN for a failure of `server`, through its LogThrottle. `reason` is the
// short text the summary line shows when this one is only counted.
#define LOG_UPSTREAM_FAILURE(server, reason, ...)                      \
  do {                                                                \
    if ((server).errorLog().admit(reason)) LOG_WARN(__VA_ARGS__);     \
  } while (0)

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
  // An empty group; the owner adds servers (numeric ones at once, resolved
  // ones as DNS answers arrive).
  UpstreamGroup(const UpstreamConfig& config, TimerQueue& timers);

  const std::string& name() const { return config_.name; }
  const UpstreamConfig& config() const { return config_; }
  size_t size() const { return servers_.size(); }  // including retired ones
  Server& server(size_t index) { return *servers_[index]; }
  size_t inServiceCount() const;

  // Adds an address in service and returns its index (indexes never change:
  // a retired server stays in the list). `configured`: the name:port it was
  // resolved from ("" for a configured IP address), for TLS names.
  size_t addServer(std::string name, const SocketAddress& address, uint32_t weight,
                   const ServerStorage& storage, std::string_view configured = "");
  // The index of the server with this name, or -1.
  int find(std::string_view name) const;
  // Retires or reinstates a server; the balancer is rebuilt when that changes anything.
  void setInService(size_t index, bool in_service);

  // Picks a server with the group's `balance` among those in service,
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
  TimerQueue& timers_;
  ServerList servers_;
  std::unique_ptr<Balancer> balancer_;
  std::string hash_header_;
  std::unique_ptr<UpstreamTls> tls_;  // tls.enabled: the client context of this worker
};

}  // namespace poolgate
