#include "admin/admin_render.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include <openssl/evp.h>

#include "admin/dashboard_html.h"

namespace poolgate {

namespace {

constexpr size_t kReasons = static_cast<size_t>(NoReuse::kCount);

// ---------------------------------------------------------------- snapshot

struct Name {
  char bytes[kNameBytes];
  size_t len;
  std::string_view view() const { return {bytes, len}; }
};

// Copies a NUL-terminated (or full-length) name out of shared memory.
template <size_t N>
void copyName(Name& to, const char (&from)[N]) {
  static_assert(N <= kNameBytes);
  std::memcpy(to.bytes, from, N);
  to.len = strnlen(to.bytes, N);
}

uint64_t load(const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); }

struct Conns {  // the figures summed per worker and overall
  uint64_t open = 0, idle = 0, active = 0, opened = 0, reused = 0, failed = 0;
  void add(const Conns& o) {
    open += o.open; idle += o.idle; active += o.active;
    opened += o.opened; reused += o.reused; failed += o.failed;
  }
};

struct ServerSnap {
  Name address;
  Name name;  // the configured name it was resolved from ("" for an IP)
  uint32_t upstream;
  bool in_service, healthy;
  CheckState check;
  Conns c;
  uint64_t fails, retries, checks, check_failures;
  uint64_t tls_handshakes, tls_resumed;
  uint64_t requests, closed_idle;
  uint64_t trimmed, direct, expired, demand;
  uint64_t handed, received;
  uint64_t queued, queue_timeouts;
  uint64_t no_reuse[kReasons];
};

struct UpstreamSnap {
  Name name;
  uint32_t max_idle;
  uint32_t servers;  // how many servers of the worker belong to it
};

struct WorkerSnap {
  size_t index;  // in the segment: the last sort key, for a stable order
  SlotState state;
  int32_t pid;
  uint32_t slot;
  uint64_t generation, started_ms;
  uint64_t accepted, requests, clients_active, clients_idle, accept_wakeups, accept_empty;
  uint64_t admin_accepted, admin_active, admin_denied;
  uint64_t buffered, buffered_disk, buffered_bytes, buffered_largest, buffered_memory, buffer_errors, time_saved_ms;
  size_t upstream_begin, upstream_count;  // into Snapshot::upstreams
  size_t server_begin, server_count;      // into Snapshot::servers, grouped by upstream
  Conns up;                               // sum over the servers
  uint64_t bound;                         // sum over upstreams of max_idle x servers
};

struct Snapshot {
  int32_t master_pid;
  uint64_t generation, started_ms;
  Name accept_mode;
  std::vector<WorkerSnap> workers;
  std::vector<UpstreamSnap> upstreams;
  std::vector<ServerSnap> servers;
  // totals over the listed workers
  uint64_t accepted = 0, requests = 0, clients_active = 0, clients_idle = 0, bound = 0;
  uint64_t admin_accepted = 0, admin_active = 0, admin_denied = 0;
  Conns up;
};

void takeSnapshot(const StatsSegment& seg, uint64_t monotonic_ms, Snapshot& s) {
  s.master_pid = seg.header.master_pid.load(std::memory_order_relaxed);
  s.generation = load(seg.header.generation);
  s.started_ms = load(seg.header.started_ms);
  copyName(s.accept_mode, seg.header.accept_mode);

  for (size_t i = 0; i < kMaxWorkerSlots; ++i) {
    const WorkerSlot& w = seg.workers[i];
    // Acquire: the worker fills its upstream and server tables before it
    // publishes state = running.
    const auto state = static_cast<SlotState>(w.state.load(std::memory_order_acquire));
    if (state != SlotState::kRunning && state != SlotState::kDraining) continue;

    WorkerSnap ws{};
    ws.index = i;
    ws.state = state;
    ws.pid = w.pid.load(std::memory_order_relaxed);
    ws.slot = w.slot.load(std::memory_order_relaxed);
    ws.generation = load(w.generation);
    ws.started_ms = load(w.started_ms);
    ws.accepted = load(w.accepted);
    ws.requests = load(w.requests);
    ws.clients_active = load(w.clients_active);
    ws.clients_idle = load(w.clients_idle);
    ws.accept_wakeups = load(w.accept_wakeups);
    ws.accept_empty = load(w.accept_empty);
    ws.admin_accepted = load(w.admin_accepted);
    ws.admin_active = load(w.admin_active);
    ws.admin_denied = load(w.admin_denied);
    ws.buffered = load(w.buffered_total);
    ws.buffered_disk = load(w.buffered_disk_total);
    ws.buffered_bytes = load(w.buffered_bytes_total);
    ws.buffered_largest = load(w.buffered_largest);
    ws.buffered_memory = load(w.buffered_memory);
    ws.buffer_errors = load(w.buffer_errors_total);
    ws.time_saved_ms = load(w.upstream_time_saved_ms_total);

    const uint32_t n_up =
        std::min<uint32_t>(w.upstream_count.load(std::memory_order_relaxed), kMaxUpstreams);
    const uint32_t n_srv =
        std::min<uint32_t>(w.server_count.load(std::memory_order_relaxed), kMaxServers);

    ws.upstream_begin = s.upstreams.size();
    ws.upstream_count = n_up;
    for (uint32_t u = 0; u < n_up; ++u) {
      UpstreamSnap& us = s.upstreams.emplace_back();
      copyName(us.name, w.upstreams[u].name);
      us.max_idle = w.upstreams[u].max_idle;
      us.servers = 0;
    }

    // Servers grouped by upstream, each group in server order. A server that
    // names no valid upstream is not published and not counted.
    ws.server_begin = s.servers.size();
    for (uint32_t u = 0; u < n_up; ++u) {
      UpstreamSnap& us = s.upstreams[ws.upstream_begin + u];
      for (uint32_t k = 0; k < n_srv; ++k) {
        const ServerSlot& src = w.servers[k];
        if (src.upstream != u) continue;
        ServerSnap& ss = s.servers.emplace_back();
        copyName(ss.address, src.address);
        ss.upstream = u;
        copyName(ss.name, src.name);
        ss.in_service = src.in_service.load(std::memory_order_relaxed) != 0;
        // Health is shared by all workers: the verdict lives in the address's shared entry.
        const SharedServer* shared =
            src.shared_index >= 0 && static_cast<size_t>(src.shared_index) < kMaxSharedServers
                ? &seg.shared[src.shared_index]
                : nullptr;
        ss.healthy = ss.in_service && (shared == nullptr || shared->health.healthy(monotonic_ms));
        ss.check = shared != nullptr ? static_cast<CheckState>(shared->health.check.load(std::memory_order_relaxed))
                                     : CheckState::kNone;
        ss.checks = shared != nullptr ? load(shared->health.checks_total) : 0;
        ss.check_failures = shared != nullptr ? load(shared->health.check_failures_total) : 0;
        const ServerCounters& c = src.counters;
        ss.fails = load(c.fails_total);
        ss.retries = load(c.retries_total);
        ss.tls_handshakes = load(c.tls_handshakes_total);
        ss.tls_resumed = load(c.tls_resumed_total);
        ss.c.idle = load(c.idle);
        ss.c.active = load(c.active);
        ss.c.open = ss.c.idle + ss.c.active;  // derived: the invariant holds in every snapshot
        ss.c.opened = load(c.opened_total);
        ss.c.reused = load(c.reused_total);
        ss.c.failed = load(c.failed_total);
        ss.requests = load(c.requests_total);
        ss.closed_idle = load(c.closed_idle_total);
        ss.trimmed = load(c.trimmed_total);
        ss.direct = load(c.direct_total);
        ss.expired = load(c.expired_total);
        ss.handed = load(c.handed_total);
        ss.received = load(c.received_total);
        ss.demand = demandAt(c, monotonic_ms);
        ss.queued = load(c.queued);
        ss.queue_timeouts = load(c.queue_timeouts_total);
        for (size_t r = 0; r < kReasons; ++r) ss.no_reuse[r] = load(c.no_reuse_total[r]);
        ws.up.add(ss.c);
        ++us.servers;
      }
      ws.bound += uint64_t{us.max_idle} * us.servers;
    }
    ws.server_count = s.servers.size() - ws.server_begin;

    s.accepted += ws.accepted;
    s.requests += ws.requests;
    s.clients_active += ws.clients_active;
    s.clients_idle += ws.clients_idle;
    s.admin_accepted += ws.admin_accepted;
    s.admin_active += ws.admin_active;
    s.admin_denied += ws.admin_denied;
    s.bound += ws.bound;
    s.up.add(ws.up);
    s.workers.push_back(ws);
  }

  std::sort(s.workers.begin(), s.workers.end(), [](const WorkerSnap& a, const WorkerSnap& b) {
    if (a.generation != b.generation) return a.generation < b.generation;
    if (a.slot != b.slot) return a.slot < b.slot;
    return a.index < b.index;
  });
}

// ---------------------------------------------------------------- formatting

void appendUint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void appendInt(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Milliseconds as seconds with exactly 3 decimals ("12.500"): integer math,
// independent of the locale.
void appendMsAsSeconds(std::string& out, uint64_t ms) {
  appendUint(out, ms / 1000);
  const unsigned frac = static_cast<unsigned>(ms % 1000);
  const char digits[4] = {'.', static_cast<char>('0' + frac / 100),
                          static_cast<char>('0' + frac / 10 % 10),
                          static_cast<char>('0' + frac % 10)};
  out.append(digits, 4);
}

void appendRatio(std::string& out, uint64_t num, uint64_t den) {
  const double v = den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 4);
  out.append(buf, r.ptr);
}

// Elapsed ms; 0 when the start is unset (0) or in the future (clock steps).
uint64_t msSince(uint64_t since, uint64_t now) {
  return since != 0 && now > since ? now - since : 0;
}

// Length of the valid UTF-8 sequence at p[i], or 0 when the bytes there are
// not valid UTF-8 (overlongs, surrogates, truncated sequences included).
size_t utf8Length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + need > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < need; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  }
  return need;
}

