#include "upstream/balancer.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "config/config.h"
#include "upstream/upstream.h"

namespace poolgate {
namespace {

// ---- what one pick may choose from ------------------------------------------

// The servers of a group as one pick sees them: a server is eligible when its
// address is in service, it is not marked down and it was not tried already.
class Candidates {
 public:
  Candidates(const ServerList& servers, const TriedSet& tried, uint64_t now_ms)
      : servers_(servers), tried_(tried), now_ms_(now_ms) {}

  size_t size() const { return servers_.size(); }
  const Server& operator[](size_t index) const { return *servers_[index]; }

  bool eligible(size_t index) const {
    const Server& s = *servers_[index];
    return !tried_.contains(index) && s.inService() && s.available(now_ms_);
  }

  bool any() const {
    for (size_t i = 0; i < size(); ++i) {
      if (eligible(i)) return true;
    }
    return false;
  }

 private:
  const ServerList& servers_;
  const TriedSet& tried_;
  uint64_t now_ms_;
};

// True when server `a` carries less load than server `b` relative to their
// weights: active_a / weight_a < active_b / weight_b, cross-multiplied so no
// division or rounding is involved (both sides fit easily in 64 bits).
bool lessLoaded(const Server& a, const Server& b) {
  return uint64_t{a.active_requests} * b.weight() < uint64_t{b.active_requests} * a.weight();
}

bool equallyLoaded(const Server& a, const Server& b) {
  return uint64_t{a.active_requests} * b.weight() == uint64_t{b.active_requests} * a.weight();
}

// ---- smooth weighted round robin --------------------------------------------

// Every server carries a running score. On each pick, every server taking
// part adds its weight to its score; the one with the highest score wins and
// pays back the sum of the weights of all who took part. Over one cycle of
// sum(weights) picks each server wins exactly `weight` times, and because a
// winner drops far behind, wins of a heavy server are spread out rather than
// bunched: weights 5,1,1 give a a b a c a a. Servers that sit out a pick (not
// eligible) keep their score untouched.
class SmoothWeightedRoundRobin {
 public:
  explicit SmoothWeightedRoundRobin(size_t count) : score_(count, 0) {}

  // Picks among the eligible servers for which `takes_part(index)` holds.
  template <typename TakesPart>
  int pick(const Candidates& candidates, TakesPart takes_part) {
    int best = -1;
    int64_t total = 0;
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (!candidates.eligible(i) || !takes_part(i)) continue;
      int64_t weight = candidates[i].weight();
      score_[i] += weight;
      total += weight;
      if (best < 0 || score_[i] > score_[best]) best = static_cast<int>(i);
    }
    if (best >= 0) score_[best] -= total;
    return best;
  }

  int pick(const Candidates& candidates) {
    return pick(candidates, [](size_t) { return true; });
  }

 private:
  std::vector<int64_t> score_;
};

class RoundRobinBalancer final : public Balancer {
 public:
  explicit RoundRobinBalancer(size_t count) : wrr_(count) {}

  int pick(const ServerList& servers, const TriedSet& tried, uint64_t now_ms,
           const PickContext&) override {
    return wrr_.pick(Candidates(servers, tried, now_ms));
  }

 private:
  SmoothWeightedRoundRobin wrr_;
};

// ---- least connections ------------------------------------------------------

// The eligible server with the fewest active requests per unit of weight (so a
// weight-2 server is "as busy" as a weight-1 one when it has twice as many).
// Several servers often tie (typically all at zero when traffic is light);
// smooth weighted round robin among the tied ones then shares the load in
// proportion to weight instead of always favouring the first.
class LeastConnBalancer final : public Balancer {
 public:
  explicit LeastConnBalancer(size_t count) : wrr_(count) {}

