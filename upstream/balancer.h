// Load balancing: which server of an upstream group gets the next request.
//
// One balancer per group and per worker, chosen by the group's `balance`:
//   round_robin  smooth weighted round robin (weights interleave)
//   least_conn   fewest active requests relative to weight
//   random_two   power of two choices on active requests
//   hash         consistent hash ring keyed by client IP or a request header
// Every algorithm only ever picks a server that is resolved, available (not
// marked down) and not yet tried for this request. Picking allocates nothing;
// whatever a balancer needs (state per server, the hash ring) is built once.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace poolgate {

class Server;
class TriedSet;
struct UpstreamConfig;

using ServerList = std::vector<std::unique_ptr<Server>>;

// What a balancer may know about the request.
struct PickContext {
  std::string_view client_ip;   // for hash_key = "ip"
  std::string_view hash_value;  // for hash_key = "header:NAME": the header's value (caller extracts it)
};

class Balancer {
 public:
  virtual ~Balancer() = default;

  // Index into `servers` of the chosen server, or -1 when none is eligible.
  // `servers` must be the list the balancer was made for.
  virtual int pick(const ServerList& servers, const TriedSet& tried, uint64_t now_ms,
                   const PickContext& context) = 0;
};

// The balancer for `config.balance` over `servers` (which must stay the same
// list, in the same order, for the balancer's lifetime).
std::unique_ptr<Balancer> makeBalancer(const UpstreamConfig& config, const ServerList& servers);

// 64-bit hash of a byte string used for the hash ring: FNV-1a followed by a
// final avalanche mix (FNV-1a alone spreads short, similar strings poorly).
uint64_t ringHash(std::string_view bytes);

}  // namespace poolgate