// Appends s with `escape(out, c)` deciding each ASCII byte (returns false to
// copy it as is); invalid UTF-8 bytes become `replacement`.
template <typename Escape>
void appendEscaped(std::string& out, std::string_view s, std::string_view replacement,
                   Escape escape) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8Length(s, i);
    if (n == 0) {
      out.append(replacement);
      ++i;
    } else if (n == 1) {
      if (!escape(out, s[i])) out.push_back(s[i]);
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
}

void appendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  appendEscaped(out, s, "\\ufffd", [](std::string& o, char c) {
    switch (c) {
      case '"': o.append("\\\""); return true;
      case '\\': o.append("\\\\"); return true;
      case '\n': o.append("\\n"); return true;
      case '\r': o.append("\\r"); return true;
      case '\t': o.append("\\t"); return true;
      case '\b': o.append("\\b"); return true;
      case '\f': o.append("\\f"); return true;
      default: break;
    }
    if (static_cast<unsigned char>(c) < 0x20) {
      static constexpr char kHex[] = "0123456789abcdef";
      const char esc[6] = {'\\', 'u', '0', '0', kHex[(c >> 4) & 0xF], kHex[c & 0xF]};
      o.append(esc, 6);
      return true;
    }
    return false;
  });
  out.push_back('"');
}

