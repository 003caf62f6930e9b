// libFuzzer target: HTTP/2 frames in, through the proxy's own session
// (http/h2_session.h: nghttp2 with poolgate's settings, defences and
// callbacks, each stream's request written as HTTP/1.1 by H2Request); out
// comes, per stream, the HTTP/1.1 request poolgate would forward, checked
// against what nghttp2 decoded by fuzz_h2_common.h: at most one request per
// stream, exactly the accepted one, whole when the stream's request ended.
//
// The streams are those of Http2Connection minus the exchange: they take
// what the session writes as soon as it is written (and give the DATA back
// to the window), so the session sees a fast upstream. What the session
// sends (SETTINGS acknowledgements, WINDOW_UPDATE, resets, GOAWAY) is taken
// and dropped after every read, as a socket would take it.
//
// Input: byte 0 = options (bit 0: a header list limit of 256 bytes, for the
// 431 path; bit 1: a 16-byte initial window, for flow control), then frames,
// each: type, flags, stream id (one byte), payload length (2 bytes, little
// endian), payload. The client preface and an empty SETTINGS go first. A
// type with bit 7 set is HEADERS (or CONTINUATION with bit 6) whose payload
// is a field list, "name:value" lines (split at the first ':' after the
// first byte, so ":path:/" works), encoded by a client HPACK deflater that
// lives as long as the connection; other types go as they are (bits 0-3).
// The bytes reach the session in reads of varying size.
#include <nghttp2/nghttp2.h>

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/buffer.h"
#include "http/h2_session.h"
#include "tests/fuzz/fuzz_h2_common.h"

namespace poolgate::fuzz {
namespace {

class FramesSession;

// A stream that records what nghttp2 decoded and takes what was written.
class RecordingStream final : public H2Stream {
 public:
  RecordingStream(H2Session& session, BufferPool& buffers, int32_t id) : H2Stream(session, buffers) {
    beginRequest(id);
  }

  bool onField(std::string_view name, std::string_view value, bool trailer) override {
    (trailer ? request.trailers : request.fields).push_back({std::string(name), std::string(value)});
    return H2Stream::onField(name, value, trailer);
  }
  void onData(const uint8_t* data, size_t length) override {
    request.body.append(reinterpret_cast<const char*>(data), length);
    H2Stream::onData(data, length);
  }

  DowngradedRequest request;
  int refused = 0;

 private:
  void onRequestBytes() override {
    request.forwarded.append(pending_.data(), pending_.size());
    const size_t n = pending_.size();
    pending_.consume(n);
    credit(n);
    // Written to its end: the request ended and nothing refused it.
    request.ended = requestEnded() && refused == 0;
  }
  void onRefused(int status) override {
    FUZZ_CHECK(pending_.empty() && request.forwarded.empty());  // refused before a byte is written
    refused = status;
  }
  bool takesData() const override { return true; }
  void onClosed(uint32_t) override {}
};

class FramesSession final : public H2Session {
 public:
  FramesSession(const Config& config, BufferPool& buffers) : H2Session(config), buffers_(buffers) {
    FUZZ_CHECK(startSession());
  }

  std::vector<std::unique_ptr<RecordingStream>> streams;

 private:
  H2Stream* openStream(int32_t id) override {
    streams.push_back(std::make_unique<RecordingStream>(*this, buffers_, id));
    return streams.back().get();
  }
  void onStreamClosed(H2Stream&) override {}

