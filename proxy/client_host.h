// ClientHost: what a ClientConnection needs from the process that runs it.
//
// The worker (process/worker.h) implements it; a client connection sees only
// this. So proxy/ does not include process/ or admin/, and there is no
// Worker <-> ClientConnection include cycle: the connection reaches its event
// loop, buffers, stats slot, spool limits, access log and upstream groups
// here, tells the host when it opens, closes and finishes a request, and asks
// it for routes and for the admin listener's answers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "config/config.h"
#include "core/buffer.h"
#include "core/event_loop.h"
#include "core/log_throttle.h"
#include "core/spool.h"
#include "http/parser.h"
#include "http/request_reader.h"
#include "proxy/access_log.h"
#include "proxy/exchange.h"
#include "shm/stats_segment.h"
#include "upstream/upstream.h"

namespace poolgate {

class ClientConnection;

// Which kind of listening socket a client came through.
enum class ListenerKind : uint8_t { kProxy, kAdmin };

// An answer of the admin listener (/stats, /metrics, /health, the dashboard):
// see admin/admin.h.
struct AdminAnswer {
  int status = 200;
  std::string_view content_type;
  std::string_view headers;  // whole header lines, each ending in CRLF
  std::string body;
};

class ClientHost {
 public:
  virtual EventLoop& loop() = 0;
  virtual BufferPool& buffers() = 0;
  virtual HeaderStore& headerStore() = 0;
  virtual const Config& config() const = 0;
  virtual WorkerSlot& stats() = 0;  // this process's slot in the shared segment
  virtual UpstreamGroup& upstream(size_t index) = 0;
  virtual bool draining() const = 0;
  virtual AccessLog* accessLog() = 0;  // nullptr when off
  // Response buffering: the limits of one response's spool, and what all of
  // the host's spools may hold in memory together.
  virtual const SpoolLimits& spoolLimits() const = 0;
  virtual SpoolBudget& spoolBudget() = 0;
  virtual LogThrottle& bufferLog() = 0;
  // The free list of exchanges (proxy/exchange.h).
  virtual ExchangeCache& exchanges() = 0;
  // The free list of request readers (http/request_reader.h).
  virtual RequestReaderCache& readers() = 0;

  // Route lookup (proxy/routing.h). nullptr = 404.
  virtual const RouteConfig* route(std::string_view host, std::string_view path) const = 0;
  // The admin listener's answer to a GET or HEAD of `path`.
  virtual AdminAnswer answerAdmin(std::string_view path) = 0;

  // Client bookkeeping.
  virtual void onClientOpened(ClientConnection& client) = 0;
  virtual void onClientClosed(ClientConnection& client) = 0;
  virtual void onRequestDone() = 0;  // a proxied response completed (admin answers do not count)

 protected:
  ~ClientHost() = default;
};

}  // namespace poolgate
