// Exchange: one request and its response, apart from the client connection
// that carries it.
//
// A ClientConnection holds an Exchange only while a request is in flight:
// from the first byte of its head until its response has been sent (or the
// connection closes). An idle keep-alive client holds none. Exchanges come
// from a per-worker ExchangeCache, a free list: a finished exchange is reset
// by constructing it afresh (nothing to forget to clear) and kept for the
// next request, so that steady traffic allocates none.
//
// The connection reads the request (http/request_reader.h) and hands the
// exchange its events; the exchange routes it, picks a server, takes a pooled
// connection or queues for one (max_conns), forwards the request (streamed,
// or collected into a spool first), retries where that is safe, relays the
// response into `out` (read ahead of a slow client into a spool), answers
// errors itself, and gives the upstream connection back. It sees its client
// only through ExchangeOwner: the socket, its timer and its state stay the
// connection's.
//
// An exchange is never finished while one of its own calls is on the stack:
// every event from outside (upstream, pool, timer) runs in a DispatchScope,
// and the connection finishes an exchange that completed meanwhile when the
// outermost scope closes. So code after a call that may complete the exchange
// (a flush, an error answer) still has it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "core/buffer.h"
#include "core/object_cache.h"
#include "core/socket.h"
#include "core/spool.h"
#include "http/forwarding.h"
#include "http/request_reader.h"
#include "pool/pool.h"
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

// A client connection's state (proxy/client_connection.h).
enum class ClientState : uint8_t {
  kIdle,      // keep-alive, waiting for the next request's first byte
  kHead,      // reading a request head
  kExchange,  // a request is being forwarded / answered
  kTunnel,    // after a 101: bytes relayed both ways until either side closes
  kClosing,   // flushing the last response, then close
  kClosed,
};

// The connection that carries an exchange, as the exchange sees it.
class ExchangeOwner {
 public:
  virtual ClientState clientState() const = 0;
  virtual void setClientState(ClientState state) = 0;
  virtual RequestReader& reader() = 0;
  // Sends what `out` (then the spool) holds, as far as the client takes it;
  // once the response is complete and sent, the exchange is finished (at
  // the end of the dispatch).
  virtual void flushClient() = 0;
  // Closes the client connection now (the exchange stays until it is freed).
  virtual void closeClient() = 0;
  virtual void armClientTimer() = 0;
  // Request bytes may go somewhere again: read on, if the client sent some.
  virtual void resumeReading() = 0;
  // A 101 from the upstream: the connection becomes a tunnel.
  virtual void startTunnel(const HttpParser& response, const char* base) = 0;
  // The upstream took the tunnel's bytes: relay more of the client's.
  virtual void relayTunnel() = 0;
  virtual void enterDispatch() = 0;
  virtual void leaveDispatch() = 0;
  // An owner that does not speak HTTP/1.1 to its client (an HTTP/2 stream)
  // may take the upstream's final response head as parsed, rather than
  // written into `out` as HTTP/1.1 for it to read back. true: it did; the
  // body then comes into `out` with Framing::kBare, and its end (with the
  // message's trailers, when chunked) through endResponseBody(). Offered
  // only when nothing waits in `out` and the response is not held.
  virtual bool takeResponseHead(const HttpParser&, const char*, Framing) { return false; }
  // The body of a head taken by takeResponseHead() has ended (its last bytes
  // may still wait in `out` or the spool); `message` has its trailers.
  virtual void endResponseBody(const HttpParser&, const char*) {}

 protected:
  ~ExchangeOwner() = default;
};

// Brackets an event that reaches a connection or its exchange from outside.
class DispatchScope {
 public:
  explicit DispatchScope(ExchangeOwner& owner) : owner_(owner) { owner_.enterDispatch(); }
  ~DispatchScope() { owner_.leaveDispatch(); }
  DispatchScope(const DispatchScope&) = delete;
  DispatchScope& operator=(const DispatchScope&) = delete;

 private:
  ExchangeOwner& owner_;
};

class ClientHost;

// Sent with every admin answer but the dashboard (JSON, metrics, health, and
// the admin listener's errors, 403 included): the browser must not guess
// another type, frame the answer, or load anything on its behalf.
inline constexpr std::string_view kAdminHeaders =
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n";

class Exchange final : private UpstreamUser, private PoolWaiter {
 public:
  // Backpressure: a side stops being read while the other side's unsent
  // bytes exceed the high mark, and starts again below the low mark.
  static constexpr size_t kHighWatermark = 64 * 1024;
  static constexpr size_t kLowWatermark = 16 * 1024;

  explicit Exchange(BufferPool& buffers);
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // Taken by `owner` for a request; `admin`: the admin listener's (its
  // answers carry kAdminHeaders, and it counts in no `requests`).
  void attach(ExchangeOwner& owner, ClientHost& host, const IpAddress& peer, bool tls, bool admin);