  int pick(const ServerList& servers, const TriedSet& tried, uint64_t now_ms,
           const PickContext&) override {
    Candidates candidates(servers, tried, now_ms);
    int least = leastLoaded(candidates);
    if (least < 0) return -1;
    const Server& reference = candidates[least];
    return wrr_.pick(candidates,
                     [&](size_t i) { return equallyLoaded(candidates[i], reference); });
  }

 private:
  static int leastLoaded(const Candidates& candidates) {
    int least = -1;
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (!candidates.eligible(i)) continue;
      if (least < 0 || lessLoaded(candidates[i], candidates[least])) least = static_cast<int>(i);
    }
    return least;
  }

  SmoothWeightedRoundRobin wrr_;
};

// ---- power of two choices ---------------------------------------------------

// splitmix64: a tiny, fast generator with good statistical quality for load
// balancing (not for anything secret). Each balancer has its own, so there is
// no shared state and no lock.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  // Uniform in [0, bound) for bound > 0. The modulo bias is at most
  // bound / 2^64: far below anything measurable for server weights.
  uint64_t below(uint64_t bound) { return next() % bound; }

 private:
  uint64_t state_;
};

// Differs between workers (pid), restarts (time) and groups (address).
uint64_t freshSeed(const void* salt) {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  uint64_t seed = static_cast<uint64_t>(getpid());
  seed ^= static_cast<uint64_t>(now.tv_sec) * 1'000'000'007ULL + static_cast<uint64_t>(now.tv_nsec);
  seed ^= reinterpret_cast<uintptr_t>(salt) << 16;
  return seed;
}

// Draw two different eligible servers at random, each with probability
// proportional to its weight, and send the request to the less loaded of the
// two (active requests relative to weight; the first draw wins a tie). This
// avoids both the herd effect of always choosing the global minimum from
// stale-ish data and the imbalance of a single random choice.
class RandomTwoBalancer final : public Balancer {
 public:
  RandomTwoBalancer() : random_(freshSeed(this)) {}

  int pick(const ServerList& servers, const TriedSet& tried, uint64_t now_ms,
           const PickContext&) override {
    Candidates candidates(servers, tried, now_ms);
    uint64_t total = 0;
    size_t count = 0;
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (!candidates.eligible(i)) continue;
      total += candidates[i].weight();
      ++count;
    }
    if (count == 0) return -1;
    int first = draw(candidates, total, -1);
    if (count == 1) return first;
    int second = draw(candidates, total - candidates[first].weight(), first);
    return lessLoaded(candidates[second], candidates[first]) ? second : first;
  }

 private:
  // One eligible server other than `excluded`, chosen with probability
  // weight / `total`, where `total` is the weight of all those servers.
  int draw(const Candidates& candidates, uint64_t total, int excluded) {
    uint64_t ticket = random_.below(total);
    int last = -1;
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (static_cast<int>(i) == excluded || !candidates.eligible(i)) continue;
      uint64_t weight = candidates[i].weight();
      if (ticket < weight) return static_cast<int>(i);
      ticket -= weight;
      last = static_cast<int>(i);
    }
    return last;  // not reached while `total` matches the eligible servers
  }

  SplitMix64 random_;
};

// ---- consistent hashing -----------------------------------------------------

// Each server is placed on a 64-bit circle at 160 points per unit of weight,
// at the hashes of "address#0", "address#1", ... A request's key is hashed
// onto the same circle and goes to the owner of the first point at or after
// it (clockwise, wrapping around). The points depend only on a server's own
// address, so adding or removing one server only moves the keys that land
// on (or used to land on) that server's points: about 1/N of them. Many points
// per server smooth out the arcs so the key space is shared evenly.
//
// When the owner is not eligible (down, retired or already tried), the
// walk continues clockwise to the next point of a different server, so a
// key's fallback is stable too.
//
// Requests without a key (no client IP, or the header is absent or empty)
// fall back to smooth weighted round robin: there is nothing to be sticky to.
class HashBalancer final : public Balancer {
 public:
  HashBalancer(const UpstreamConfig& config, const ServerList& servers)
      : key_from_ip_(config.hash_key == "ip"), wrr_(servers.size()) {
    buildRing(servers);
  }

