#include "process/upstream_monitor.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <set>

#include "core/clock.h"
#include "core/log.h"

namespace poolgate {

namespace {
constexpr uint64_t kMinTtlMs = 1'000;         // a TTL of 0 must not mean "ask again at once"
constexpr uint64_t kMaxTtlMs = 3'600'000;     // nor should a long one hide a change for days
constexpr uint64_t kRetryAfterFailureMs = 1'000;
}  // namespace

struct UpstreamMonitor::Name {
  Name(TimerQueue& timers, size_t upstream_index, const ServerConfig& server, int shared_index,
       std::function<void(Name&)> fire)
      : upstream(upstream_index), config(server), shared(shared_index), timer(timers, [this, fire] { fire(*this); }) {}

  size_t upstream;              // index in the configuration
  const ServerConfig& config;   // its address is "name:port"
  int shared;                   // SharedName entry, or -1 when the table is full
  Timer timer;                  // the next lookup
  bool answered = false;        // since configure()
  bool failing = false;
  std::vector<std::string> addresses;  // the last good answer, sorted
};

struct UpstreamMonitor::Check : public Deletable {
  Check(UpstreamMonitor& monitor, size_t upstream_index, int shared_index, std::string address_text,
        const SocketAddress& address, const std::string& host_header, const std::string& path,
        const UpstreamTls* tls, const std::string& tls_host)
      : upstream(upstream_index),
        shared(shared_index),
        address(std::move(address_text)),
        probe(monitor.loop_, address, host_header, path, tls, tls_host),
        timer(monitor.loop_.timers(), [this, &monitor] { monitor.runCheck(*this); }) {}