  // ---- The request, as the connection reads it.
  // Its head: what the exchange keeps of it, and the access record (with its
  // text when `log_text`: the access log is on).
  void beginRequest(const RequestReader& reader, bool log_text);
  // Routes the request and forwards it (or collects its body first).
  void start();
  void onRequestBody(RequestReader::Event event);
  void onRequestComplete();
  void onRequestError();
  // Any reader event but kHead (the owner's): handed to the step above.
  // false: stop parsing for now (more bytes needed, the request has ended
  // or failed). kNeedMore also sends what the reader's bytes brought:
  // only then, so that a framing error later in the same bytes (a bad
  // chunk) sends nothing.
  bool onRequestEvent(RequestReader::Event event);
  // Body bytes of the request still to come.
  bool requestPending() const;
  // Request bytes waiting to go upstream (SIZE_MAX: nowhere to put more);
  // the connection stops reading at kHighWatermark.
  size_t pendingRequestBytes() const;

  // ---- Answers made here.
  void respondError(int status, bool close_after);
  // `headers`: extra header lines, each ending in CRLF.
  void respond(int status, std::string_view content_type, std::string_view body, bool close_after,
               std::string_view headers = {});

  // ---- The record.
  // Writes the access record, once (`access_log` null: not logged).
  void log(AccessLog* access_log);
  // ...for a client that went away before its response was done (499).
  void logClosed(AccessLog* access_log, uint64_t now);

  // ---- The upstream connection, closed mid-exchange (counted in no_reuse),
  // or the pool's queue left.
  void abandonUpstream(NoReuse reason);
  void leaveQueue();
  // The client took enough of `out`: the upstream may be read again.
  void releaseHold();
  // The exchange is over: the spools' figures counted, their memory and files freed.
  void endSpools();

  IpAddress::Text client_ip;  // the client's address, as text
  bool tls = false;            // it came over TLS (X-Forwarded-Proto)
  bool admin = false;          // see attach()

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

 private:
  // The request.
  RequestReader& reader() const { return owner_->reader(); }
  // 100 Continue, where the client asked for it.
  void answerExpectation();
  // Where request bytes go: the upstream connection's output, or `held`
  // while queued; nullptr when the request is being answered here.
  Buffer* requestSink();
  // Everything of the request has been handed to the upstream connection.
  bool requestSent() const;
  ForwardContext forwardContext(std::string_view fallback_host) const;
  void collectBody();
  void storeBody(std::string_view bytes);
  void sendCollectedBody();
  void pumpBody();
  void bodySpoolFailed();  // a temporary file write or read failed: 507 / 502
  void refuseOversizedBody();
  // A chunked request body may still pass max_body_bytes: the upstream's
  // final response is held in out (not sent) until the body has ended, so
  // that the client can still get 413 instead. A response that outgrows
  // kHighWatermark goes out anyway (an app that answers while it reads).
  bool holdsResponse() const;
  // The held response is complete and its upstream connection gone, the
  // request body still arriving: it is read, counted and dropped.
  bool discardingBody() const;
  void dropHeldResponse();
  void beginAnswer(int status, bool close_after);
  void sendAnswer();
  void completeResponse();

  // The upstream connection: taken (from a pool or new), given back through
  // the reuse checklist; held while the client is behind (out and the spool
  // are full).
  void use(UpstreamConnection* conn, uint64_t now);
  void releaseUpstream(bool draining);
  void holdUpstream();
  // Response buffering: a body piece that the client is not ready for
  // (false: the spool could not take it, the response is cut).
  bool spoolResponseBody(const char* at, size_t length);

  // The upstream side (exchange_upstream.cc).
  // Picks a server and takes or opens a connection; with every candidate at
  // max_conns, queues (woken: a waiter that lost its turn keeps its place).
  // false: the client was answered here (an error).
  bool connectUpstream(bool woken = false);
  bool waitForConnection(int server_index, bool at_front);
  UpstreamConnection* openConnection(Server& server, int* error);  // nullptr: *error says why
  PickContext pickContext() const;
  bool retryAfter(UpstreamError error);
  void writeResponseHead(const HttpParser& parser, const char* base);
  void writeInterimResponse(const HttpParser& parser, const char* base);

  void onPoolAvailable() noexcept override;
  void onQueueTimeout() noexcept override;  // 503
  void onUpstreamConnected() noexcept override;
  void onUpstreamDrained() noexcept override;
  int onUpstreamHead(const HttpParser& parser, const char* base) noexcept override;
  void onUpstreamBody(const char* at, size_t length) noexcept override;
  void onUpstreamInputDone() noexcept override;
  void onUpstreamComplete() noexcept override;
  void onUpstreamError(UpstreamError error) noexcept override;

  ExchangeOwner* owner_ = nullptr;
  ClientHost* host_ = nullptr;
};

// A worker's free list of exchanges (core/object_cache.h): at most 256 wait.
class ExchangeCache : public ObjectCache<Exchange, BufferPool&> {
 public:
  static constexpr size_t kMaxCached = 256;
  explicit ExchangeCache(BufferPool& buffers) : ObjectCache(kMaxCached, buffers) {}
};

}  // namespace poolgate
