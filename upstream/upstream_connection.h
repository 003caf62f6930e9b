// UpstreamConnection: one TCP connection to an upstream server.
//
// It is opened for a request, carries it (request bytes out, the response
// read by a ResponseReader and handed to its user), and is then
// either checked into its server's Pool or closed. While idle in the pool it
// keeps read interest: any readability means EOF or stray bytes, and the
// connection is evicted (nginx's keepalive close handler).
#pragma once

#include <cstdint>

#include "config/config.h"
#include "core/buffer.h"
#include "core/event_loop.h"
#include "core/fd.h"
#include "core/tls.h"
#include "core/transport.h"
#include "pool/pool.h"
#include "http/response_reader.h"

namespace poolgate {

class Server;

enum class UpstreamError : uint8_t {
  kNone,
  kConnectFailed,   // refused, unreachable...
  kConnectTimeout,  // timeouts.upstream_connect
  kSendFailed,      // write error
  kSendTimeout,     // timeouts.upstream_send
  kReadTimeout,     // timeouts.upstream_read
  kClosedEarly,     // EOF or reset before any response byte
  kTruncated,       // EOF or reset in the middle of a response
  kBadResponse,     // the response does not parse
  kTlsFailed,       // upstreams[].tls: the handshake failed (verification, protocol)
};
const char* toString(UpstreamError error);

// The exchange that currently uses a connection.
class UpstreamUser {
 public:
  virtual void onUpstreamConnected() noexcept = 0;
  // Every request byte queued so far has been written.
  virtual void onUpstreamDrained() noexcept = 0;
  // A response head (also a 1xx interim one). Return 0, or -1 to reject it.
  // Accepting a 101 turns the connection into a tunnel: from then on every
  // byte the upstream sends comes as body, and its EOF as completion.
  virtual int onUpstreamHead(const HttpParser& parser, const char* base) noexcept = 0;
  virtual void onUpstreamBody(const char* at, size_t length) noexcept = 0;
  // What one readiness event brought has been handed over (head, body): the
  // moment to write it on, in one send rather than one per piece.
  virtual void onUpstreamInputDone() noexcept = 0;
  virtual void onUpstreamComplete() noexcept = 0;
  virtual void onUpstreamError(UpstreamError error) noexcept = 0;

 protected:
  ~UpstreamUser() = default;
};

class UpstreamConnection final : public IoHandler, public PoolMember, public Deletable {
 public:
  enum class State : uint8_t { kConnecting, kActive, kIdle, kClosed };

  // Opens a new connection for `user`. Returns nullptr (and *error = errno)
  // when the connect fails at once; the failure is counted. With
  // *error == kAtCapacity the server is at pool.max_conns: nothing was tried.
  static constexpr int kAtCapacity = -1;
  // `headers`: the worker's spare header arrays (may be null).
  static UpstreamConnection* open(EventLoop& loop, BufferPool& buffers, HeaderStore* headers, Server& server,
                                  const TimeoutsConfig& timeouts, UpstreamUser& user, int* error);
  // Takes a connection checked out of the pool for `user`.
  void attach(UpstreamUser& user);
  // A plain TCP connection another worker handed over (pool/handover.h):
  // pooled idle in `server`'s pool. nullptr (and `fd` closed) if it cannot be
  // watched; the caller then frees its place under max_conns.
  static UpstreamConnection* adopt(EventLoop& loop, BufferPool& buffers, HeaderStore* headers, Server& server,
                                   const TimeoutsConfig& timeouts, Fd fd, const HandOverNote& note);

  // Starts a request: resets the response parser. `head_request` = no body.
  void beginRequest(bool head_request);
  // Request bytes to send; call flush() after appending.
  Buffer& output() { return out_; }
  // The response being read (its trailers, in onUpstreamComplete()).
  const ResponseReader& response() const { return reader_; }
  void flush();
  size_t pendingOutput() const { return out_.size() - sent_; }
  // Moves the whole request written so far (sent or not) into `into`, if it
  // was all kept; false when part of it was already discarded.
  bool takeReplay(Buffer& into);

  void pauseReading(bool paused);

  // The exchange is done with this connection: pool it or close it.
  void release(bool request_complete, bool exiting);
  // Close now (error paths). Counts nothing but the close itself.
  void close();

  State state() const { return state_; }
  Server& server() { return server_; }
  bool reused() const { return reused_; }
  bool responseStarted() const { return response_started_; }
  int statusCode() const { return status_; }

  void onIoEvent(uint32_t events) noexcept override;
  bool probeIdle(uint64_t idle_ms) noexcept override;
  void evictFromPool() noexcept override;
  int detachSocket(HandOverNote& note) noexcept override;

 private:
  UpstreamConnection(EventLoop& loop, BufferPool& buffers, HeaderStore* headers, Server& server,
                     const TimeoutsConfig& timeouts, Fd fd, uint64_t created_ms);
  ~UpstreamConnection() override = default;

  void onConnectDone();
  // upstreams[].tls: after the TCP connect, the handshake (still in
  // kConnecting, under the upstream_connect timer).
  void startTls();
  void continueHandshake();
  void onConnected();
  // TLS: reads the records that came after the response (a session ticket,
  // a close_notify...). True while the connection stays fit for the pool:
  // nothing but TLS housekeeping arrived.
  bool settleTls();
  TlsSession& tls() { return transport_.tls(); }
  void readResponse();
  void readLoop();
  // Hands the reader's events to the user (after a 101: the tunnel's bytes).
  void parseInput();
  bool onResponseHead();  // false: the connection failed or was closed
  void onEof();
  void fail(UpstreamError error);
  void armActivityTimer();
  void onTimer();
  void endRequest();

  EventLoop& loop_;
  Server& server_;
  const TimeoutsConfig& timeouts_;
  Transport transport_;  // the socket, and its TLS session for a TLS upstream
  Timer timer_;
  Buffer out_;
  size_t sent_ = 0;          // bytes of out_ already written but kept for a replay
  bool replayable_ = true;   // out_ still holds the whole request
  ResponseReader reader_;    // the read buffer and the response parser
  UpstreamUser* user_ = nullptr;
  State state_ = State::kConnecting;
  UpstreamError error_ = UpstreamError::kNone;
  int status_ = 0;
  bool readable_ = false;
  bool hung_up_ = false;  // EPOLLRDHUP/HUP/ERR seen: read to EOF, never trust a short read
  bool reading_ = false;  // inside readResponse(): no re-entry
  bool writable_ = false;
  bool paused_ = false;
  bool reused_ = false;
  bool response_started_ = false;
  bool response_complete_ = false;
  bool needs_eof_ = false;
  bool in_request_ = false;  // counted in server_.active_requests
  // From the server's Keep-Alive header (see parseKeepAlive()): reuse only
  // while idle less than this (UINT64_MAX = no hint), and whether the server
  // will take another request at all.
  uint64_t idle_limit_ms_ = UINT64_MAX;
  bool upstream_max_reached_ = false;
  // Received from another worker: how long it had been idle there, added to
  // this pool's idle time until its next request.
  uint64_t idle_elsewhere_ms_ = 0;
};

}  // namespace poolgate
