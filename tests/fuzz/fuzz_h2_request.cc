// libFuzzer target: the HTTP/2 request downgrade. An HPACK header block and a
// body in; out comes the HTTP/1.1 request poolgate would forward in its place.
//
// The block is decoded by nghttp2's own HPACK inflater (what the session
// does before our on_header callback), then each field goes to the proxy's
// H2Request (http/h2_request.h), which writes the head and frames the body,
// as the session's streams do (http/h2_session.h). What H2Request accepts is read back by a strict
// HTTP/1.1 parser, as the upstream would (the checks of fuzz_h2_common.h).
// The frames target (fuzz_h2_frames.cc) reaches the same code through the
// session; this one goes deeper into the fields and HPACK, a block at a time.
// Input: byte 0 = flags (bit 0: the HEADERS ended the stream; bit 1: the
// block's regular fields come again as trailers), bytes 1-2 = the block's
// length (little endian), then the block, then the body.
// A Content-Length that does not match the body is skipped: the session
// resets such a stream before a byte of it is forwarded.
#include <nghttp2/nghttp2.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "http/h2_request.h"
#include "tests/fuzz/fuzz_h2_common.h"

namespace poolgate::fuzz {
namespace {

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

void run(const uint8_t* data, size_t size) {
  if (size < 3) return;
  const bool end_stream = (data[0] & 1) != 0;
  const bool with_trailers = (data[0] & 2) != 0 && !end_stream;
  size_t block_size = std::min<size_t>(data[1] | (size_t{data[2]} << 8), size - 3);
  const uint8_t* block = data + 3;
  DowngradedRequest r;
  r.body.assign(reinterpret_cast<const char*>(block + block_size), size - 3 - block_size);
  if (!inflate(block, block_size, &r.fields)) return;

  H2Request request;
  for (const Field& f : r.fields) {
    if (!request.add(f.name, f.value)) return;  // refused: a stream error, nothing forwarded
  }
  BufferPool buffers;
  Buffer out(buffers);
  if (!request.write(out, end_stream)) return;
  if (end_stream) r.body.clear();
  if (request.framing() == H2Request::Framing::kLength) {
    const Field* length = findField(r.fields, "content-length");
    if (length == nullptr || std::to_string(r.body.size()) != length->value) return;
  }
  // The body as DATA frames of varying size.
  Splitter splitter(data, size);
  for (size_t at = 0; at < r.body.size();) {
    size_t n = std::min(splitter.next(), r.body.size() - at);
    request.writeData(out, std::string_view(r.body).substr(at, n));
    at += n;
  }
  // Trailers come after the body, as the session hands them over.
  if (with_trailers) {
    for (const Field& f : r.fields) {
      if (f.name.empty() || f.name[0] == ':') continue;
      if (!request.addTrailer(f.name, f.value)) return;  // a stream error: the request never ends
      r.trailers.push_back(f);
    }
  }
  if (!end_stream) request.writeEnd(out);
  r.forwarded.assign(out.data(), out.size());
  r.ended = true;
  checkDowngrade(r);
}

}  // namespace
}  // namespace poolgate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  poolgate::fuzz::run(data, size);
  return 0;
}
