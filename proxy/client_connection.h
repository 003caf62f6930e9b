// ClientConnection: one accepted client socket.
//
// It owns the socket (plain or TLS), its timer, lingering close and the
// tunnel after a 101, and reads requests with a RequestReader
// (http/request_reader.h), one at a time: pipelined requests wait in the
// reader's buffer so that responses leave in order. Each request is an
// Exchange (proxy/exchange.h), taken from the worker's cache at the request's
// first byte; the connection hands it the reader's events and writes what it
// puts in its `out`, and gives it back when the response has been sent. An
// idle keep-alive client holds no reader, no buffer and no exchange.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "core/event_loop.h"
#include "core/fd.h"
#include "core/socket.h"
#include "core/timer.h"
#include "core/tls.h"
#include "core/transport.h"
#include "http/request_reader.h"
#include "proxy/client_host.h"
#include "proxy/exchange.h"
#include "proxy/http2_connection.h"
#include "proxy/tls_server.h"

namespace poolgate {

class ClientConnection final : public IoHandler, public Deletable, private ExchangeOwner {
 public:
  using State = ClientState;

  // `tls`: the listener's TLS contexts, nullptr for a plain listener.
  // `admin_denied`: an admin client outside admin.allow; its requests get 403.
  // `h2c`: a plain listener with http2 on: a client that opens with the
  // HTTP/2 preface speaks HTTP/2 (a TLS one chooses it with ALPN).
  ClientConnection(ClientHost& worker, Fd fd, const SocketAddress& peer, ListenerKind kind,
                   const TlsServer* tls = nullptr, bool admin_denied = false, bool h2c = false);
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
  friend class Http2Connection;

  // HTTP/2 from here on: an Http2Connection takes the socket's events, with
  // `received` (bytes already read) as its first input.
  void startHttp2(std::string_view received);
  // The HTTP/2 connection has open streams (counted in clients_active) or none.
  void setHttp2Busy(bool busy);
  // A plain client with h2c: its first bytes are (a prefix of) the preface.
  // 1: HTTP/2, 0: not yet known, -1: HTTP/1.x.
  int sniffPreface();
  // TLS: drives the handshake; true once it is done (false: wait, or closed).
  bool handshakeClient();
  TlsSession& tls() { return transport_.tls(); }
  // Closes without an answer, but gracefully: our FIN first, then what the
  // client still sends is read and dropped for a moment, so that unread bytes
  // do not turn the close into a reset (a plain HTTP request to a TLS port).
  void lingeringClose();
  void discardInput();
  void readClient();
  // Hands the reader's events to the exchange until it needs more bytes (or
  // the request has ended, or the connection stops reading).
  void parseClient();
  void relayClientBytes();  // the tunnel: client bytes to the upstream
  void relayLoop();
  void setState(State state);
  void armClientTimer() override;
  void onClientTimer();
  // Where this client's exchanges are logged: nowhere for the admin
  // listener (its /stats polling would fill the access log).
  AccessLog* accessLog();
  void beginExchange();  // the first byte of a request: an Exchange from the worker's cache
  void onRequestHead();
  void handleAdmin();
  void respondError(int status, bool close_after);  // with an exchange made for it if none
  // The exchange's response has been sent: log it, then the next request
  // (pipelined), idle, or close. Only from settle().
  void finishExchange();
  void settle();

  // ExchangeOwner.
  ClientState clientState() const override { return state_; }
  void setClientState(ClientState state) override { setState(state); }
  RequestReader& reader() override { return *reader_; }
  void flushClient() override;
  void closeClient() override { close(); }
  void resumeReading() override;
  void startTunnel(const HttpParser& response, const char* base) override;
  void relayTunnel() override;
  void enterDispatch() override;
  void leaveDispatch() override;

  ClientHost& worker_;
  Transport transport_;  // the socket, and its TLS session on a TLS listener
  const TlsServer* tls_server_;  // null: plain
  IpAddress peer_;
  ListenerKind kind_;
  bool admin_denied_;
  State state_ = State::kIdle;
  bool readable_ = false;
  bool hung_up_ = false;  // EPOLLRDHUP/HUP/ERR seen: read to EOF, never trust a short read
  bool writable_ = true;
  bool counted_active_ = false;
  bool first_request_ = true;
  bool h2c_ = false;             // see the constructor; cleared once the first bytes said HTTP/1.x
  bool lingering_ = false;       // see lingeringClose()
  bool in_relay_ = false;        // inside relayClientBytes(): no re-entry
  bool finish_pending_ = false;  // the exchange is done: finished by settle()
  uint16_t depth_ = 0;           // dispatches on the stack (DispatchScope)
  Timer timer_;
  // The read buffer and the request parser, from the worker's cache: held
  // from a request's first byte until the client is idle with nothing
  // buffered.
  RequestReaderCache::Ptr reader_;
  // The request in flight, from its first byte to the end of its response;
  // none while idle.
  ExchangeCache::Ptr ex_;
  // Set when the connection speaks HTTP/2: it owns the streams, and their
  // exchanges, from then on.
  std::unique_ptr<Http2Connection> h2_;
};

}  // namespace poolgate
