// How heads are rewritten on their way through the proxy. Pure functions over
// parsed heads (slices into the read buffer), writing into an output Buffer:
// the request head for the upstream and the response head for the client.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/buffer.h"
#include "http/parser.h"

namespace poolgate {

void appendNumber(Buffer& out, uint64_t value, int base = 10);
void appendHeader(Buffer& out, std::string_view name, std::string_view value);

struct ForwardContext {
  std::string_view client_ip;      // appended to X-Forwarded-For
  std::string_view proto;          // X-Forwarded-Proto: "http" or "https"
  std::string_view fallback_host;  // Host for requests that had none (HTTP/1.0)
  std::string_view target;         // the request target to send ("" = as received)
  std::string_view upgrade = {};   // the client asked to switch to this protocol ("" = no)
};

// The request line (always HTTP/1.1 upstream), the client's end-to-end
// headers, X-Forwarded-For / X-Forwarded-Proto / Via, and our own framing
// (Transfer-Encoding: chunked or Content-Length). Hop-by-hop headers, those
// named in Connection, Expect (answered by the proxy) and the client's
// Content-Length and X-Forwarded-Proto are not passed on.
void writeForwardedRequestHead(Buffer& out, const HttpParser& request, const char* base,
                               const ForwardContext& context);

// The same in two halves, for a body received whole before anything is sent
// (request buffering): the head up to its framing (no Host line when
// `context.fallback_host` is empty and the request had none: the caller adds
// it once a server is chosen), then the framing the body travels with.
void writeForwardedRequestFields(Buffer& out, const HttpParser& request, const char* base,
                                 const ForwardContext& context);
// Transfer-Encoding: chunked, or Content-Length: `length` (when `has_length`),
// then the blank line that ends the head.
void endForwardedRequestHead(Buffer& out, bool chunked, bool has_length, uint64_t length);

// How a response body travels to the client.
enum class Framing : uint8_t {
  kNone,     // no body (HEAD, 204, 304)
  kLength,   // Content-Length, passed through
  kChunked,  // re-chunked: a chunked or close-delimited upstream body to an HTTP/1.1 client
  kClose,    // close-delimited: a body of unknown length to an HTTP/1.0 client
  kBare,     // the bytes alone: the client's protocol frames them (an HTTP/2 stream's DATA)
};

Framing chooseResponseFraming(const HttpParser& response, bool head_request, bool client_http11);

// Whether the header field `name` of `head` (a response) goes on to the
// client as it is: not hop-by-hop, nor named in its Connection header, and
// not Content-Length unless `framing` is kNone (HEAD, 304: as received; a
// body's length is written by us, from the parsed value).
bool isClientResponseField(const HttpHead& head, const char* base, std::string_view name, Framing framing);

// The status line and end-to-end headers of `response`, our framing header
// and Connection as `keep_alive` and the client's version require.
void writeClientResponseHead(Buffer& out, const HttpParser& response, const char* base, Framing framing,
                             bool keep_alive, bool client_http11);

// A 1xx interim response (103 Early Hints...) passed to an HTTP/1.1 client.
void writeInterimResponseHead(Buffer& out, const HttpParser& response, const char* base);

// A piece of response body as the client gets it: a chunk of its own with
// Framing::kChunked, else as is.
void appendBodyPiece(Buffer& out, Framing framing, const char* at, size_t length);

// The end of a response body as the client gets it: the last chunk with
// Framing::kChunked, else nothing.
void appendBodyEnd(Buffer& out, Framing framing);
// The same, passing on the trailer fields of `message` (a chunked message
// just completed; see HttpParser::trailers) that forwardableTrailer() allows.
void appendBodyEnd(Buffer& out, Framing framing, const HttpParser& message, const char* base);
// The last chunk of a chunked body with those trailers.
void appendLastChunk(Buffer& out, const HttpParser& message, const char* base);

// Whether an upstream's 1xx interim response goes on to the client: not a 100
// (the proxy answers Expect itself), and never to an HTTP/1.0 client.
bool interimGoesToClient(int status, bool client_http11);

// A response made by the proxy itself: `headers` are extra header lines, each
// ending in CRLF; the body is left out for a HEAD request.
void writeLocalResponse(Buffer& out, int status, std::string_view content_type, std::string_view body,
                        bool keep_alive, bool head_request, std::string_view headers = {});
// An error answer: text/plain, "<status> <reason>\n".
void writeErrorResponse(Buffer& out, int status, bool keep_alive, bool head_request, std::string_view headers = {});

// A 101 answering an upgrade the client asked for: its end-to-end headers,
// then Connection: upgrade and the upstream's Upgrade.
void writeSwitchingProtocolsHead(Buffer& out, const HttpParser& response, const char* base);

}  // namespace poolgate
