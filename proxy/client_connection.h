// ClientConnection: one accepted client socket and the exchange it carries.
//
// Requests are read by a RequestReader (http/request_reader.h), one at a
// time: the connection acts on each event after the reader has returned, and
// pipelined requests wait in the reader's buffer so that responses leave in
// order. An exchange picks a route and, with request buffering, first
// receives the whole request body into a Spool; then it picks a server,
// borrows an upstream connection from the server's pool (or opens one),
// sends the request to it and relays the response back (read ahead of a slow
// client into another Spool), then returns the upstream connection through
// the reuse checklist.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/buffer.h"
#include "core/event_loop.h"
#include "core/fd.h"
#include "core/socket.h"
#include "core/spool.h"
#include "core/tls.h"
#include "proxy/access_log.h"
#include "http/forwarding.h"
#include "http/parser.h"
#include "http/request_reader.h"
#include "http/request_rules.h"
#include "proxy/client_host.h"
#include "proxy/exchange.h"
#include "proxy/tls_server.h"
#include "upstream/upstream.h"
#include "upstream/upstream_connection.h"

namespace poolgate {

class ClientConnection final : public IoHandler,
                               public Deletable,
                               private UpstreamUser,
                               private PoolWaiter {
 public:
  enum class State : uint8_t {
    kIdle,      // keep-alive, waiting for the next request's first byte
    kHead,      // reading a request head
    kExchange,  // a request is being forwarded / answered
    kTunnel,    // after a 101: bytes relayed both ways until either side closes
    kClosing,   // flushing the last response, then close
    kClosed,
  };

  // `tls`: the listener's TLS contexts, nullptr for a plain listener.
  // `admin_denied`: an admin client outside admin.allow; its requests get 403.
  ClientConnection(ClientHost& worker, Fd fd, const SocketAddress& peer, ListenerKind kind,
                   const TlsServer* tls = nullptr, bool admin_denied = false);
  ~ClientConnection() override;

  void start();
  // The worker drains: an idle client gets a short grace, a busy one is
  // closed after its current response.
  void drain();
  void close();

  State state() const { return state_; }
  uint32_t worker_index = 0;  // position in Worker's client list

  void onIoEvent(uint32_t events) noexcept override;

 private:
  // Client side.
  // TLS: drives the handshake; true once it is done (false: wait, or closed).
  bool handshakeClient();
  // Closes without an answer, but gracefully: our FIN first, then what the
  // client still sends is read and dropped for a moment, so that unread bytes
  // do not turn the close into a reset (a plain HTTP request to a TLS port).
  void lingeringClose();
  void discardInput();
  ssize_t receive(void* buffer, size_t size);      // recv(), or through TLS
  ssize_t transmit(const void* buffer, size_t size);  // send(), or through TLS
  void readClient();
  // Acts on the reader's events until it needs more bytes (or the request
  // has ended, or the connection stops reading).
  void parseClient();
  // Upgrade (WebSocket...): the 101 went to the client; relay raw bytes.
  void startTunnel(const HttpParser& response, const char* base);
  void relayClientBytes();
  void relayLoop();
  void flushClient();
  void armClientTimer();
  void onClientTimer();
  // Where this client's exchanges are logged: nowhere for the admin
  // listener (its /stats polling would fill the access log).
  AccessLog* accessLog();
  void setState(State state);
  void beginExchange();  // the first byte of a request: an Exchange from the worker's cache
  void completeResponse();
  void finishExchange();

  // Request handling: the reader's events.
  void onRequestHead();
  void onRequestBody(RequestReader::Event event);
  void onRequestComplete();
  void onRequestError();
  // The body passed max_body_bytes: 413 (or a cut response), the upstream
  // connection closed.
  void refuseOversizedBody();

  // A chunked request body may still pass max_body_bytes: the upstream's
  // final response is held in out_ (not sent) until the body has ended, so
  // that the client can still get 413 instead. A response that outgrows
  // kHighWatermark goes out anyway (an app that answers while it reads).
  bool holdsResponse() const;
  // The held response is complete and its upstream connection gone, the
  // request body still arriving: it is read, counted and dropped.
  bool discardingBody() const;
  void dropHeldResponse();

  void startExchange();
  // Request buffering: the head is written now (into held_) and the body
  // goes to body_spool_; sendCollectedBody() takes a connection once the body
  // is whole, or once it outgrows the spool (the rest then streams).
  void collectBody();
  void storeBody(std::string_view bytes);
  void sendCollectedBody();
  // Moves spooled body bytes to the upstream connection, a high-water mark at
  // a time, as it drains.
  void pumpBody();
  void bodySpoolFailed();  // a temporary file write or read failed: 507 / 502
  ForwardContext forwardContext(std::string_view fallback_host) const;
  void answerExpectation();  // 100 Continue, where the client asked for it
  void handleAdmin();
  // Picks a server and takes or opens a connection; with every candidate at
  // max_conns, queues (woken: a waiter that lost its turn keeps its place).
  // false: the client was answered here (an error), and the exchange may be
  // over (ex_ gone): the caller must not look at it.
  bool connectUpstream(bool woken = false);
  bool waitForConnection(int server_index, bool at_front);
  void leaveQueue();
  void onPoolAvailable() noexcept override;
  size_t pendingRequestBytes() const;
  PickContext pickContext() const;  // what the balancer may look at
  bool requestPending() const;  // body bytes of the current request still to come
  void respondError(int status, bool close_after);
  // `headers`: extra header lines, each ending in CRLF.
  void respond(int status, std::string_view content_type, std::string_view body, bool close_after,
               std::string_view headers = {});
  // respond() in two halves, around the bytes (http/forwarding.h writes them).
  void beginAnswer(int status, bool close_after);
  void sendAnswer();

  // Upstream side (UpstreamUser).
  void onUpstreamConnected() noexcept override;
  void onUpstreamDrained() noexcept override;
  int onUpstreamHead(const HttpParser& parser, const char* base) noexcept override;
  void onUpstreamBody(const char* at, size_t length) noexcept override;
  void onUpstreamInputDone() noexcept override;
  void onUpstreamComplete() noexcept override;
  void onUpstreamError(UpstreamError error) noexcept override;
  void writeResponseHead(const HttpParser& parser, const char* base);
  void writeInterimResponse(const HttpParser& parser, const char* base);
  bool retryAfter(UpstreamError error);

  ClientHost& worker_;
  Fd fd_;
  const TlsServer* tls_server_;  // null: plain
  TlsSession tls_;
  IpAddress peer_;
  ListenerKind kind_;
  bool admin_denied_;
  State state_ = State::kIdle;
  Timer timer_;
  // The read buffer and the request parser, from the worker's cache: held
  // from a request's first byte until the client is idle with nothing
  // buffered. (The response's bytes are the exchange's: Exchange::out.)
  RequestReaderCache::Ptr reader_;
  bool readable_ = false;
  bool hung_up_ = false;  // EPOLLRDHUP/HUP/ERR seen: read to EOF, never trust a short read
  bool writable_ = true;
  bool counted_active_ = false;
  bool first_request_ = true;
  bool lingering_ = false;       // see lingeringClose()
  bool in_relay_ = false;        // inside relayClientBytes(): no re-entry

  // The request in flight, from its first byte to the end of its response
  // (see proxy/exchange.h); none while idle.
  ExchangeCache::Ptr ex_;
  uint32_t exchange_seq_ = 0;  // counts them: after a call that may end the exchange, sameExchange()
  // Still the exchange that was current when `seq` was read: an upstream
  // flush() can fail at once, answer the client and end it, and a pipelined
  // request may already have the next one (from the same cache slot).
  bool sameExchange(uint32_t seq) const { return ex_ && exchange_seq_ == seq; }
};

}  // namespace poolgate