void appendLabelValue(std::string& out, std::string_view s) {
  appendEscaped(out, s, "\xEF\xBF\xBD", [](std::string& o, char c) {
    switch (c) {
      case '"': o.append("\\\""); return true;
      case '\\': o.append("\\\\"); return true;
      case '\n': o.append("\\n"); return true;
      default: return false;
    }
  });
}

void appendHtmlText(std::string& out, std::string_view s) {
  appendEscaped(out, s, "\xEF\xBF\xBD", [](std::string& o, char c) {
    switch (c) {
      case '&': o.append("&amp;"); return true;
      case '<': o.append("&lt;"); return true;
      case '>': o.append("&gt;"); return true;
      case '"': o.append("&quot;"); return true;
      case '\'': o.append("&#39;"); return true;
      default: return false;
    }
  });
}

// ---------------------------------------------------------------- JSON

// `"key":` — keys are literals from this file, no escaping needed.
void key(std::string& out, std::string_view k) {
  out.push_back('"');
  out.append(k);
  out.append("\":");
}

void field(std::string& out, std::string_view k, uint64_t v) {
  key(out, k);
  appendUint(out, v);
  out.push_back(',');
}

void flag(std::string& out, std::string_view k, bool v) {
  key(out, k);
  out.append(v ? "true," : "false,");
}

void textField(std::string& out, std::string_view k, std::string_view v) {
  key(out, k);
  appendJsonString(out, v);
  out.push_back(',');
}

// Replaces the trailing ',' of the last member/element by `close`, or appends
// `close` to an empty object/array.
void close(std::string& out, char closer) {
  if (out.back() == ',') {
    out.back() = closer;
  } else {
    out.push_back(closer);
  }
}

void conns(std::string& out, const Conns& c) {
  field(out, "open", c.open);
  field(out, "idle", c.idle);
  field(out, "active", c.active);
  field(out, "opened_total", c.opened);
  field(out, "reused_total", c.reused);
  field(out, "failed_total", c.failed);
}

