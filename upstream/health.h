// Health of upstream servers: the shared verdict, and the active check.
//
// One SharedHealth per upstream address lives in the shared-memory segment,
// so every worker and the master see the same verdict:
//   - passive: workers count connect failures; `max_fails` of them within
//     `fail_timeout` take the address out of rotation for `fail_timeout`,
//     for all workers at once;
//   - active: the master alone runs `check_path` probes (once per address
//     for the whole instance, not once per worker) and writes the result.
// Plain atomics, no lock: a verdict a few microseconds stale is harmless.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "core/event_loop.h"
#include "core/fd.h"
#include "core/socket.h"
#include "core/timer.h"
#include "core/tls.h"
#include "core/transport.h"

namespace poolgate {

enum class CheckState : uint32_t {
  kNone = 0,     // no active check (or none finished yet)
  kPassing = 1,
  kFailing = 2,
};

struct SharedHealth {
  std::atomic<uint64_t> down_until_ms{0};    // passive verdict (CLOCK_MONOTONIC ms)
  std::atomic<uint64_t> window_start_ms{0};  // first failure of the current window
  std::atomic<uint32_t> fails{0};            // failures in the current window
  std::atomic<uint32_t> check{0};            // CheckState, written by the master
  std::atomic<uint64_t> checks_total{0};
  std::atomic<uint64_t> check_failures_total{0};

  void reset();
  // In rotation: not marked down by passive health, not failing its check.
  bool healthy(uint64_t now_ms) const {
    return now_ms >= down_until_ms.load(std::memory_order_relaxed) &&
           check.load(std::memory_order_relaxed) != static_cast<uint32_t>(CheckState::kFailing);
  }
  // A failure counted toward max_fails; true when it marked the address down.
  bool noteFailure(uint64_t now_ms, uint32_t max_fails, uint64_t fail_timeout_ms);
  // A success ends the failure window (no shared write unless there is one).
  void noteSuccess() {
    if (fails.load(std::memory_order_relaxed) != 0) fails.store(0, std::memory_order_relaxed);
  }
};

class UpstreamTls;

// One active health check of one address: connect (and, for a TLS upstream,
// the handshake with the same verification as requests get), `GET path`,
// read the status line; 2xx and 3xx pass. Everything is non-blocking on
// `loop`, and the whole probe is bounded by `timeout_ms`. Used by the master.
class HealthProbe final : private IoHandler {
 public:
  using Done = std::function<void(bool passed, const std::string& why)>;

  // `tls` (may be null: plain HTTP) must outlive the probe; `tls_host` is the
  // configured server host, for SNI and the certificate check.
  HealthProbe(EventLoop& loop, const SocketAddress& address, std::string host_header, std::string path,
              const UpstreamTls* tls = nullptr, std::string tls_host = {});
  ~HealthProbe();
  HealthProbe(const HealthProbe&) = delete;
  HealthProbe& operator=(const HealthProbe&) = delete;

  // Starts a probe unless one is running; `done` is called exactly once,
  // unless cancel() comes first.
  void start(uint64_t timeout_ms, Done done);
  void cancel();
  bool running() const { return static_cast<bool>(transport_); }

 private:
  void onIoEvent(uint32_t events) noexcept override;
  void finish(bool passed, const std::string& why);
  bool handshake();  // TLS: true once done
  bool sendRequest();
  void readStatus();
  void closeSocket();

  EventLoop& loop_;
  SocketAddress address_;
  std::string request_;
  Transport transport_;
  size_t sent_ = 0;
  std::string received_;
  bool connected_ = false;
  const UpstreamTls* tls_config_;
  std::string tls_host_;
  Done done_;
  Timer deadline_;
};

// The status code of an HTTP/1.x status line at the start of `bytes`:
// 100..599, 0 when the line is not complete yet, -1 when it is not one.
int parseStatusLine(const std::string& bytes);

}  // namespace poolgate
