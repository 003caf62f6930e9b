// H2Request: an HTTP/2 request's header fields turned into the HTTP/1.1 head
// that is forwarded in its place (RFC 9113 section 8.3, RFC 9110), without a
// socket or a session: nghttp2 hands the fields over one at a time, and the
// head is written once they have all come.
//
// This is where a downgrade could smuggle a second request, so every field is
// checked here even where nghttp2 checks it too: no CR, LF or NUL anywhere,
// no whitespace at either end of a value, lowercase token names, pseudo-header
// fields first, once each, and only the four a request may carry; no
// connection-specific field (Connection, Keep-Alive, Proxy-Connection,
// Transfer-Encoding, Upgrade), TE only as "trailers"; a Host that names
// another authority than :authority is refused. The request line is made of
// visible ASCII only, so that the HTTP/1.1 side parses exactly one request.
//
// The body's framing is ours: a Content-Length the client sent stays (the
// session checks the DATA against it), a body without one goes chunked, and
// a request that ended with its HEADERS gets no body (Content-Length: 0 where
// the method usually has one). Trailers (HEADERS after DATA) go on in the
// last chunk of a chunked body; HTTP/1.1 has no place for them after a
// Content-Length body, where they are dropped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/buffer.h"

namespace poolgate {

class H2Request {
 public:
  enum class Framing : uint8_t {
    kNone,     // the request ended with its HEADERS
    kLength,   // Content-Length, DATA as it comes
    kChunked,  // DATA as chunks, then the last chunk
  };

  // Forgets the last request; keeps the strings' capacity.
  void clear();

  // One field, as decoded. false: the request is malformed (a stream error,
  // PROTOCOL_ERROR); add() takes nothing more.
  bool add(std::string_view name, std::string_view value);
  // Fields' bytes so far, as SETTINGS_MAX_HEADER_LIST_SIZE counts them
  // (name + value + 32 each).
  size_t listBytes() const { return list_bytes_; }

  // Writes the HTTP/1.1 head into `out`. `end_stream`: the HEADERS frame
  // ended the stream. false: malformed (nothing written).
  bool write(Buffer& out, bool end_stream);
  Framing framing() const { return framing_; }
  bool headRequest() const { return method_ == "HEAD"; }

  // The body's bytes as they go out, per framing(): one DATA frame's payload,
  // then the end of the body. kNone writes nothing (a CONNECT's DATA included:
  // it is refused further on).
  void writeData(Buffer& out, std::string_view data) const;
  void writeEnd(Buffer& out) const;

  // A field of trailers (HEADERS after the body), checked like the head's
  // fields. false: malformed (a stream error). Kept for writeEnd() when the
  // body goes chunked and forwardableTrailer() allows it.
  bool addTrailer(std::string_view name, std::string_view value);
  // Trailer bytes so far, counted as listBytes() counts the head's.
  size_t trailerBytes() const { return trailer_bytes_; }

 private:
  bool addPseudo(std::string_view name, std::string_view value);

  std::string method_, scheme_, authority_, path_, host_;
  std::string fields_;  // "name: value\r\n" each, in arrival order
  std::string cookie_;  // cookie fields, joined with "; " (RFC 9113 section 8.2.3)
  std::string trailers_;  // "name: value\r\n" each, for the last chunk
  size_t list_bytes_ = 0;
  size_t trailer_bytes_ = 0;
  bool regular_seen_ = false;
  bool failed_ = false;
  bool has_length_ = false;
  bool zero_length_ = false;  // ...and it is 0
  bool has_host_ = false;
  Framing framing_ = Framing::kNone;
};

}  // namespace poolgate