void server(std::string& out, const ServerSnap& s) {
  out.push_back('{');
  textField(out, "address", s.address.view());
  if (!s.name.view().empty()) textField(out, "name", s.name.view());
  flag(out, "in_service", s.in_service);
  flag(out, "healthy", s.healthy);
  textField(out, "check", s.check == CheckState::kPassing   ? "passing"
                          : s.check == CheckState::kFailing ? "failing"
                                                            : "none");
  conns(out, s.c);
  field(out, "fails_total", s.fails);
  field(out, "retries_total", s.retries);
  field(out, "checks_total", s.checks);
  field(out, "check_failures_total", s.check_failures);
  field(out, "tls_handshakes_total", s.tls_handshakes);
  field(out, "tls_resumed_total", s.tls_resumed);
  field(out, "requests_total", s.requests);
  field(out, "closed_idle_total", s.closed_idle);
  field(out, "trimmed_total", s.trimmed);
  field(out, "expired_total", s.expired);
  field(out, "direct_total", s.direct);
  field(out, "handed_total", s.handed);
  field(out, "received_total", s.received);
  field(out, "demand", s.demand);
  field(out, "queued", s.queued);
  field(out, "queue_timeouts_total", s.queue_timeouts);
  key(out, "no_reuse");
  out.push_back('{');
  for (size_t r = 1; r < kReasons; ++r) field(out, toString(static_cast<NoReuse>(r)), s.no_reuse[r]);
  close(out, '}');
  out.push_back('}');
}

void worker(std::string& out, const Snapshot& s, const WorkerSnap& w, uint64_t now_ms) {
  out.push_back('{');
  field(out, "slot", w.slot);
  key(out, "pid");
  appendInt(out, w.pid);
  out.push_back(',');
  field(out, "generation", w.generation);
  key(out, "state");
  appendJsonString(out, toString(w.state));
  out.push_back(',');
  field(out, "accepted", w.accepted);
  field(out, "requests", w.requests);
  key(out, "clients");
  out.push_back('{');
  field(out, "active", w.clients_active);
  field(out, "idle", w.clients_idle);
  close(out, '}');
  out.push_back(',');
  key(out, "upstream");
  out.push_back('{');
  conns(out, w.up);
  close(out, '}');
  out.push_back(',');
  field(out, "accept_wakeups", w.accept_wakeups);
  field(out, "accept_empty", w.accept_empty);
  key(out, "admin");
  out.push_back('{');
  field(out, "accepted", w.admin_accepted);
  field(out, "active", w.admin_active);
  field(out, "denied", w.admin_denied);
  close(out, '}');
  out.push_back(',');
  key(out, "buffering");
  out.push_back('{');
  field(out, "responses_total", w.buffered);
  field(out, "responses_disk_total", w.buffered_disk);
  field(out, "bytes_total", w.buffered_bytes);
  field(out, "largest_bytes", w.buffered_largest);
  field(out, "memory_bytes", w.buffered_memory);
  field(out, "errors_total", w.buffer_errors);
  key(out, "upstream_time_saved_seconds");
  appendMsAsSeconds(out, w.time_saved_ms);
  close(out, '}');
  out.push_back(',');
  key(out, "started_seconds_ago");
  appendMsAsSeconds(out, msSince(w.started_ms, now_ms));
  out.push_back(',');

  key(out, "upstreams");
  out.push_back('[');
  size_t next_server = w.server_begin;
  for (size_t u = 0; u < w.upstream_count; ++u) {
    const UpstreamSnap& us = s.upstreams[w.upstream_begin + u];
    out.push_back('{');
    key(out, "name");
    appendJsonString(out, us.name.view());
    out.push_back(',');
    field(out, "max_idle", us.max_idle);
    key(out, "servers");
    out.push_back('[');
    for (uint32_t k = 0; k < us.servers; ++k) {
      server(out, s.servers[next_server++]);
      out.push_back(',');
    }
    close(out, ']');
    out.append("},");
  }
  close(out, ']');
  out.push_back('}');
}

// ---------------------------------------------------------------- Prometheus

struct Labels {
  std::string buf;                                // all label sets, back to back
  std::vector<std::pair<size_t, size_t>> worker;  // per Snapshot::workers entry
  std::vector<std::pair<size_t, size_t>> server;  // per Snapshot::servers entry

  std::string_view get(std::pair<size_t, size_t> r) const {
    return std::string_view(buf).substr(r.first, r.second);
  }
};