  int pick(const ServerList& servers, const TriedSet& tried, uint64_t now_ms,
           const PickContext& context) override {
    Candidates candidates(servers, tried, now_ms);
    std::string_view key = key_from_ip_ ? context.client_ip : context.hash_value;
    if (key.empty()) return wrr_.pick(candidates);
    if (ring_.empty() || !candidates.any()) return -1;
    return walk(candidates, firstPointAtOrAfter(ringHash(key)));
  }

 private:
  struct Point {
    uint64_t hash;
    uint32_t server;
    bool operator<(const Point& other) const {
      return hash != other.hash ? hash < other.hash : server < other.server;
    }
  };

  static constexpr uint64_t kPointsPerWeight = 160;
  // Bounds the ring's memory (16 bytes a point) for very large weights: past
  // this, every server's share of points is scaled down proportionally.
  static constexpr uint64_t kMaxPoints = 1 << 20;

  void buildRing(const ServerList& servers) {
    uint64_t wanted = 0;
    for (const auto& s : servers) wanted += kPointsPerWeight * s->weight();
    ring_.reserve(std::min(wanted, kMaxPoints + servers.size()));
    std::string label;
    for (size_t i = 0; i < servers.size(); ++i) {
      uint64_t points = kPointsPerWeight * servers[i]->weight();
      if (wanted > kMaxPoints) points = std::max<uint64_t>(1, points * kMaxPoints / wanted);
      for (uint64_t j = 0; j < points; ++j) {
        label = servers[i]->name();
        label += '#';
        label += std::to_string(j);
        ring_.push_back({ringHash(label), static_cast<uint32_t>(i)});
      }
    }
    std::sort(ring_.begin(), ring_.end());
  }

  // Position in ring_ of the first point at or after `hash`, wrapping to 0.
  size_t firstPointAtOrAfter(uint64_t hash) const {
    auto it = std::lower_bound(ring_.begin(), ring_.end(), hash,
                               [](const Point& p, uint64_t h) { return p.hash < h; });
    return it == ring_.end() ? 0 : static_cast<size_t>(it - ring_.begin());
  }

  // The owner of the first point from `start` on whose server is eligible.
  // The caller made sure one is, so this ends within one turn of the ring.
  int walk(const Candidates& candidates, size_t start) const {
    uint32_t skipped = UINT32_MAX;  // last server found ineligible: skip its runs cheaply
    for (size_t n = 0; n < ring_.size(); ++n) {
      uint32_t server = ring_[(start + n) % ring_.size()].server;
      if (server == skipped) continue;
      if (candidates.eligible(server)) return static_cast<int>(server);
      skipped = server;
    }
    return -1;
  }

  bool key_from_ip_;  // hash_key "ip"; otherwise "header:NAME"
  std::vector<Point> ring_;
  SmoothWeightedRoundRobin wrr_;
};

}  // namespace

uint64_t ringHash(std::string_view bytes) {
  // FNV-1a, 64-bit.
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  // Avalanche (the 64-bit finalizer of MurmurHash3): every input bit now
  // affects every output bit, so "a#1" and "a#2" land far apart.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

std::unique_ptr<Balancer> makeBalancer(const UpstreamConfig& config, const ServerList& servers) {
  switch (config.balance) {
    case Balance::kLeastConn:
      return std::make_unique<LeastConnBalancer>(servers.size());
    case Balance::kRandomTwo:
      return std::make_unique<RandomTwoBalancer>();
    case Balance::kHash:
      return std::make_unique<HashBalancer>(config, servers);
    case Balance::kRoundRobin:
      break;
  }
  return std::make_unique<RoundRobinBalancer>(servers.size());
}

}  // namespace poolgate
