// Http2Connection: a client connection that speaks HTTP/2 (listen[].http2):
// the socket-less session of http/h2_session.h (nghttp2's framing, HPACK,
// stream states and flow control, and each request written as HTTP/1.1), on
// our socket and our event loop.
//
// Every stream is an Http2Stream, which is the ExchangeOwner of one Exchange
// (proxy/exchange.h), exactly as a ClientConnection is for HTTP/1.1: the
// exchange routes, balances, takes pooled upstream connections or queues for
// them (max_conns), retries and buffers as it does for any request. The
// stream speaks HTTP/1.1 to it. Its request head is written from the HTTP/2
// fields (http/h2_request.h) and read back by the same RequestReader, with the
// same checks. So what reaches an upstream from an HTTP/2 client is what an
// HTTP/1.1 client could have sent, checked by the same code. The upstream's
// response head comes to the stream parsed (ExchangeOwner::takeResponseHead)
// and its body bare, for HEADERS and DATA; what the exchange writes itself as
// HTTP/1.1 (its own answers, 1xx, a held response) is read by a
// ResponseReader.
//
// Backpressure both ways is HTTP/2 flow control: DATA from the client is
// acknowledged (WINDOW_UPDATE) only as the exchange takes it, and a response
// is read from its exchange only while the stream's DATA buffer is below the
// high-water mark, so a client that does not open its window holds the
// upstream (or fills the response spool) as a slow HTTP/1.1 client would.
//
// Dispatch works as in ClientConnection: every event from outside (socket,
// timer, an exchange's upstream) runs in a scope; when the outermost one
// closes, settle() finishes the exchanges that completed, refills streams
// whose DATA ran low, writes what the session has to send and frees closed
// streams. Nothing is freed, and nghttp2 is never re-entered, while one of
// its callbacks or an exchange's call is on the stack.
#pragma once

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/buffer.h"
#include "core/event_loop.h"
#include "core/intrusive_list.h"
#include "core/socket.h"
#include "core/timer.h"
#include "core/transport.h"
#include "http/h2_request.h"
#include "http/h2_session.h"
#include "http/request_reader.h"
#include "http/response_reader.h"
#include "proxy/client_host.h"
#include "proxy/exchange.h"

namespace poolgate {

class ClientConnection;
class Http2Connection;

class Http2Stream final : public H2Stream, private ExchangeOwner {
 public:
  explicit Http2Stream(Http2Connection& connection);
  ~Http2Stream() override;

  // A HEADERS frame opened stream `id`.
  void open(int32_t id);

  // The session wants DATA for this stream.
  ssize_t readBody(uint8_t* buf, size_t length, uint32_t* flags);

  // ---- From the connection's settle().
  bool finishPending() const { return finish_pending_; }
  void finishExchange();
  bool wantsPull() const { return want_pull_; }
  void pull();
  // The client connection closes: an exchange in progress ends here (499).
  void abort();

  Http2Stream* next_free = nullptr;  // the connection's free list
  // Its places in the connection's lists (only the streams on them are
  // visited, not every open one).
  ListLink<Http2Stream> ready_link;  // work for settle(): an exchange to finish, DATA to refill
  ListLink<Http2Stream> timer_link;  // its timer to be set at the end of settle()
  // The timer for what the stream waits for now (see armClientTimer()).
  void setTimer();

 private:
  // H2Stream: the request as HTTP/1.1 in pending_, from the session.
  void onRequestBytes() override { pumpRequest(); }
  void onRefused(int status) override { respondError(status); }
  bool takesData() const override { return !finished_ && state_ != ClientState::kClosing; }
  void onClosed(uint32_t error_code) override;

  // ExchangeOwner.
  ClientState clientState() const override { return state_; }
  void setClientState(ClientState state) override { state_ = state; }
  RequestReader& reader() override { return *reader_; }
  void flushClient() override;
  void closeClient() override;
  void armClientTimer() override;
  void resumeReading() override;
  void startTunnel(const HttpParser& response, const char* base) override;
  void relayTunnel() override;
  void enterDispatch() override;
  void leaveDispatch() override;
  bool takeResponseHead(const HttpParser& response, const char* base, Framing framing) override;
  void endResponseBody(const HttpParser& message, const char* base) override;

  // The request: HTTP/1.1 bytes from `pending_` into the reader, and the
  // reader's events to the exchange, as far as the exchange takes them.
  void pumpRequest();
  void onRequestHead();
  void respondError(int status);
  // The response. The upstream's head comes parsed (takeResponseHead), its
  // body bare in the exchange's out (then its spool). Anything else there
  // (poolgate's own answers, 1xx, a held response) is HTTP/1.1, read back.
  void readResponse();
  bool refillOut();
  bool takeBareBytes();
  bool takeResponseBytes();
  void onResponseHead();
  std::vector<nghttp2_nv>& startFields(int status, const HttpHead& head, const char* base);
  void addField(std::vector<nghttp2_nv>& nva, std::string_view name, std::string_view value);
  void submitHead(std::vector<nghttp2_nv>& nva, bool interim, bool bodyless);
  void keepTrailers(const HttpParser& message, const char* base);
  bool submitTrailers();
  void onTimer();

