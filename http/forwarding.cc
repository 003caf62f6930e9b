#include "http/forwarding.h"

#include <charconv>
#include <cstdio>

namespace poolgate {

namespace {

// Every value of the headers named `name`, each followed by ", ".
void appendValues(Buffer& out, const HttpHead& head, const char* base, std::string_view name) {
  for (const HeaderSlice& h : head.headers) {
    if (equalsIgnoreCase(h.name.view(base), name)) {
      out.append(h.value.view(base));
      out.append(", ");
    }
  }
}

void appendStatusLine(Buffer& out, int status, std::string_view reason) {
  out.append("HTTP/1.1 ");
  appendNumber(out, static_cast<uint64_t>(status));
  out.append(" ");
  out.append(reason.empty() ? reasonPhrase(status) : reason);
  out.append("\r\n");
}

}  // namespace

void appendNumber(Buffer& out, uint64_t value, int base) {
  char digits[24];
  auto result = std::to_chars(digits, digits + sizeof digits, value, base);
  out.append(digits, static_cast<size_t>(result.ptr - digits));
}

void appendHeader(Buffer& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

void writeForwardedRequestHead(Buffer& out, const HttpParser& request, const char* base,
                               const ForwardContext& context) {
  writeForwardedRequestFields(out, request, base, context);
  endForwardedRequestHead(out, request.chunked(), request.hasContentLength(), request.declaredLength());
}

void writeForwardedRequestFields(Buffer& out, const HttpParser& request, const char* base,
                                 const ForwardContext& context) {
  const HttpHead& head = request.head();

  out.append(head.method.view(base));
  out.append(" ");
  out.append(context.target.empty() ? head.target.view(base) : context.target);
  out.append(" HTTP/1.1\r\n");

  bool has_host = false;
  bool has_xff = false;
  bool has_via = false;
  for (const HeaderSlice& h : head.headers) {
    std::string_view name = h.name.view(base);
    if (isHopByHop(name) || listedInConnection(head, base, name)) continue;
    if (equalsIgnoreCase(name, "content-length") || equalsIgnoreCase(name, "expect") ||
        equalsIgnoreCase(name, "x-forwarded-proto")) {
      continue;
    }
    if (equalsIgnoreCase(name, "x-forwarded-for")) {
      has_xff = true;
      continue;
    }
    if (equalsIgnoreCase(name, "via")) {
      has_via = true;
      continue;
    }
    if (equalsIgnoreCase(name, "host")) has_host = true;
    appendHeader(out, name, h.value.view(base));
  }
  if (!has_host && !context.fallback_host.empty()) appendHeader(out, "Host", context.fallback_host);

  // Every earlier hop first, then us.
  out.append("X-Forwarded-For: ");
  if (has_xff) appendValues(out, head, base, "x-forwarded-for");
  out.append(context.client_ip);
  out.append("\r\nX-Forwarded-Proto: ");
  out.append(context.proto);
  out.append("\r\nVia: ");
  if (has_via) appendValues(out, head, base, "via");
  out.append("1.1 poolgate\r\n");
  if (!context.upgrade.empty()) {  // hop-by-hop, so forwarded only as the upgrade itself
    out.append("Connection: upgrade\r\nUpgrade: ");
    out.append(context.upgrade);
    out.append("\r\n");
  }
}

void endForwardedRequestHead(Buffer& out, bool chunked, bool has_length, uint64_t length) {
  if (chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  } else if (has_length) {
    out.append("Content-Length: ");
    appendNumber(out, length);
    out.append("\r\n");
  }
  out.append("\r\n");
}

Framing chooseResponseFraming(const HttpParser& response, bool head_request, bool client_http11) {
  const int status = response.statusCode();
  if (head_request || status == 204 || status == 304) return Framing::kNone;
  if (response.hasContentLength() && !response.chunked()) return Framing::kLength;
  return client_http11 ? Framing::kChunked : Framing::kClose;
}

bool isClientResponseField(const HttpHead& head, const char* base, std::string_view name, Framing framing) {
  // The framing is ours: Content-Length is written from the parsed value (one
  // header, even if the upstream repeated it, and kept even if its
  // Connection header lists it), or left out when we frame otherwise.
  if (equalsIgnoreCase(name, "content-length")) return framing == Framing::kNone;
  return !isHopByHop(name) && !listedInConnection(head, base, name);
}

void writeClientResponseHead(Buffer& out, const HttpParser& response, const char* base, Framing framing,
                             bool keep_alive, bool client_http11) {
  const HttpHead& head = response.head();
  appendStatusLine(out, response.statusCode(), head.status_text.view(base));
  for (const HeaderSlice& h : head.headers) {
    const std::string_view name = h.name.view(base);
    if (isClientResponseField(head, base, name, framing)) appendHeader(out, name, h.value.view(base));
  }
  if (framing == Framing::kLength) {
    out.append("Content-Length: ");
    appendNumber(out, response.declaredLength());
    out.append("\r\n");
  } else if (framing == Framing::kChunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  }
  if (!keep_alive) {
    out.append("Connection: close\r\n");
  } else if (!client_http11) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
}

void writeInterimResponseHead(Buffer& out, const HttpParser& response, const char* base) {
  const HttpHead& head = response.head();
  appendStatusLine(out, response.statusCode(), head.status_text.view(base));
  for (const HeaderSlice& h : head.headers) {
    std::string_view name = h.name.view(base);
    if (!isHopByHop(name)) appendHeader(out, name, h.value.view(base));
  }
  out.append("\r\n");
}

void appendBodyPiece(Buffer& out, Framing framing, const char* at, size_t length) {
  if (length == 0) return;
  if (framing == Framing::kChunked) {
    appendNumber(out, length, 16);
    out.append("\r\n");
    out.append(at, length);
    out.append("\r\n");
  } else {
    out.append(at, length);
  }
}

void appendBodyEnd(Buffer& out, Framing framing) {
  if (framing == Framing::kChunked) out.append("0\r\n\r\n");
}

void appendBodyEnd(Buffer& out, Framing framing, const HttpParser& message, const char* base) {
  if (framing == Framing::kChunked) appendLastChunk(out, message, base);
}

void appendLastChunk(Buffer& out, const HttpParser& message, const char* base) {
  out.append("0\r\n");
  for (const HeaderSlice& h : message.trailers()) {
    const std::string_view name = h.name.view(base), value = h.value.view(base);
    if (forwardableTrailer(name, value)) appendHeader(out, name, value);
  }
  out.append("\r\n");
}

bool interimGoesToClient(int status, bool client_http11) { return status != 100 && client_http11; }

void writeLocalResponse(Buffer& out, int status, std::string_view content_type, std::string_view body,
                        bool keep_alive, bool head_request, std::string_view headers) {
  out.append("HTTP/1.1 ");
  appendNumber(out, static_cast<uint64_t>(status));
  out.append(" ");
  out.append(reasonPhrase(status));
  out.append("\r\nContent-Type: ");
  out.append(content_type);
  out.append("\r\nContent-Length: ");
  appendNumber(out, body.size());
  out.append(keep_alive ? "\r\n" : "\r\nConnection: close\r\n");
  out.append(headers);
  out.append("Cache-Control: no-store\r\n\r\n");
  if (!head_request) out.append(body);
}

void writeErrorResponse(Buffer& out, int status, bool keep_alive, bool head_request, std::string_view headers) {
  char body[64];
  const std::string_view reason = reasonPhrase(status);
  const int n = std::snprintf(body, sizeof body, "%d %.*s\n", status, static_cast<int>(reason.size()), reason.data());
  writeLocalResponse(out, status, "text/plain", std::string_view(body, static_cast<size_t>(n)), keep_alive, head_request,
                     headers);
}

void writeSwitchingProtocolsHead(Buffer& out, const HttpParser& response, const char* base) {
  const HttpHead& head = response.head();
  appendStatusLine(out, 101, head.status_text.view(base));
  for (const HeaderSlice& h : head.headers) {
    std::string_view name = h.name.view(base);
    if (isHopByHop(name) || listedInConnection(head, base, name)) continue;
    appendHeader(out, name, h.value.view(base));
  }
  out.append("Connection: upgrade\r\nUpgrade: ");
  out.append(findHeader(head, base, "upgrade"));
  out.append("\r\n\r\n");
}

}  // namespace poolgate
