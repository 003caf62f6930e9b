// UpstreamMonitor: the master's watch over upstream addresses.
//
// Two jobs done once for the whole instance rather than once per worker, with
// the results in the shared segment where every worker reads them:
//   - DNS: configured server names are resolved with c-ares on the master's
//     event loop; each answer's addresses are published (SharedName) and get
//     a SharedServer entry. Re-resolved at the records' TTL, or every
//     `dns.refresh` seconds; on failure the last good addresses stay.
//   - active health checks: `GET check_path` every `check_interval` to each
//     address of an upstream that has one; the verdict goes to the address's
//     SharedHealth.
// Workers never resolve or probe: N workers do not mean N times the DNS
// queries or the health-check traffic, and all of them agree on the server
// set (which a consistent hash needs).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/event_loop.h"
#include "core/socket.h"
#include "core/timer.h"
#include "shm/stats_segment.h"
#include "upstream/health.h"
#include "upstream/resolver.h"
#include "upstream/upstream_tls.h"

namespace poolgate {

class UpstreamMonitor {
 public:
  UpstreamMonitor(EventLoop& loop, StatsSegment& segment);
  ~UpstreamMonitor();
  UpstreamMonitor(const UpstreamMonitor&) = delete;
  UpstreamMonitor& operator=(const UpstreamMonitor&) = delete;

  // Takes a generation's configuration (at start and on each reload): starts
  // resolving its names and checking its addresses. `config` must stay alive
  // until the next configure() or the monitor's end.
  void configure(const Config& config);

  // Every name has had an answer (or a failure) since configure().
  bool settled() const;

 private:
  struct Name;
  struct Check;

  void resolve(Name& name);
  void onResolved(Name& name, bool ok, const std::string& why, std::vector<ResolvedAddress> answer);
  // Brings the checks of upstream `index` in line with its current addresses.
  void syncChecks(size_t index);
  void runCheck(Check& check);
  void retireCheck(std::unique_ptr<Check> check);

  EventLoop& loop_;
  StatsSegment& segment_;
  const Config* config_ = nullptr;
  std::unique_ptr<Resolver> resolver_;
  std::vector<std::unique_ptr<Name>> names_;
  std::map<int, std::unique_ptr<Check>> checks_;  // by SharedServer index
  std::vector<std::unique_ptr<UpstreamTls>> tls_;  // per upstream: checks of a TLS one speak TLS
};

}  // namespace poolgate
