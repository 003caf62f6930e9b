// libFuzzer target: the HTTP/2 request downgrade. An HPACK header block and a
// body in; out comes the HTTP/1.1 request poolgate would forward in its place.
//
// The block is decoded by nghttp2's own HPACK inflater (what the session
// does before our on_header callback), then each field goes to the proxy's
// H2Request (http/h2_request.h), which writes the head and frames the body,
// as Http2Stream does. What H2Request accepts is read back by a strict
// HTTP/1.1 parser, as the upstream would. Invariants, beyond "no crash":
//   - the forwarded bytes are at most one request: never a second message
//     (the smuggling a downgrade risks), never bytes left over after it;
//   - a request that parses is exactly the accepted one: same method and
//     target, the body as sent, every field as given (cookies joined), no
//     CR/LF/NUL smuggled into a field, Host from :authority, at most one
//     framing header.
// Input: byte 0 = flags (bit 0: the HEADERS ended the stream), bytes 1-2 =
// the block's length (little endian), then the block, then the body.
// A Content-Length that does not match the body is skipped: the session
// resets such a stream before a byte of it is forwarded.
#include <nghttp2/nghttp2.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "http/h2_request.h"
#include "tests/fuzz/fuzz_common.h"

namespace poolgate::fuzz {
namespace {

struct Field {
  std::string name, value;
};

bool inflate(const uint8_t* block, size_t size, std::vector<Field>* fields) {
  nghttp2_hd_inflater* inflater = nullptr;
  if (nghttp2_hd_inflate_new(&inflater) != 0) return false;
  bool ok = true;
  for (;;) {
    nghttp2_nv nv;
    int flags = 0;
    ssize_t n = nghttp2_hd_inflate_hd2(inflater, &nv, &flags, block, size, 1);
    if (n < 0) {
      ok = false;
      break;
    }
    block += n;
    size -= static_cast<size_t>(n);
    if (flags & NGHTTP2_HD_INFLATE_EMIT) {
      fields->push_back({std::string(reinterpret_cast<char*>(nv.name), nv.namelen),
                         std::string(reinterpret_cast<char*>(nv.value), nv.valuelen)});
      if (fields->size() > 1000) break;
    }
    if (flags & NGHTTP2_HD_INFLATE_FINAL) {
      nghttp2_hd_inflate_end_headers(inflater);
      break;
    }
    if (n == 0 && (flags & NGHTTP2_HD_INFLATE_EMIT) == 0) break;
  }
  nghttp2_hd_inflate_del(inflater);
  return ok;
}

const Field* find(const std::vector<Field>& fields, std::string_view name) {
  for (const Field& f : fields) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

void run(const uint8_t* data, size_t size) {
  if (size < 3) return;
  const bool end_stream = (data[0] & 1) != 0;
  size_t block_size = std::min<size_t>(data[1] | (size_t{data[2]} << 8), size - 3);
  const uint8_t* block = data + 3;
  std::string body(reinterpret_cast<const char*>(block + block_size), size - 3 - block_size);
  std::vector<Field> fields;
  if (!inflate(block, block_size, &fields)) return;

  H2Request request;
  for (const Field& f : fields) {
    if (!request.add(f.name, f.value)) return;  // refused: a stream error, nothing forwarded
  }
  BufferPool buffers;
  Buffer out(buffers);
  if (!request.write(out, end_stream)) return;
  if (end_stream) body.clear();
  if (request.framing() == H2Request::Framing::kLength) {
    const Field* length = find(fields, "content-length");
    if (length == nullptr || std::to_string(body.size()) != length->value) return;
  }
  // The body as DATA frames of varying size.
  Splitter splitter(data, size);
  for (size_t at = 0; at < body.size();) {
    size_t n = std::min(splitter.next(), body.size() - at);
    request.writeData(out, std::string_view(body).substr(at, n));
    at += n;
  }
  if (!end_stream) request.writeEnd(out);

  const std::string forwarded(out.data(), out.size());
  failureContext() = forwarded;
  if (find(fields, ":method")->value == "CONNECT") {
    // A tunnel request (refused by the exchange, 405): its head alone, no body.
    FUZZ_CHECK(forwarded.find("\r\n\r\n") == forwarded.size() - 4);
    return;
  }
  Reparser parsed(HTTP_REQUEST, forwarded, request.headRequest());
  FUZZ_CHECK(parsed.messages.size() <= 1);
  if (parsed.error != HPE_OK) {
    FUZZ_CHECK(parsed.messages.empty() || !parsed.messages[0].complete);
    return;
  }
  FUZZ_CHECK(parsed.messages.size() == 1 && parsed.messages[0].complete);
  const Message& m = parsed.messages[0];
  FUZZ_CHECK(m.method == find(fields, ":method")->value);
  const Field* authority = find(fields, ":authority");
  if (m.method == "CONNECT") {
    FUZZ_CHECK(m.target == authority->value);
  } else {
    FUZZ_CHECK(m.target == find(fields, ":path")->value);
  }
  FUZZ_CHECK(m.body == body);
  FUZZ_CHECK(m.count("host") <= 1 && m.count("content-length") + m.count("transfer-encoding") <= 1);
  FUZZ_CHECK(m.count("connection") == 0 && m.count("te") == 0 && m.count("upgrade") == 0);
  if (authority != nullptr) {
    bool host_ok = false;
    for (const auto& h : m.headers) host_ok |= equalsIgnoreCase(h.first, "host") && h.second == authority->value;
    FUZZ_CHECK(host_ok);
  }
  // Every regular field arrives as it was given (cookies joined into one).
  std::string cookies;
  size_t expected = 0;
  for (const Field& f : fields) {
    if (f.name.empty() || f.name[0] == ':' || f.name == "host" || f.name == "te") continue;
    if (f.name == "cookie") {
      cookies += (cookies.empty() ? "" : "; ") + f.value;
      continue;
    }
    ++expected;
    bool seen = false;
    for (const auto& h : m.headers) seen |= h.first == f.name && h.second == f.value;
    FUZZ_CHECK(seen);
  }
  for (const auto& h : m.headers) {
    FUZZ_CHECK(h.second.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos);
    if (h.first == "cookie") FUZZ_CHECK(h.second == cookies);
  }
  FUZZ_CHECK(m.headers.size() == expected + (cookies.empty() ? 0 : 1) + m.count("host") +
                                     m.count("transfer-encoding") +
                                     (find(fields, "content-length") == nullptr ? m.count("content-length") : 0));
}

}  // namespace
}  // namespace poolgate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  poolgate::fuzz::run(data, size);
  return 0;
}