  size_t upstream;
  int shared;
  std::string address;
  HealthProbe probe;
  Timer timer;
};

UpstreamMonitor::UpstreamMonitor(EventLoop& loop, StatsSegment& segment) : loop_(loop), segment_(segment) {}

UpstreamMonitor::~UpstreamMonitor() {
  for (auto& [index, check] : checks_) check->probe.cancel();
}

void UpstreamMonitor::configure(const Config& config) {
  // In-flight lookups and probes belong to the old configuration: drop them.
  resolver_.reset();
  names_.clear();
  std::set<int> previously_checked;
  for (auto& [index, check] : checks_) {
    previously_checked.insert(index);
    retireCheck(std::move(check));
  }
  checks_.clear();
  config_ = &config;
  // Checks of a TLS upstream speak TLS, verified like its requests.
  tls_.clear();
  tls_.resize(config.upstreams.size());
  for (size_t u = 0; u < config.upstreams.size(); ++u) {
    const UpstreamConfig& upstream = config.upstreams[u];
    if (!upstream.tls.enabled || upstream.health.check_path.empty()) continue;
    std::string why;
    tls_[u] = UpstreamTls::create(upstream.tls, &why);
    if (!tls_[u]) LOG_ERROR("upstream %s: %s; its health checks will fail", upstream.name.c_str(), why.c_str());
  }

  std::vector<std::string> servers;
  for (const HostPort& server : config.resolver.servers) servers.push_back(server.text);
  for (size_t u = 0; u < config.upstreams.size(); ++u) {
    const UpstreamConfig& upstream = config.upstreams[u];
    for (const ServerConfig& server : upstream.servers) {
      if (server.address.numeric) {
        if (addSharedServer(segment_, upstream.name, server.address.text) < 0) {
          LOG_ERROR("upstream %s: no room in shared memory for %s: its health and max_conns stay per worker",
                    upstream.name.c_str(), server.address.text.c_str());
        }
        continue;
      }
      int shared = addSharedName(segment_, upstream.name, server.address.text);
      if (shared < 0) {
        LOG_ERROR("upstream %s: no room in shared memory for the name %s: it is not resolved",
                  upstream.name.c_str(), server.address.text.c_str());
        continue;
      }
      auto name = std::make_unique<Name>(loop_.timers(), u, server, shared, [this](Name& n) { resolve(n); });
      // Addresses a previous generation published stay until the new answer.
      readAddresses(segment_.names[shared], &name->addresses);
      names_.push_back(std::move(name));
    }
  }
  if (!names_.empty()) {
    resolver_ = std::make_unique<Resolver>(loop_, servers, secondsToMs(config.resolver.timeout));
    if (!resolver_->valid()) {
      LOG_ERROR("resolver: %s; server names are not resolved", resolver_->error().c_str());
      resolver_.reset();
    }
  }
  for (auto& name : names_) resolve(*name);
  for (size_t u = 0; u < config.upstreams.size(); ++u) syncChecks(u);
  // Addresses no longer checked lose the verdict of their old check.
  for (int index : previously_checked) {
    if (checks_.count(index) == 0) {
      segment_.shared[index].health.check.store(static_cast<uint32_t>(CheckState::kNone), std::memory_order_relaxed);
    }
  }
}

bool UpstreamMonitor::settled() const {
  return resolver_ == nullptr ||
         std::all_of(names_.begin(), names_.end(), [](const auto& name) { return name->answered; });
}

void UpstreamMonitor::resolve(Name& name) {
  if (resolver_ == nullptr) {
    name.answered = true;
    return;
  }
  resolver_->resolve(name.config.address.host, name.config.address.port,
                     [this, &name](bool ok, const std::string& why, std::vector<ResolvedAddress> answer) {
                       onResolved(name, ok, why, std::move(answer));
                     });
}

void UpstreamMonitor::onResolved(Name& name, bool ok, const std::string& why, std::vector<ResolvedAddress> answer) {
  const UpstreamConfig& upstream = config_->upstreams[name.upstream];
  SharedName& shared = segment_.names[name.shared];
  const char* text = name.config.address.text.c_str();
  name.answered = true;
  if (!ok) {
    if (!name.failing) {
      LOG_WARN("upstream %s: resolving %s failed: %s; %s", upstream.name.c_str(), text, why.c_str(),
               name.addresses.empty() ? "no address to use yet" : "keeping the last good addresses");
    }
    name.failing = true;
    const uint64_t retry = upstream.dns_refresh > 0 ? std::min(secondsToMs(upstream.dns_refresh), kRetryAfterFailureMs)
                                                    : kRetryAfterFailureMs;
    name.timer.arm(retry);
    return;
  }
  std::vector<std::string> addresses;
  uint64_t ttl_ms = kMaxTtlMs;
  for (const ResolvedAddress& entry : answer) {
    addresses.push_back(entry.address.toString());
    ttl_ms = std::min<uint64_t>(ttl_ms, uint64_t{entry.ttl_seconds} * 1000);
  }
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  if (addresses.size() > kMaxNameAddresses) {
    LOG_WARN("upstream %s: %s has %zu addresses; using the first %zu", upstream.name.c_str(), text, addresses.size(),
             kMaxNameAddresses);
    addresses.resize(kMaxNameAddresses);
  }
  if (name.failing) LOG_INFO("upstream %s: resolving %s works again", upstream.name.c_str(), text);
  name.failing = false;
  const bool changed = addresses != name.addresses ||
                       shared.version.load(std::memory_order_relaxed) == 0;  // never published yet
  if (changed) {
    // The shared entries first: a worker that sees the new list finds them.
    for (const std::string& address : addresses) {
      if (addSharedServer(segment_, upstream.name, address) < 0) {
        LOG_ERROR("upstream %s: no room in shared memory for %s: its health and max_conns stay per worker",
                  upstream.name.c_str(), address.c_str());
      }
    }
    publishAddresses(shared, addresses);
    std::string list;
    for (const std::string& address : addresses) list += (list.empty() ? "" : ", ") + address;
    LOG_INFO("upstream %s: %s resolves to %s", upstream.name.c_str(), text, list.c_str());
    name.addresses = std::move(addresses);
    syncChecks(name.upstream);
  }
  const uint64_t next = upstream.dns_refresh > 0 ? secondsToMs(upstream.dns_refresh)
                                                 : std::clamp(ttl_ms, kMinTtlMs, kMaxTtlMs);
  name.timer.arm(next);
}

void UpstreamMonitor::syncChecks(size_t index) {
  const UpstreamConfig& upstream = config_->upstreams[index];
  if (upstream.health.check_path.empty()) return;
  // A TLS upstream whose context did not load: its checks could only fail.
  if (upstream.tls.enabled && !tls_[index]) return;
  // The upstream's addresses now, each with the configured server it comes
  // from (its text is the check's Host header, its host the TLS name).
  std::map<int, std::pair<std::string, const HostPort*>> wanted;  // shared index -> (address, server)
  for (const ServerConfig& server : upstream.servers) {
    if (server.address.numeric) {
      int shared = findSharedServer(segment_, upstream.name, server.address.text);
      if (shared >= 0) wanted[shared] = {server.address.text, &server.address};
    }
  }
  for (const auto& name : names_) {
    if (name->upstream != index) continue;
    for (const std::string& address : name->addresses) {
      int shared = findSharedServer(segment_, upstream.name, address);
      if (shared >= 0) wanted[shared] = {address, &name->config.address};
    }
  }
  for (auto it = checks_.begin(); it != checks_.end();) {
    if (it->second->upstream == index && wanted.count(it->first) == 0) {
      segment_.shared[it->first].health.check.store(static_cast<uint32_t>(CheckState::kNone),
                                                   std::memory_order_relaxed);
      retireCheck(std::move(it->second));
      it = checks_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [shared, target] : wanted) {
    const auto& [text, server] = target;
    if (checks_.count(shared) != 0) continue;
    std::string why;
    std::optional<HostPort> parsed = parseHostPort(text, &why);
    SocketAddress address;
    if (!parsed || !makeSocketAddress(parsed->host, parsed->port, &address)) continue;
    auto check = std::make_unique<Check>(*this, index, shared, text, address, server->text,
                                         upstream.health.check_path, tls_[index].get(), server->host);
    Check& ref = *check;
    checks_.emplace(shared, std::move(check));
    runCheck(ref);  // the first verdict now, not one interval from now
  }
}

void UpstreamMonitor::runCheck(Check& check) {
  const UpstreamConfig& upstream = config_->upstreams[check.upstream];
  const HealthConfig& health = upstream.health;
  const uint64_t interval = secondsToMs(health.check_interval);
  const uint64_t timeout =
      std::min(interval, secondsToMs(config_->timeouts.upstream_connect + config_->timeouts.upstream_read));
  check.timer.arm(interval);
  check.probe.start(timeout, [this, &check](bool passed, const std::string& why) {
    const UpstreamConfig& group = config_->upstreams[check.upstream];
    SharedHealth& shared = segment_.shared[check.shared].health;
    ServerCounters::add(shared.checks_total);
    const auto verdict = passed ? CheckState::kPassing : CheckState::kFailing;
    const auto before = static_cast<CheckState>(shared.check.exchange(static_cast<uint32_t>(verdict)));
    if (passed) {
      if (before == CheckState::kFailing) {
        LOG_INFO("upstream %s: %s passes its health check again (%s)", group.name.c_str(), check.address.c_str(),
                 why.c_str());
      }
      return;
    }
    ServerCounters::add(shared.check_failures_total);
    if (before != CheckState::kFailing) {
      LOG_WARN("upstream %s: %s fails its health check (GET %s: %s); out of rotation", group.name.c_str(),
               check.address.c_str(), group.health.check_path.c_str(), why.c_str());
    }
  });
}

// A check may have an event pending in the current batch: stop it now, free it later.
void UpstreamMonitor::retireCheck(std::unique_ptr<Check> check) {
  check->probe.cancel();
  check->timer.cancel();
  loop_.deferDelete(std::move(check));
}

}  // namespace poolgate
