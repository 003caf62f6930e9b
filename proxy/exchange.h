// Exchange: the state of one request and its response, apart from the client
// connection that carries it.
//
// A ClientConnection holds an Exchange only while a request is in flight:
// from the first byte of its head until its response has been sent (or the
// connection closes). An idle keep-alive client holds none, and waits for its
// next request with only the connection's own fields. Exchanges come from a
// per-worker ExchangeCache, a free list: a finished exchange is reset by
// constructing it afresh (nothing to forget to clear) and kept for the next
// request, so that steady traffic allocates none.
//
// What concerns the exchange alone is done here: describing the request and
// logging it, holding, releasing or abandoning its upstream connection, and
// its spools. What also concerns the client's socket (reading, answering,
// routing, retries, queueing) is still driven by ClientConnection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "core/buffer.h"
#include "core/object_cache.h"
#include "core/socket.h"
#include "core/spool.h"
#include "http/forwarding.h"
#include "proxy/access_log.h"
#include "upstream/upstream.h"
#include "upstream/upstream_connection.h"

namespace poolgate {

// How the current request's body travels to the upstream.
enum class BodyPath : uint8_t {
  kDirect,   // as it arrives, into the upstream connection's output (or held while queued)
  kCollect,  // into body_spool, whole, before an upstream connection is taken
  kSpooled,  // from body_spool to the upstream connection, as it drains
};

class ClientHost;
class RequestReader;

struct Exchange {
  explicit Exchange(BufferPool& buffers) : held(buffers), out(buffers) {}
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // The request's head has been read: what the exchange keeps of it, and
  // the access record (with its text when `log_text`: the access log is on).
  void beginRequest(const RequestReader& reader, bool log_text);
  // Writes the access record, once (`access_log` null: not logged).
  void log(AccessLog* access_log);
  // ...for a client that went away before its response was done (499).
  void logClosed(AccessLog* access_log, uint64_t now);

  // The upstream connection: taken (from a pool or new), given back through
  // the reuse checklist, or closed mid-exchange (counted in no_reuse).
  void use(UpstreamConnection* conn, uint64_t now);
  void releaseUpstream(bool draining);
  void abandonUpstream(NoReuse reason);
  // The upstream waits for the client (out and the spool are full), or reads on.
  void holdUpstream();
  void releaseHold();
  // Everything of the request has been handed to the upstream connection.
  bool requestSent() const;
  // Where request bytes go: the upstream connection's output, or `held`
  // while queued; nullptr when the request is being answered here.
  Buffer* requestSink();

  // Response buffering: a body piece that the client is not ready for
  // (false: the spool could not take it, the response is cut).
  bool spoolResponseBody(ClientHost& host, const char* at, size_t length);
  // The exchange is over: the spools' figures counted, their memory and files freed.
  void endSpools(ClientHost& host);

  IpAddress::Text client_ip;  // the client's address, as text

  // Where it goes.
  UpstreamGroup* group = nullptr;
  int server_index = -1;
  int queued_server = -1;  // waiting in that server's pool queue (max_conns)
  TriedSet tried;
  uint32_t attempts = 0;
  bool stale_retried = false;
  UpstreamConnection* upstream = nullptr;
  std::string hash_value;  // balance = hash, hash_key = header:NAME: that header's value

  // The request.
  bool head_request = false;
  bool idempotent = false;
  bool request_chunked = false;
  bool request_complete = false;
  bool body_started = false;  // body bytes went to an upstream
  bool expect_continue = false;
  bool upgrade = false;  // the request asked to switch protocols (Connection: upgrade + Upgrade)
  BodyPath body_path = BodyPath::kDirect;
  bool body_rechunk = false;   // kSpooled before the body ended, chunked: sent as our own chunks
  bool body_end_sent = false;  // ...and the last chunk has gone to the upstream
  bool host_missing = false;   // collected head without Host (HTTP/1.0): added once a server is chosen
  bool pumping = false;        // inside pumpBody(): a nested call only asks for another round
  bool pump_again = false;
  std::unique_ptr<Spool> body_spool;  // the request body, collected (made on first use)
  Buffer held;  // request bytes while waiting for a connection (max_conns), or a collected body's head

  // The response.
  Buffer out;  // bytes for the client, not sent yet
  bool response_started = false;   // a response byte was queued for the client
  bool response_held = false;      // ...but none sent: it waits for the request's end
  bool response_complete = false;
  bool keep_alive = false;
  bool route_buffers = true;     // the route's response_buffering
  bool buffer_response = false;  // this response may be read ahead of the client (Spool)
  bool spooling = false;         // ...and is: the client fell behind
  bool upstream_held = false;    // the upstream waits for the client
  Framing framing = Framing::kNone;
  std::unique_ptr<Spool> spool;  // what the client has not taken yet (made on first use)
  uint64_t released_ms = 0;      // the upstream connection went back while the client still read

  AccessRecord record;
  bool record_pending = false;  // a request head was parsed and not yet logged

  // What only holds capacity for the next request survives the reset in the
  // cache: the access log's text (allocated once, while the log is on) and
  // the hash header's copy.
  struct Kept {
    std::unique_ptr<AccessText> text;
    std::string hash_value;
  };
  Kept keep() {
    hash_value.clear();
    return Kept{std::move(record.text), std::move(hash_value)};
  }
  void restore(Kept&& kept) {
    record.text = std::move(kept.text);
    hash_value = std::move(kept.hash_value);
  }
};

// A worker's free list of exchanges (core/object_cache.h): at most 256 wait.
class ExchangeCache : public ObjectCache<Exchange, BufferPool&> {
 public:
  static constexpr size_t kMaxCached = 256;
  explicit ExchangeCache(BufferPool& buffers) : ObjectCache(kMaxCached, buffers) {}
};

}  // namespace poolgate