void buildLabels(const Snapshot& s, Labels& l) {
  l.buf.reserve(s.workers.size() * 48 + s.servers.size() * 128);
  l.worker.resize(s.workers.size());
  l.server.resize(s.servers.size());
  for (size_t i = 0; i < s.workers.size(); ++i) {
    const WorkerSnap& w = s.workers[i];
    const size_t begin = l.buf.size();
    l.buf.append("worker=\"");
    appendUint(l.buf, w.slot);
    l.buf.append("\",pid=\"");
    appendInt(l.buf, w.pid);
    l.buf.append("\",generation=\"");
    appendUint(l.buf, w.generation);
    l.buf.push_back('"');
    const size_t worker_len = l.buf.size() - begin;
    l.worker[i] = {begin, worker_len};

    size_t next_server = w.server_begin;
    for (size_t u = 0; u < w.upstream_count; ++u) {
      const UpstreamSnap& us = s.upstreams[w.upstream_begin + u];
      for (uint32_t k = 0; k < us.servers; ++k, ++next_server) {
        const size_t sb = l.buf.size();
        l.buf.append(l.buf, begin, worker_len);
        l.buf.append(",upstream=\"");
        appendLabelValue(l.buf, us.name.view());
        l.buf.append("\",server=\"");
        appendLabelValue(l.buf, s.servers[next_server].address.view());
        l.buf.push_back('"');
        l.server[next_server] = {sb, l.buf.size() - sb};
      }
    }
  }
}

void family(std::string& out, std::string_view name, std::string_view type,
            std::string_view help) {
  out.append("# HELP ");
  out.append(name);
  out.push_back(' ');
  out.append(help);
  out.append("\n# TYPE ");
  out.append(name);
  out.push_back(' ');
  out.append(type);
  out.push_back('\n');
}

// name{labels[,extra]} value
void sampleStart(std::string& out, std::string_view name, std::string_view labels,
                 std::string_view extra = {}) {
  out.append(name);
  if (!labels.empty() || !extra.empty()) {
    out.push_back('{');
    out.append(labels);
    if (!labels.empty() && !extra.empty()) out.push_back(',');
    out.append(extra);
    out.push_back('}');
  }
  out.push_back(' ');
}

void sample(std::string& out, std::string_view name, std::string_view labels, uint64_t v,
            std::string_view extra = {}) {
  sampleStart(out, name, labels, extra);
  appendUint(out, v);
  out.push_back('\n');
}

template <typename Get>
void workerFamily(std::string& out, const Snapshot& s, const Labels& l, std::string_view name,
                  std::string_view type, std::string_view help, Get get) {
  family(out, name, type, help);
  for (size_t i = 0; i < s.workers.size(); ++i) {
    sample(out, name, l.get(l.worker[i]), get(s.workers[i]));
  }
}

template <typename Get>
void serverFamily(std::string& out, const Snapshot& s, const Labels& l, std::string_view name,
                  std::string_view type, std::string_view help, Get get) {
  family(out, name, type, help);
  for (size_t i = 0; i < s.servers.size(); ++i) {
    sample(out, name, l.get(l.server[i]), get(s.servers[i]));
  }
}

}  // namespace

void renderStatsJson(const StatsSegment& seg, const RenderContext& ctx, std::string& out) {
  Snapshot s;
  s.workers.reserve(16);
  s.upstreams.reserve(64);
  s.servers.reserve(64);
  takeSnapshot(seg, ctx.monotonic_ms, s);
  out.reserve(out.size() + 512 + s.workers.size() * 512 + s.upstreams.size() * 96 +
              s.servers.size() * 512);

  out.push_back('{');
  key(out, "version");
  appendJsonString(out, ctx.version);
  out.push_back(',');
  key(out, "master_pid");
  appendInt(out, s.master_pid);
  out.push_back(',');
  field(out, "generation", s.generation);
  key(out, "uptime_seconds");
  appendMsAsSeconds(out, msSince(s.started_ms, ctx.now_ms));
  out.push_back(',');
  key(out, "accept_mode");
  appendJsonString(out, s.accept_mode.view());
  out.push_back(',');

  key(out, "workers");
  out.push_back('[');
  for (const WorkerSnap& w : s.workers) {
    worker(out, s, w, ctx.now_ms);
    out.push_back(',');
  }
  close(out, ']');
  out.push_back(',');

  key(out, "totals");
  out.push_back('{');
  field(out, "accepted", s.accepted);
  field(out, "requests", s.requests);
  field(out, "clients_active", s.clients_active);
  field(out, "clients_idle", s.clients_idle);
  field(out, "upstream_open", s.up.open);
  field(out, "upstream_idle", s.up.idle);
  field(out, "upstream_active", s.up.active);
  field(out, "upstream_opened_total", s.up.opened);
  field(out, "upstream_reused_total", s.up.reused);
  field(out, "upstream_failed_total", s.up.failed);
  key(out, "reuse_ratio");
  appendRatio(out, s.up.reused, s.up.reused + s.up.opened);
  out.push_back(',');
  field(out, "workers", s.workers.size());
  field(out, "upstream_bound", s.bound);
  field(out, "admin_accepted", s.admin_accepted);
  field(out, "admin_active", s.admin_active);
  field(out, "admin_denied", s.admin_denied);
  close(out, '}');
  out.append("}\n");
}