  BufferPool& buffers_;
};

struct Deflater {
  nghttp2_hd_deflater* deflater = nullptr;
  Deflater() { nghttp2_hd_deflate_new(&deflater, 4096); }
  ~Deflater() { nghttp2_hd_deflate_del(deflater); }
};

// "name:value" lines as an HPACK block.
std::string encodeFields(Deflater& d, std::string_view text) {
  std::vector<std::string> names, values;
  while (!text.empty()) {
    const size_t end = std::min(text.find('\n'), text.size());
    const std::string_view line = text.substr(0, end);
    text.remove_prefix(std::min(end + 1, text.size()));
    const size_t colon = line.size() > 1 ? line.find(':', 1) : std::string_view::npos;
    names.emplace_back(line.substr(0, colon));
    values.emplace_back(colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1));
  }
  std::vector<nghttp2_nv> nva;
  for (size_t i = 0; i < names.size(); ++i) {
    nva.push_back({reinterpret_cast<uint8_t*>(names[i].data()), reinterpret_cast<uint8_t*>(values[i].data()),
                   names[i].size(), values[i].size(), NGHTTP2_NV_FLAG_NONE});
  }
  std::string block(nghttp2_hd_deflate_bound(d.deflater, nva.data(), nva.size()), '\0');
  const ssize_t n = nghttp2_hd_deflate_hd(d.deflater, reinterpret_cast<uint8_t*>(block.data()), block.size(),
                                          nva.data(), nva.size());
  block.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return block;
}

void appendFrame(std::string& wire, uint8_t type, uint8_t flags, uint32_t stream_id, std::string_view payload) {
  const size_t length = std::min<size_t>(payload.size(), (1u << 24) - 1);
  const char header[9] = {static_cast<char>(length >> 16), static_cast<char>(length >> 8),
                          static_cast<char>(length),       static_cast<char>(type),
                          static_cast<char>(flags),        static_cast<char>(stream_id >> 24),
                          static_cast<char>(stream_id >> 16), static_cast<char>(stream_id >> 8),
                          static_cast<char>(stream_id)};
  wire.append(header, sizeof header);
  wire.append(payload.substr(0, length));
}

void run(const uint8_t* data, size_t size) {
  if (size < 1) return;
  Config config;
  if (data[0] & 1) config.http2.max_header_list_bytes = 256;
  if (data[0] & 2) config.http2.initial_window_bytes = 16;

  std::string wire(NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
  appendFrame(wire, NGHTTP2_SETTINGS, 0, 0, {});
  Deflater deflater;
  for (size_t at = 1; at + 5 <= size;) {
    const uint8_t type = data[at];
    uint8_t flags = data[at + 1];
    const uint32_t stream_id = data[at + 2];
    const size_t length = std::min<size_t>(data[at + 3] | (size_t{data[at + 4]} << 8), size - at - 5);
    const std::string_view payload(reinterpret_cast<const char*>(data + at + 5), length);
    at += 5 + length;
    if (type & 0x80) {
      // A field list: no padding or priority in front of the block we encode.
      flags &= static_cast<uint8_t>(~(NGHTTP2_FLAG_PADDED | NGHTTP2_FLAG_PRIORITY));
      appendFrame(wire, (type & 0x40) ? NGHTTP2_CONTINUATION : NGHTTP2_HEADERS, flags, stream_id,
                  encodeFields(deflater, payload));
    } else {
      appendFrame(wire, type & 0x0f, flags, stream_id, payload);
    }
  }

  BufferPool buffers;
  FramesSession session(config, buffers);
  Splitter splitter(data, size);
  for (size_t at = 0; at < wire.size();) {
    const size_t n = std::min(splitter.next(), wire.size() - at);
    const char* error = nullptr;
    const bool ok = session.input(reinterpret_cast<const uint8_t*>(wire.data() + at), n, &error);
    at += n;
    for (;;) {  // what the session sends, taken as a socket would
      const uint8_t* out = nullptr;
      if (session.output(&out) <= 0) break;
    }
    if (!ok) break;  // a connection error: nothing more is read
  }
  for (const auto& stream : session.streams) {
    if (stream->refused != 0) FUZZ_CHECK(stream->request.forwarded.empty());
    checkDowngrade(stream->request);
  }
}

}  // namespace
}  // namespace poolgate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  poolgate::fuzz::run(data, size);
  return 0;
}