  Http2Connection& conn_;
  ClientState state_ = ClientState::kHead;
  RequestReaderCache::Ptr reader_;
  ExchangeCache::Ptr ex_;
  ResponseReader response_;
  Buffer body_;               // response body bytes for DATA frames
  std::string trailers_;      // the response's trailers, lowercased: "name\0value\0" each
  Timer timer_;
  char status_text_[4] = {};     // :status of the head being submitted
  bool head_submitted_ = false;  // HEADERS (final) submitted
  bool body_complete_ = false;   // the response has been read to its end
  bool cut_short_ = false;       // ...which came before its body's end: reset after the last DATA
  bool bare_ = false;            // the upstream's head was taken parsed: the body is bare in out
  bool bare_end_ = false;        // ...and the exchange has seen its end (endResponseBody)
  bool deferred_ = false;        // readBody() said NGHTTP2_ERR_DEFERRED
  bool want_pull_ = false;
  bool finish_pending_ = false;
  bool finished_ = false;  // the exchange has been logged and given back
};

class Http2Connection final : public H2Session, private TurnEndHandler {
 public:
  static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

  Http2Connection(ClientConnection& client, ClientHost& host, Transport& transport, const IpAddress& peer);
  ~Http2Connection() override;

  // Starts the session: our SETTINGS, then `received` (bytes already read,
  // the preface of a plain connection) as the first input. false: closed.
  bool start(std::string_view received);
  void onIoEvent(uint32_t events);
  // The worker drains: GOAWAY, streams already open complete.
  void drain();
  // The client connection closes: every stream's exchange ends.
  void abort();

  // ---- For its streams.
  ClientHost& host() { return host_; }
  const IpAddress& peer() const { return peer_; }
  bool secure() const { return transport_.secure(); }
  void enter() { ++depth_; }
  void leave();
  // The stream has work for settle(): its exchange to finish, or DATA to
  // refill (once, however often it asks before settle() comes to it).
  void streamReady(Http2Stream& stream) { listPush(ready_, stream, &Http2Stream::ready_link); }
  // What the stream waits for may have changed: its timer is set once, when
  // settle() has run. A stream whose response goes out within the turn it
  // came in arms no send timer; one whose head arrives whole, no header timer.
  void streamTimer(Http2Stream& stream);
  // Reused for every response head (nghttp2 copies what it is given).
  std::vector<nghttp2_nv>& scratchFields() { return scratch_fields_; }
  std::string& scratchNames() { return scratch_names_; }

 private:
  struct Scope {
    explicit Scope(Http2Connection& c) : c_(c) { c_.enter(); }
    ~Scope() { c_.leave(); }
    Http2Connection& c_;
  };

  // H2Session: streams, counters, the flood warning.
  H2Stream* openStream(int32_t id) override;
  void onStreamClosed(H2Stream& stream) override;
  void onResetReceived() override;
  void onFrameSent(uint8_t type) override;
  void onFlood() override;

  Http2Stream* takeStream();
  void giveStream(Http2Stream* stream);
  // Every open stream; `f` may delete the one it is given.
  template <class F>
  void forEachStream(F f) {
    for (H2Stream* s = openStreams(); s != nullptr;) {
      H2Stream* next = s->nextOpen();
      f(static_cast<Http2Stream&>(*s));
      s = next;
    }
  }
  bool hasStreams() const { return openStreams() != nullptr; }
  void receive();
  // At the end of the outermost dispatch: asks for onTurnEnd(), where the
  // work of every event of the loop's turn is finished and written at once.
  void settle();
  void onTurnEnd() noexcept override;
  void flush();
  void send();
  void armTimer();
  void onTimer();
  void submitFinalGoaway();
  void updateActive();

  ClientConnection& client_;
  ClientHost& host_;
  Transport& transport_;
  IpAddress peer_;
  Buffer out_;  // frames from the session, not yet written
  Timer timer_;
  std::vector<Http2Stream*> closed_;   // closed by the session, freed in settle()
  Http2Stream* ready_ = nullptr;       // streams with work for settle() (streamReady)
  Http2Stream* timers_ = nullptr;      // streams whose timer settle() sets (streamTimer)
  Http2Stream* free_ = nullptr;        // spare streams, for the next ones
  size_t free_count_ = 0;
  uint16_t depth_ = 0;
  bool readable_ = false;
  bool hung_up_ = false;  // EPOLLRDHUP/HUP/ERR seen: read to EOF, never trust a short read
  bool writable_ = true;
  bool draining_ = false;
  bool goaway_final_ = false;  // the GOAWAY with the last stream id has been submitted
  bool closing_ = false;     // close once out_ has gone (or cannot)
  bool turn_end_pending_ = false;  // onTurnEnd() is asked for
  bool dead_ = false;        // closed: nothing more happens here
  bool idle_timer_ = false;  // the timer runs client_keepalive
  std::vector<nghttp2_nv> scratch_fields_;
  std::string scratch_names_;
};

}  // namespace poolgate