void renderMetrics(const StatsSegment& seg, const RenderContext& ctx, std::string& out) {
  Snapshot s;
  s.workers.reserve(16);
  s.upstreams.reserve(64);
  s.servers.reserve(64);
  takeSnapshot(seg, ctx.monotonic_ms, s);
  Labels l;
  buildLabels(s, l);
  // ~19 worker samples and ~22 server samples (with the no-reuse reasons),
  // each about its label set plus 50 bytes.
  out.reserve(out.size() + 4096 + s.workers.size() * 19 * 120 +
              s.servers.size() * 22 * 200);

  family(out, "poolgate_info", "gauge", "Build and configuration of this poolgate (always 1).");
  out.append("poolgate_info{version=\"");
  appendLabelValue(out, ctx.version);
  out.append("\",accept_mode=\"");
  appendLabelValue(out, s.accept_mode.view());
  out.append("\"} 1\n");

  family(out, "poolgate_master_generation", "gauge",
         "Current generation of the master (incremented by each reload).");
  sample(out, "poolgate_master_generation", {}, s.generation);

  family(out, "poolgate_uptime_seconds", "gauge", "Seconds since the master started.");
  sampleStart(out, "poolgate_uptime_seconds", {});
  appendMsAsSeconds(out, msSince(s.started_ms, ctx.now_ms));
  out.push_back('\n');

  {
    uint64_t running = 0, draining = 0;
    for (const WorkerSnap& w : s.workers) (w.state == SlotState::kDraining ? draining : running)++;
    family(out, "poolgate_workers", "gauge", "Live worker processes by state.");
    sample(out, "poolgate_workers", {}, running, "state=\"running\"");
    sample(out, "poolgate_workers", {}, draining, "state=\"draining\"");
  }

  workerFamily(out, s, l, "poolgate_worker_accepted_total", "counter",
               "Client connections accepted by the worker (proxy listeners only).",
               [](const WorkerSnap& w) { return w.accepted; });
  workerFamily(out, s, l, "poolgate_worker_requests_total", "counter",
               "Responses completed by the worker (proxy listeners only).",
               [](const WorkerSnap& w) { return w.requests; });

  family(out, "poolgate_worker_clients", "gauge",
         "Client connections of the worker: active (an exchange in progress) or idle "
         "(keep-alive, between requests).");
  for (size_t i = 0; i < s.workers.size(); ++i) {
    sample(out, "poolgate_worker_clients", l.get(l.worker[i]), s.workers[i].clients_active,
           "state=\"active\"");
    sample(out, "poolgate_worker_clients", l.get(l.worker[i]), s.workers[i].clients_idle,
           "state=\"idle\"");
  }

  workerFamily(out, s, l, "poolgate_worker_accept_wakeups_total", "counter",
               "Times the worker woke up to accept.",
               [](const WorkerSnap& w) { return w.accept_wakeups; });
  workerFamily(out, s, l, "poolgate_worker_accept_empty_total", "counter",
               "Accept wake-ups that found no connection.",
               [](const WorkerSnap& w) { return w.accept_empty; });
  workerFamily(out, s, l, "poolgate_worker_admin_accepted_total", "counter",
               "Admin listener connections accepted by the worker, denied ones included.",
               [](const WorkerSnap& w) { return w.admin_accepted; });
  workerFamily(out, s, l, "poolgate_worker_admin_connections", "gauge",
               "Admin listener connections the worker has open.",
               [](const WorkerSnap& w) { return w.admin_active; });
  workerFamily(out, s, l, "poolgate_worker_admin_denied_total", "counter",
               "Admin listener connections from clients outside admin.allow (answered 403).",
               [](const WorkerSnap& w) { return w.admin_denied; });
  workerFamily(out, s, l, "poolgate_worker_buffered_responses_total", "counter",
               "Responses read ahead of a slow client into a spool (memory, then a temporary file).",
               [](const WorkerSnap& w) { return w.buffered; });
  workerFamily(out, s, l, "poolgate_worker_buffered_responses_disk_total", "counter",
               "Buffered responses that spilled to a temporary file.",
               [](const WorkerSnap& w) { return w.buffered_disk; });
  workerFamily(out, s, l, "poolgate_worker_buffered_bytes_total", "counter",
               "Response bytes that went through a spool.",
               [](const WorkerSnap& w) { return w.buffered_bytes; });
  workerFamily(out, s, l, "poolgate_worker_buffered_largest_bytes", "gauge",
               "The most one buffered response held at once.",
               [](const WorkerSnap& w) { return w.buffered_largest; });
  workerFamily(out, s, l, "poolgate_worker_buffered_memory_bytes", "gauge",
               "Spool memory the worker's responses hold now.",
               [](const WorkerSnap& w) { return w.buffered_memory; });
  workerFamily(out, s, l, "poolgate_worker_buffer_errors_total", "counter",
               "Temporary file writes or reads that failed (the response was cut short).",
               [](const WorkerSnap& w) { return w.buffer_errors; });
  workerFamily(out, s, l, "poolgate_worker_upstream_time_saved_seconds_total", "counter",
               "Time upstream connections were back in the pool while clients still read their responses.",
               [](const WorkerSnap& w) { return w.time_saved_ms / 1000; });
  workerFamily(out, s, l, "poolgate_worker_draining", "gauge",
               "1 while the worker drains (old generation or stopping), else 0.",
               [](const WorkerSnap& w) { return w.state == SlotState::kDraining ? 1u : 0u; });

  family(out, "poolgate_worker_start_time_seconds", "gauge",
         "Start time of the worker since the Unix epoch, in seconds.");
  for (size_t i = 0; i < s.workers.size(); ++i) {
    sampleStart(out, "poolgate_worker_start_time_seconds", l.get(l.worker[i]));
    appendMsAsSeconds(out, s.workers[i].started_ms);
    out.push_back('\n');
  }

  family(out, "poolgate_upstream_connections", "gauge",
         "Upstream connections of the worker to the server: idle (pooled) or active "
         "(carrying a request or connecting).");
  for (size_t i = 0; i < s.servers.size(); ++i) {
    sample(out, "poolgate_upstream_connections", l.get(l.server[i]), s.servers[i].c.idle,
           "state=\"idle\"");
    sample(out, "poolgate_upstream_connections", l.get(l.server[i]), s.servers[i].c.active,
           "state=\"active\"");
  }
  serverFamily(out, s, l, "poolgate_upstream_connections_open", "gauge",
               "Upstream connections the worker holds open to the server.",
               [](const ServerSnap& v) { return v.c.open; });
  serverFamily(out, s, l, "poolgate_upstream_opened_total", "counter",
               "New upstream connections established.",
               [](const ServerSnap& v) { return v.c.opened; });
  serverFamily(out, s, l, "poolgate_upstream_reused_total", "counter",
               "Requests sent on a pooled (reused) upstream connection.",
               [](const ServerSnap& v) { return v.c.reused; });
  serverFamily(out, s, l, "poolgate_upstream_failed_total", "counter",
               "Upstream connect failures, I/O errors and bad responses.",
               [](const ServerSnap& v) { return v.c.failed; });
  serverFamily(out, s, l, "poolgate_upstream_requests_total", "counter",
               "Requests sent to the server.",
               [](const ServerSnap& v) { return v.requests; });
  serverFamily(out, s, l, "poolgate_upstream_closed_idle_total", "counter",
               "Idle pooled connections closed (EOF from the server, idle timeout).",
               [](const ServerSnap& v) { return v.closed_idle; });
  serverFamily(out, s, l, "poolgate_upstream_trimmed_total", "counter",
               "Surplus idle connections closed: beyond max_idle and idle for trim_after.",
               [](const ServerSnap& v) { return v.trimmed; });
  serverFamily(out, s, l, "poolgate_upstream_expired_total", "counter",
               "Idle connections dropped at checkout because the server's Keep-Alive timeout was near.",
               [](const ServerSnap& v) { return v.expired; });
  serverFamily(out, s, l, "poolgate_upstream_direct_total", "counter",
               "Released connections that went straight to a request waiting for the server.",
               [](const ServerSnap& v) { return v.direct; });
  serverFamily(out, s, l, "poolgate_upstream_handed_total", "counter",
               "Connections handed to a request waiting in another worker (pool.max_conns).",
               [](const ServerSnap& v) { return v.handed; });
  serverFamily(out, s, l, "poolgate_upstream_received_total", "counter",
               "Connections received from another worker for a request waiting here.",
               [](const ServerSnap& v) { return v.received; });
  serverFamily(out, s, l, "poolgate_upstream_demand", "gauge",
               "Peak of concurrent requests on the server over the last 10 to 20 s.",
               [](const ServerSnap& v) { return v.demand; });
  serverFamily(out, s, l, "poolgate_upstream_queued", "gauge",
               "Requests of the worker waiting for a connection (pool.max_conns).",
               [](const ServerSnap& v) { return v.queued; });
  serverFamily(out, s, l, "poolgate_upstream_queue_timeouts_total", "counter",
               "Requests answered 503 after waiting queue_timeout for a connection.",
               [](const ServerSnap& v) { return v.queue_timeouts; });
  serverFamily(out, s, l, "poolgate_upstream_fails_total", "counter",
               "Connect failures counted toward health.max_fails.",
               [](const ServerSnap& v) { return v.fails; });
  serverFamily(out, s, l, "poolgate_upstream_retries_total", "counter",
               "Requests moved on to another attempt after a failure on this server.",
               [](const ServerSnap& v) { return v.retries; });
  serverFamily(out, s, l, "poolgate_upstream_tls_handshakes_total", "counter",
               "TLS handshakes completed on new connections to the server (upstreams[].tls).",
               [](const ServerSnap& v) { return v.tls_handshakes; });
  serverFamily(out, s, l, "poolgate_upstream_tls_resumed_total", "counter",
               "Upstream TLS handshakes that resumed a session.",
               [](const ServerSnap& v) { return v.tls_resumed; });
  serverFamily(out, s, l, "poolgate_upstream_server_healthy", "gauge",
               "1 while the server is in rotation (shared by all workers: passive failures, active "
               "check, DNS), else 0.",
               [](const ServerSnap& v) { return v.healthy ? 1u : 0u; });

  std::string reason_labels[kReasons];
  for (size_t r = 1; r < kReasons; ++r) {
    reason_labels[r] = std::string("reason=\"") + toString(static_cast<NoReuse>(r)) + '"';
  }
  family(out, "poolgate_upstream_no_reuse_total", "counter",
         "Finished upstream connections closed instead of pooled, by reason.");
  for (size_t i = 0; i < s.servers.size(); ++i) {
    for (size_t r = 1; r < kReasons; ++r) {
      sample(out, "poolgate_upstream_no_reuse_total", l.get(l.server[i]),
             s.servers[i].no_reuse[r], reason_labels[r]);
    }
  }

  family(out, "poolgate_upstream_connections_bound", "gauge",
         "Upper bound on pooled upstream connections: sum over live workers and their "
         "upstreams of max_idle x servers.");
  sample(out, "poolgate_upstream_connections_bound", {}, s.bound);
}

namespace {

// The text between `open` and the next `close` in `page`, or "" when absent.
std::string_view between(std::string_view page, std::string_view open, std::string_view close) {
  const size_t begin = page.find(open);
  if (begin == std::string_view::npos) return {};
  const size_t start = begin + open.size();
  const size_t end = page.find(close, start);
  return end == std::string_view::npos ? std::string_view() : page.substr(start, end - start);
}

// "'sha256-BASE64'", the CSP source expression of an inline element's text.
std::string hashSource(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr);
  unsigned char encoded[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(encoded, digest, static_cast<int>(length));
  return "'sha256-" + std::string(reinterpret_cast<const char*>(encoded), static_cast<size_t>(n)) + "'";
}

}  // namespace

std::string dashboardContentSecurityPolicy() {
  const std::string_view page = kDashboardBody;
  return "default-src 'none'; script-src " + hashSource(between(page, "<script>", "</script>")) +
         "; style-src " + hashSource(between(page, "<style>", "</style>")) +
         "; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
}

void renderDashboard(const RenderContext& ctx, std::string& out) {
  out.reserve(out.size() + sizeof(kDashboardHead) + sizeof(kDashboardBody) + ctx.version.size() + 16);
  out.append(kDashboardHead);
  appendHtmlText(out, ctx.version);
  out.append(kDashboardBody);
}

}  // namespace poolgate
