// HTTP/2 conformance and attacks, in the spirit of h2spec (RFC 9113, RFC 7541), black-box
// against the real binary on a `listen { http2 = true; }` port (prior knowledge, h2c).
//
// Frames are built by hand here (a 9-byte header and a payload), and header blocks by a
// small HPACK encoder that writes every field as a literal without indexing, so that a
// probe says exactly which bytes go out. poolgate's answers are read by a small frame
// reader with a complete HPACK decoder (static and dynamic tables, Huffman). Nothing is
// borrowed from an HTTP/2 library, so the probes cannot share a bug with nghttp2.
//
// Http2Conformance: one row per probe (name, frames, the answers RFC 9113 allows, with
// the one nghttp2 gives first). A row starts with a warm upstream pool, does the
// connection preface and the SETTINGS exchange (unless the row is about the preface
// itself), sends its frames in one write, and reads until poolgate answers on the probe's
// stream or on the connection. Then:
//   - a GOAWAY (connection error): the TCP connection must then be closed (5.4.1);
//   - a RST_STREAM or a response (stream error): the connection must stay usable, so a
//     GET on a new stream gets its 200;
//   - in every case nothing of a refused request reaches the upstream: every byte of one
//     carries "poison", and the upstream's raw input is searched for it after a barrier
//     request on a new connection; GOAWAYs and resets are counted in /stats.
// Each row prints the answer it got ("[ answer ]"), so a run records exactly what
// poolgate says. Where the RFC allows several answers (a stream error treated as a
// connection error, a 400 before a reset) the row lists them, nghttp2's first. Rows that
// show a bug today are in knownFailures() and run under DISABLED_Http2Conformance.
//
// Http2ConformanceGauges: the HTTP/2 gauges of /stats (connections, streams open) come
// back to zero after connection errors, stream errors and clients that hang up.
//
// Http2Attack: floods and resource attacks (rapid reset, CONTINUATION flood, HPACK bomb,
// SETTINGS / PING floods from a client that never reads, empty DATA and PRIORITY floods,
// SETTINGS with thousands of entries, more streams than allowed). Each asserts a defence
// (a GOAWAY, a reset, a close, or backpressure with the worker's memory bounded) reached
// within a bounded time, and that poolgate still serves a fresh connection; and an
// ordinary client's mix of the same frames is not mistaken for an attack.
//
// Every read is bounded (poll with a deadline); nothing sleeps to synchronise.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

// ---------------------------------------------------------------------------------------
// Frames (RFC 9113 section 4 and 6)

namespace h2 {

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum Type : uint8_t {
  kData = 0x0, kHeaders = 0x1, kPriority = 0x2, kRstStream = 0x3, kSettings = 0x4,
  kPushPromise = 0x5, kPing = 0x6, kGoaway = 0x7, kWindowUpdate = 0x8, kContinuation = 0x9,
};

enum Flag : uint8_t {
  kEndStream = 0x1, kAck = 0x1, kEndHeaders = 0x4, kPadded = 0x8, kPriorityFlag = 0x20,
};

enum Setting : uint16_t {
  kHeaderTableSize = 0x1, kEnablePush = 0x2, kMaxConcurrentStreams = 0x3,
  kInitialWindowSize = 0x4, kMaxFrameSize = 0x5, kMaxHeaderListSize = 0x6,
};

enum Error : uint32_t {
  kNoError = 0x0, kProtocolError = 0x1, kInternalError = 0x2, kFlowControlError = 0x3,
  kSettingsTimeout = 0x4, kStreamClosed = 0x5, kFrameSizeError = 0x6, kRefusedStream = 0x7,
  kCancel = 0x8, kCompressionError = 0x9, kConnectError = 0xa, kEnhanceYourCalm = 0xb,
  kInadequateSecurity = 0xc, kHttp11Required = 0xd,
};

std::string errorName(uint32_t code) {
  static const char* const kNames[] = {
      "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
      "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM",
      "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
      "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"};
  if (code < std::size(kNames)) return kNames[code];
  return "error 0x" + [&] { std::ostringstream o; o << std::hex << code; return o.str(); }();
}

std::string u32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}
std::string u16(uint16_t v) { return {static_cast<char>(v >> 8), static_cast<char>(v)}; }
uint32_t readU32(std::string_view s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) |
         (uint32_t(uint8_t(s[at + 2])) << 8) | uint32_t(uint8_t(s[at + 3]));
}

// A frame header announcing `length` (which may lie about the payload that follows).
std::string head(uint32_t length, uint8_t type, uint8_t flags, uint32_t stream) {
  std::string h;
  h += static_cast<char>(length >> 16);
  h += static_cast<char>(length >> 8);
  h += static_cast<char>(length);
  h += static_cast<char>(type);
  h += static_cast<char>(flags);
  h += u32(stream & 0x7fffffffu);
  return h;
}

std::string frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  return head(static_cast<uint32_t>(payload.size()), type, flags, stream) + std::string(payload);
}

using SettingsList = std::vector<std::pair<uint16_t, uint32_t>>;
std::string settings(const SettingsList& list = {}) {
  std::string p;
  for (auto [id, value] : list) p += u16(id) + u32(value);
  return frame(kSettings, 0, 0, p);
}
std::string settingsAck() { return frame(kSettings, kAck, 0, ""); }
std::string ping(std::string_view opaque = "01234567", uint8_t flags = 0) {
  return frame(kPing, flags, 0, opaque);
}
std::string windowUpdate(uint32_t stream, uint32_t increment) {
  return frame(kWindowUpdate, 0, stream, u32(increment));
}
std::string rstStream(uint32_t stream, uint32_t code) { return frame(kRstStream, 0, stream, u32(code)); }
std::string priority(uint32_t stream, uint32_t dependsOn, uint8_t weight = 15, bool exclusive = false) {
  return frame(kPriority, 0, stream,
               u32(dependsOn | (exclusive ? 0x80000000u : 0)) + std::string(1, static_cast<char>(weight)));
}
std::string data(uint32_t stream, std::string_view body, uint8_t flags = kEndStream) {
  return frame(kData, flags, stream, body);
}
std::string headers(uint32_t stream, std::string_view block, uint8_t flags = kEndStream | kEndHeaders) {
  return frame(kHeaders, flags, stream, block);
}
std::string continuation(uint32_t stream, std::string_view block, uint8_t flags = kEndHeaders) {
  return frame(kContinuation, flags, stream, block);
}

// ---------------------------------------------------------------------------------------
// HPACK (RFC 7541)

// RFC 7541 Appendix B: the Huffman code of each symbol (256 = EOS) and its length in bits.
constexpr uint32_t kHuffmanCodes[257] = {
    0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7,
    0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec,
    0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3,
    0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb,
    0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa,
    0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18,
    0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
    0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc,
    0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62,
    0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
    0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72,
    0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22,
    0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26,
    0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7,
    0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78,
    0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc,
    0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9,
    0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
    0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3,
    0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef,
    0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde,
    0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec,
    0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef,
    0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1,
    0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec,
    0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed,
    0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2,
    0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5,
    0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3,
    0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4,
    0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea,
    0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
    0x3fffffff,
};
constexpr uint8_t kHuffmanLengths[257] = {
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
    30,
};
// RFC 7541 Appendix A: the static table (index 1..61).
constexpr std::pair<const char*, const char*> kStaticTable[61] = {
    {":authority", ""},
    {":method", "GET"},
    {":method", "POST"},
    {":path", "/"},
    {":path", "/index.html"},
    {":scheme", "http"},
    {":scheme", "https"},
    {":status", "200"},
    {":status", "204"},
    {":status", "206"},
    {":status", "304"},
    {":status", "400"},
    {":status", "404"},
    {":status", "500"},
    {"accept-charset", ""},
    {"accept-encoding", "gzip, deflate"},
    {"accept-language", ""},
    {"accept-ranges", ""},
    {"accept", ""},
    {"access-control-allow-origin", ""},
    {"age", ""},
    {"allow", ""},
    {"authorization", ""},
    {"cache-control", ""},
    {"content-disposition", ""},
    {"content-encoding", ""},
    {"content-language", ""},
    {"content-length", ""},
    {"content-location", ""},
    {"content-range", ""},
    {"content-type", ""},
    {"cookie", ""},
    {"date", ""},
    {"etag", ""},
    {"expect", ""},
    {"expires", ""},
    {"from", ""},
    {"host", ""},
    {"if-match", ""},
    {"if-modified-since", ""},
    {"if-none-match", ""},
    {"if-range", ""},
    {"if-unmodified-since", ""},
    {"last-modified", ""},
    {"link", ""},
    {"location", ""},
    {"max-forwards", ""},
    {"proxy-authenticate", ""},
    {"proxy-authorization", ""},
    {"range", ""},
    {"referer", ""},
    {"refresh", ""},
    {"retry-after", ""},
    {"server", ""},
    {"set-cookie", ""},
    {"strict-transport-security", ""},
    {"transfer-encoding", ""},
    {"user-agent", ""},
    {"vary", ""},
    {"via", ""},
    {"www-authenticate", ""},
};

using Fields = std::vector<std::pair<std::string, std::string>>;

// An integer with an N-bit prefix (5.1); `first` holds the bits above the prefix.
std::string integer(uint64_t value, int prefixBits, uint8_t first) {
  const uint64_t max = (1u << prefixBits) - 1;
  std::string out;
  if (value < max) {
    out += static_cast<char>(first | value);
    return out;
  }
  out += static_cast<char>(first | max);
  value -= max;
  while (value >= 128) {
    out += static_cast<char>(0x80 | (value & 0x7f));
    value >>= 7;
  }
  out += static_cast<char>(value);
  return out;
}
// A string literal without Huffman coding (5.2).
std::string str(std::string_view s) { return integer(s.size(), 7, 0x00) + std::string(s); }
// Literal field without indexing, new name (6.2.2): the decoder's table does not change.
std::string literal(std::string_view name, std::string_view value) {
  return std::string(1, '\0') + str(name) + str(value);
}
// Literal field with incremental indexing, new name (6.2.1): inserted in the dynamic table.
std::string literalIndexed(std::string_view name, std::string_view value) {
  return std::string(1, '\x40') + str(name) + str(value);
}
std::string indexed(uint64_t index) { return integer(index, 7, 0x80); }   // 6.1
std::string tableSizeUpdate(uint64_t size) { return integer(size, 5, 0x20); }  // 6.3

std::string block(const Fields& fields) {
  std::string b;
  for (const auto& [name, value] : fields) b += literal(name, value);
  return b;
}

std::string huffmanEncode(std::string_view s) {
  std::string out;
  uint64_t bits = 0;
  int count = 0;
  for (unsigned char c : s) {
    bits = (bits << kHuffmanLengths[c]) | kHuffmanCodes[c];
    count += kHuffmanLengths[c];
    while (count >= 8) {
      out += static_cast<char>(bits >> (count - 8));
      count -= 8;
    }
  }
  if (count > 0) out += static_cast<char>((bits << (8 - count)) | ((1u << (8 - count)) - 1));
  return out;
}

std::optional<std::string> huffmanDecode(std::string_view in) {
  static const std::unordered_map<uint64_t, int> kByCode = [] {
    std::unordered_map<uint64_t, int> m;
    for (int i = 0; i < 257; ++i) m[(uint64_t(kHuffmanLengths[i]) << 32) | kHuffmanCodes[i]] = i;
    return m;
  }();
  std::string out;
  uint32_t code = 0;
  int length = 0;
  for (unsigned char byte : in) {
    for (int bit = 7; bit >= 0; --bit) {
      code = (code << 1) | ((byte >> bit) & 1);
      if (++length > 30) return std::nullopt;
      auto it = kByCode.find((uint64_t(length) << 32) | code);
      if (it == kByCode.end()) continue;
      if (it->second == 256) return std::nullopt;  // EOS in a string
      out += static_cast<char>(it->second);
      code = 0;
      length = 0;
    }
  }
  if (length > 7 || code != (1u << length) - 1) return std::nullopt;  // padding: EOS's prefix
  return out;
}

// Decodes poolgate's header blocks: one decoder per connection, fed every block in order.
class Decoder {
 public:
  // nullopt (and `error` set) when the block is not valid HPACK.
  std::optional<Fields> decode(std::string_view b) {
    Fields out;
    size_t p = 0;
    while (p < b.size()) {
      const auto c = static_cast<uint8_t>(b[p]);
      uint64_t index = 0;
      if (c & 0x80) {
        if (!readInteger(b, p, 7, index) || index == 0) return fail("bad indexed field");
        auto entry = lookup(index);
        if (!entry) return fail("index out of range");
        out.push_back(*entry);
      } else if (c & 0x40 || (c & 0xe0) == 0x00) {  // literal (6.2.1-6.2.3)
        const bool incremental = c & 0x40;
        if (!readInteger(b, p, incremental ? 6 : 4, index)) return fail("bad literal");
        std::pair<std::string, std::string> field;
        if (index) {
          auto entry = lookup(index);
          if (!entry) return fail("name index out of range");
          field.first = entry->first;
        } else if (!readString(b, p, field.first)) {
          return fail("bad name");
        }
        if (!readString(b, p, field.second)) return fail("bad value");
        if (incremental) insert(field);
        out.push_back(std::move(field));
      } else {  // 001xxxxx: dynamic table size update
        if (!readInteger(b, p, 5, index) || index > 4096) return fail("bad size update");
        max_ = index;
        evict();
      }
    }
    return out;
  }
  const std::string& error() const { return error_; }

 private:
  std::optional<Fields> fail(std::string why) {
    error_ = std::move(why);
    return std::nullopt;
  }
  static bool readInteger(std::string_view b, size_t& p, int prefixBits, uint64_t& v) {
    if (p >= b.size()) return false;
    const uint64_t max = (1u << prefixBits) - 1;
    v = static_cast<uint8_t>(b[p++]) & max;
    if (v < max) return true;
    for (int shift = 0; p < b.size() && shift <= 56; shift += 7) {
      const auto c = static_cast<uint8_t>(b[p++]);
      v += uint64_t(c & 0x7f) << shift;
      if (!(c & 0x80)) return true;
    }
    return false;
  }
  static bool readString(std::string_view b, size_t& p, std::string& s) {
    if (p >= b.size()) return false;
    const bool huffman = static_cast<uint8_t>(b[p]) & 0x80;
    uint64_t length = 0;
    if (!readInteger(b, p, 7, length) || length > b.size() - p) return false;
    std::string_view raw = b.substr(p, length);
    p += length;
    if (!huffman) {
      s = std::string(raw);
      return true;
    }
    auto decoded = huffmanDecode(raw);
    if (!decoded) return false;
    s = std::move(*decoded);
    return true;
  }
  std::optional<std::pair<std::string, std::string>> lookup(uint64_t index) const {
    if (index >= 1 && index <= 61) return std::make_pair(kStaticTable[index - 1].first, kStaticTable[index - 1].second);
    if (index >= 62 && index - 62 < table_.size()) return table_[index - 62];
    return std::nullopt;
  }
  void insert(const std::pair<std::string, std::string>& field) {
    table_.push_front(field);
    size_ += field.first.size() + field.second.size() + 32;
    evict();
  }
  void evict() {
    while (size_ > max_ && !table_.empty()) {
      size_ -= table_.back().first.size() + table_.back().second.size() + 32;
      table_.pop_back();
    }
  }
  std::deque<std::pair<std::string, std::string>> table_;
  size_t size_ = 0;
  size_t max_ = 4096;
  std::string error_;
};

// The fields of a request, in this order, to build rows from.
Fields request(std::string_view method = "GET", std::string_view path = "/poison",
               std::string_view authority = "localhost") {
  return {{":method", std::string(method)},
          {":scheme", "http"},
          {":authority", std::string(authority)},
          {":path", std::string(path)}};
}
Fields plus(Fields f, std::string name, std::string value) {
  f.emplace_back(std::move(name), std::move(value));
  return f;
}
Fields without(Fields f, std::string_view name) {
  std::erase_if(f, [&](const auto& field) { return field.first == name; });
  return f;
}
Fields prepend(Fields f, std::string name, std::string value) {
  f.emplace(f.begin(), std::move(name), std::move(value));
  return f;
}

}  // namespace h2

// ---------------------------------------------------------------------------------------
// A raw HTTP/2 client: sends bytes as given, reads and decodes what comes back.

struct Frame {
  uint8_t type = 0;
  uint8_t flags = 0;
  uint32_t stream = 0;
  std::string payload;
};

// An answer from poolgate, in order of arrival.
struct Event {
  enum Kind { kStatus, kRst, kGoaway, kClosed, kHttp1 } kind = kClosed;
  uint32_t stream = 0;
  uint32_t code = 0;   // HTTP status, or an error code
  std::string detail;  // GOAWAY debug data, an HTTP/1 status line
};

struct StreamState {
  std::optional<int> status;  // of the final response
  h2::Fields fields;          // its fields (and those of trailers)
  std::string body;
  bool ended = false;               // END_STREAM received
  std::optional<uint32_t> reset;    // RST_STREAM received, with this code
  bool done() const { return ended || reset.has_value(); }
};

class H2Client {
 public:
  // `rcvbuf` > 0: SO_RCVBUF before connecting (a client whose receive window stays small).
  explicit H2Client(uint16_t port, int rcvbuf = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw HarnessError("socket: " + std::string(std::strerror(errno)));
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      std::string why = std::strerror(errno);
      ::close(fd_);
      throw HarnessError("connect to port " + std::to_string(port) + ": " + why);
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~H2Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  H2Client(const H2Client&) = delete;
  H2Client& operator=(const H2Client&) = delete;

  struct SendResult {
    size_t sent = 0;
    bool closed = false;   // the peer closed or reset the connection
    bool stalled = false;  // no byte could be sent for `stall`
  };
  // Sends what it can of `bytes`, and stops early when the peer closed or when no byte
  // could be sent for `stall` (the peer does not read).
  SendResult sendSome(std::string_view bytes, Millis stall) {
    SendResult r;
    while (r.sent < bytes.size()) {
      pollfd p{fd_, POLLOUT, 0};
      int n = ::poll(&p, 1, static_cast<int>(stall.count()));
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) {
        r.stalled = true;
        return r;
      }
      ssize_t k = ::send(fd_, bytes.data() + r.sent, bytes.size() - r.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (k > 0) {
        r.sent += static_cast<size_t>(k);
        continue;
      }
      if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      r.closed = true;  // EPIPE, ECONNRESET
      return r;
    }
    return r;
  }
  // Sends everything; false when the peer closed first. Throws if it stalls for kIoTimeout.
  bool send(std::string_view bytes) {
    SendResult r = sendSome(bytes, kIoTimeout);
    if (r.stalled) throw HarnessError("send: poolgate did not read for the I/O timeout");
    return !r.closed;
  }

  // The connection preface and a SETTINGS frame; then waits (bounded) for the server's
  // SETTINGS and, when `ack`, acknowledges it and waits for the ACK of ours. Without
  // `ack`, the server's SETTINGS is never acknowledged (nor its PINGs answered).
  void handshake(const h2::SettingsList& settings = {}, bool ack = true) {
    autoAck = ack;
    send(std::string(h2::kPreface) + h2::settings(settings));
    bool ok = pump([&] { return sawServerSettings_ && (!ack || settingsAcks_ >= 1); }, kIoTimeout);
    if (!ok) throw HarnessError("no HTTP/2 handshake with poolgate: " + describeEvents());
  }

  // Reads and handles frames until `done` holds, the connection closes, or `timeout`
  // passes. Returns done().
  bool pump(const std::function<bool()>& done, Millis timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!done()) {
      auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
      if (left.count() < 0) left = Millis(0);
      Frame f;
      Read r = next(f, left);
      if (r == Read::kFrame) {
        handle(f);
        continue;
      }
      if (r == Read::kClosed) noteClosed();
      return done();
    }
    return true;
  }
  // Handles the frames that have already arrived, without waiting.
  void drain() {
    pump([] { return false; }, Millis(0));
  }
  // True once poolgate has closed the connection (EOF or reset), within `timeout`.
  bool waitClosed(Millis timeout = 5s) {
    return pump([&] { return closedNoted_; }, timeout);
  }

  const std::vector<Event>& events() const { return events_; }
  StreamState& stream(uint32_t id) { return streams_[id]; }
  bool closed() const { return closed_; }
  std::optional<Event> goaway() const {
    for (const Event& e : events_)
      if (e.kind == Event::kGoaway) return e;
    return std::nullopt;
  }
  const std::map<uint16_t, uint32_t>& serverSettings() const { return serverSettings_; }
  size_t settingsAcks() const { return settingsAcks_; }
  size_t pingAcks() const { return pingAcks_; }
  size_t framesReceived() const { return framesReceived_; }
  size_t resetsReceived() const { return resets_; }
  std::string describeEvents(size_t max = 12) const {
    std::string out;
    size_t shown = 0;
    for (const Event& e : events_) {
      if (shown++ == max) {
        out += ", ... (" + std::to_string(events_.size()) + " answers)";
        break;
      }
      if (!out.empty()) out += ", ";
      switch (e.kind) {
        case Event::kStatus: out += ":status " + std::to_string(e.code) + " on " + std::to_string(e.stream); break;
        case Event::kRst: out += "RST_STREAM(" + std::to_string(e.stream) + ", " + h2::errorName(e.code) + ")"; break;
        case Event::kGoaway: out += "GOAWAY(" + h2::errorName(e.code) + ", last " + e.detail + ")"; break;
        case Event::kClosed: out += "closed"; break;
        case Event::kHttp1: out += "HTTP/1 \"" + e.detail + "\""; break;
      }
    }
    return out.empty() ? "nothing" : out;
  }

  bool autoAck = true;     // acknowledge the server's SETTINGS and answer its PINGs
  bool autoWindow = true;  // give back (WINDOW_UPDATE) the window that DATA used

 private:
  enum class Read { kFrame, kClosed, kTimeout };

  // One recv within `timeout`; false on timeout. Sets closed_ on EOF or reset.
  bool fill(Millis timeout) {
    pollfd p{fd_, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (n < 0 && errno == EINTR) return true;
    if (n <= 0) return false;
    if (start_ > (1u << 20)) {
      in_.erase(0, start_);
      start_ = 0;
    }
    char buf[65536];
    ssize_t k = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (k > 0) in_.append(buf, static_cast<size_t>(k));
    else if (k == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) closed_ = true;
    return true;
  }

  Read next(Frame& f, Millis timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const size_t available = in_.size() - start_;
      if (!sawFrame_ && available >= 5 && in_.compare(start_, 5, "HTTP/") == 0) {
        // An HTTP/1 answer to what was not a preface: keep it whole, until EOF.
        while (!closed_ && Clock::now() < deadline)
          fill(std::chrono::duration_cast<Millis>(deadline - Clock::now()));
        std::string text = in_.substr(start_);
        start_ = in_.size();
        Event e{Event::kHttp1, 0, 0, text.substr(0, text.find("\r\n"))};
        std::istringstream line(e.detail);
        std::string version;
        line >> version >> e.code;
        events_.push_back(e);
        return closed_ ? Read::kClosed : Read::kTimeout;
      }
      if (available >= 9) {
        const uint32_t length = (uint32_t(uint8_t(in_[start_])) << 16) |
                                (uint32_t(uint8_t(in_[start_ + 1])) << 8) | uint8_t(in_[start_ + 2]);
        if (available >= 9 + length) {
          f.type = static_cast<uint8_t>(in_[start_ + 3]);
          f.flags = static_cast<uint8_t>(in_[start_ + 4]);
          f.stream = h2::readU32(in_, start_ + 5) & 0x7fffffffu;
          f.payload = in_.substr(start_ + 9, length);
          start_ += 9 + length;
          sawFrame_ = true;
          return Read::kFrame;
        }
      }
      if (closed_) return Read::kClosed;
      auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
      if (left.count() < 0) left = Millis(0);
      if (!fill(left)) return Read::kTimeout;
    }
  }

  void noteClosed() {
    if (!closedNoted_) events_.push_back(Event{Event::kClosed, 0, 0, {}});
    closedNoted_ = true;
  }

  void reply(const std::string& bytes) {
    if (!closed_) sendSome(bytes, 1s);  // best effort: poolgate may have closed already
  }

  // The payload without its padding (6.1, 6.2), or nullopt if the padding is invalid.
  static std::optional<std::string> unpadded(const Frame& f, size_t skipAfterPad = 0) {
    std::string_view p = f.payload;
    size_t pad = 0;
    if (f.flags & h2::kPadded) {
      if (p.empty()) return std::nullopt;
      pad = static_cast<uint8_t>(p[0]);
      p.remove_prefix(1);
    }
    if (p.size() < pad + skipAfterPad) return std::nullopt;
    return std::string(p.substr(skipAfterPad, p.size() - pad - skipAfterPad));
  }

  void handle(const Frame& f) {
    ++framesReceived_;
    switch (f.type) {
      case h2::kSettings:
        if (f.flags & h2::kAck) {
          ++settingsAcks_;
          break;
        }
        if (!sawServerSettings_) {
          for (size_t i = 0; i + 6 <= f.payload.size(); i += 6)
            serverSettings_[static_cast<uint16_t>((uint8_t(f.payload[i]) << 8) | uint8_t(f.payload[i + 1]))] =
                h2::readU32(f.payload, i + 2);
        }
        sawServerSettings_ = true;
        if (autoAck) reply(h2::settingsAck());
        break;
      case h2::kPing:
        if (f.flags & h2::kAck) ++pingAcks_;
        else if (autoAck) reply(h2::ping(f.payload, h2::kAck));
        break;
      case h2::kHeaders: {
        const size_t priorityBytes = (f.flags & h2::kPriorityFlag) ? 5 : 0;
        auto fragment = unpadded(f, priorityBytes);
        if (!fragment) ADD_FAILURE() << "poolgate sent a HEADERS frame with invalid padding";
        block_ = fragment.value_or("");
        blockStream_ = f.stream;
        blockEndsStream_ = f.flags & h2::kEndStream;
        if (f.flags & h2::kEndHeaders) finishBlock();
        break;
      }
      case h2::kContinuation:
        block_ += f.payload;
        if (f.flags & h2::kEndHeaders) finishBlock();
        break;
      case h2::kData: {
        auto body = unpadded(f);
        if (!body) ADD_FAILURE() << "poolgate sent a DATA frame with invalid padding";
        StreamState& s = streams_[f.stream];
        s.body += body.value_or("");
        if (f.flags & h2::kEndStream) s.ended = true;
        if (autoWindow && !f.payload.empty()) {
          std::string give = h2::windowUpdate(0, static_cast<uint32_t>(f.payload.size()));
          if (!s.ended) give += h2::windowUpdate(f.stream, static_cast<uint32_t>(f.payload.size()));
          reply(give);
        }
        break;
      }
      case h2::kRstStream: {
        const uint32_t code = f.payload.size() >= 4 ? h2::readU32(f.payload, 0) : 0xffffffffu;
        streams_[f.stream].reset = code;
        ++resets_;
        events_.push_back(Event{Event::kRst, f.stream, code, {}});
        break;
      }
      case h2::kGoaway: {
        Event e{Event::kGoaway, 0, 0, {}};
        if (f.payload.size() >= 8) {
          e.stream = h2::readU32(f.payload, 0) & 0x7fffffffu;
          e.code = h2::readU32(f.payload, 4);
          e.detail = std::to_string(e.stream);
          if (f.payload.size() > 8) e.detail += ", \"" + f.payload.substr(8, 120) + "\"";
        }
        events_.push_back(e);
        break;
      }
      case h2::kPushPromise:
        ADD_FAILURE() << "poolgate sent a PUSH_PROMISE";
        break;
      default:  // WINDOW_UPDATE, PRIORITY, extensions: nothing to do
        break;
    }
  }

  void finishBlock() {
    auto fields = decoder_.decode(block_);
    if (!fields) {
      ADD_FAILURE() << "poolgate sent a header block that does not decode (" << decoder_.error() << ")";
      return;
    }
    StreamState& s = streams_[blockStream_];
    std::optional<int> status;
    for (const auto& [name, value] : *fields)
      if (name == ":status") status = std::atoi(value.c_str());
    if (status && *status >= 200 && !s.status) {
      s.status = status;
      s.fields = *fields;
      events_.push_back(Event{Event::kStatus, blockStream_, static_cast<uint32_t>(*status), {}});
    } else if (!status) {
      s.fields.insert(s.fields.end(), fields->begin(), fields->end());  // trailers
    }
    if (blockEndsStream_) s.ended = true;
  }

  int fd_ = -1;
  std::string in_;
  size_t start_ = 0;
  bool closed_ = false;
  bool closedNoted_ = false;
  bool sawFrame_ = false;
  h2::Decoder decoder_;
  std::string block_;
  uint32_t blockStream_ = 0;
  bool blockEndsStream_ = false;
  std::vector<Event> events_;
  std::map<uint32_t, StreamState> streams_;
  std::map<uint16_t, uint32_t> serverSettings_;
  bool sawServerSettings_ = false;
  size_t settingsAcks_ = 0;
  size_t pingAcks_ = 0;
  size_t framesReceived_ = 0;
  size_t resets_ = 0;
};

// A GET (or `method`) on `stream`, complete (END_STREAM).
std::string requestFrames(uint32_t stream, std::string_view path, std::string_view method = "GET") {
  return h2::headers(stream, h2::block(h2::request(method, path)));
}

// Sends a GET on `stream` and waits (bounded) for its end; the stream's state after.
StreamState& exchange(H2Client& client, uint32_t stream, std::string_view path) {
  client.send(requestFrames(stream, path));
  StreamState& s = client.stream(stream);
  client.pump([&] { return s.done() || client.goaway().has_value(); }, kIoTimeout);
  return s;
}

// ---------------------------------------------------------------------------------------
// poolgate with an HTTP/2 listener

std::string http2Config(const std::string& upstreamAddress, std::string_view http2Group,
                        std::string_view topExtra = "") {
  std::string c = "workers = 1;\n";
  c += "listen = ( { address = \"127.0.0.1:0\"; http2 = true; } );\n";
  c += "admin = { address = \"127.0.0.1:0\"; };\n";
  c += std::string(http2Group) + "\n" + std::string(topExtra) + "\n";
  c += "upstreams = ( { name = \"app\"; servers = ( { address = \"" + upstreamAddress + "\"; } ); } );\n";
  return c;
}

uint64_t totalOf(const Json& stats, const char* name) { return stats.at("totals").at(name).get<uint64_t>(); }

// VmRSS of a process, in KiB (0 when unknown).
uint64_t rssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  return 0;
}

class Http2Fixture : public ProxyTest {
 protected:
  void startHttp2(std::string_view http2Group = "", std::string_view topExtra = "") {
    startProxyWithConfig(http2Config(upstream_.address(), http2Group, topExtra), {});
  }
  uint16_t port() { return proxy().proxyPort(); }
  // One idle upstream connection, so that a request poolgate forwards goes out at once
  // (with a cold pool a refusal could beat the connect and hide a forwarded request).
  void warmPool() {
    HttpClient warm = connect();
    ASSERT_EQ(warm.get("/warm").status, 200);
  }
  // Once every client is gone, no HTTP/2 connection or stream is left counted.
  void expectGaugesBackToZero() {
    Json last;
    bool zero = waitUntil(
        [&] {
          last = proxy().stats();
          return totalOf(last, "http2_connections") == 0 && totalOf(last, "http2_streams_open") == 0;
        },
        5s);
    EXPECT_TRUE(zero) << "HTTP/2 gauges not back to 0: "
                      << (last.contains("totals") ? last["totals"].dump() : std::string("no /stats"));
  }
  // A fresh HTTP/2 connection gets a 200: poolgate still serves.
  void expectFreshConnectionServed(std::string_view path = "/fresh") {
    H2Client fresh(port());
    fresh.handshake();
    StreamState& s = exchange(fresh, 1, path);
    EXPECT_EQ(s.status.value_or(0), 200) << "a fresh HTTP/2 connection is not served: " << fresh.describeEvents();
  }
  pid_t workerPid() {
    auto pids = proxy().runningWorkerPids();
    return pids.empty() ? -1 : pids.front();
  }
};

// ---------------------------------------------------------------------------------------
// Conformance: one probe per row

// What poolgate answered first, about the probe's stream or about the connection.
struct Answer {
  enum Kind { kNothing, kGoaway, kRst, kStatus, kClosed, kHttp1 } kind = kNothing;
  uint32_t code = 0;  // error code, or status
  bool operator==(const Answer&) const = default;
};
Answer goawayWith(uint32_t code) { return {Answer::kGoaway, code}; }
Answer rstWith(uint32_t code) { return {Answer::kRst, code}; }
Answer status(uint32_t code) { return {Answer::kStatus, code}; }
Answer http1(uint32_t code) { return {Answer::kHttp1, code}; }
const Answer kClosedAnswer{Answer::kClosed, 0};

std::string describe(const Answer& a) {
  switch (a.kind) {
    case Answer::kNothing: return "nothing";
    case Answer::kGoaway: return "GOAWAY " + h2::errorName(a.code);
    case Answer::kRst: return "RST_STREAM " + h2::errorName(a.code);
    case Answer::kStatus: return ":status " + std::to_string(a.code);
    case Answer::kClosed: return "closed without a GOAWAY";
    case Answer::kHttp1: return "an HTTP/1 " + std::to_string(a.code);
  }
  return "?";
}

std::string describe(const std::vector<Answer>& answers) {
  std::string out;
  for (const Answer& a : answers) out += (out.empty() ? "" : " or ") + describe(a);
  return out;
}

// The first answer about `stream` (0: only connection-level answers count).
Answer firstAnswer(const H2Client& client, uint32_t stream) {
  for (const Event& e : client.events()) {
    switch (e.kind) {
      case Event::kRst:
        if (stream != 0 && e.stream == stream) return rstWith(e.code);
        break;
      case Event::kStatus:
        if (stream != 0 && e.stream == stream) return status(e.code);
        break;
      case Event::kGoaway: return goawayWith(e.code);
      case Event::kClosed: return kClosedAnswer;
      case Event::kHttp1: return http1(e.code);
    }
  }
  return {};
}

enum class Start {
  kHandshake,  // preface, SETTINGS both ways and their ACKs, then the row's bytes
  kRaw,        // the row's bytes are the first thing sent
};

struct H2Case;
using RowCheck = std::function<void(const H2Case&, H2Client&, const TestUpstream&)>;

struct H2Case {
  std::string name;
  std::string bytes;
  std::vector<Answer> allowed;  // the answers RFC 9113 allows; the first is nghttp2's
  uint32_t stream = 1;          // the probe's stream; 0 for a connection-level probe
  Start start = Start::kHandshake;
  std::string http2;            // the top-level `http2 = { ... };` group, if any
  std::vector<std::string> forwarded;   // targets that must reach the upstream
  std::vector<std::string> mayForward;  // legitimate requests that may reach it or not
  bool settingsAck = false;     // the row's own SETTINGS must be acknowledged
  RowCheck check;               // more checks, once answered

  // A stream error that nghttp2 (or poolgate) may escalate: "An endpoint MAY choose to
  // treat a stream error as a connection error" (RFC 9113 5.4.1).
  H2Case& orConnectionError() {
    allowed.push_back(goawayWith(allowed.front().code));
    return *this;
  }
  // The RFC asks for a stream error here; nghttp2 answers with a connection error.
  H2Case& orStreamError() {
    allowed.push_back(rstWith(allowed.front().code));
    return *this;
  }
  H2Case& also(Answer a) {
    allowed.push_back(a);
    return *this;
  }
  H2Case& onStream(uint32_t s) {
    stream = s;
    return *this;
  }
  H2Case& raw() {
    start = Start::kRaw;
    return *this;
  }
  H2Case& withHttp2(std::string group) {
    http2 = std::move(group);
    return *this;
  }
  H2Case& mayForwarding(std::string target) {
    mayForward.push_back(std::move(target));
    return *this;
  }
  H2Case& checking(RowCheck c) {
    check = std::move(c);
    return *this;
  }
};

void PrintTo(const H2Case& c, std::ostream* os) { *os << c.name; }

// A connection error: GOAWAY with `code`, then the connection closes.
H2Case connectionError(std::string name, std::string bytes, uint32_t code) {
  H2Case c;
  c.name = std::move(name);
  c.bytes = std::move(bytes);
  c.allowed = {goawayWith(code)};
  c.stream = 0;
  return c;
}
// A stream error: RST_STREAM with `code` on `stream`; the connection stays usable.
H2Case streamError(std::string name, std::string bytes, uint32_t code, uint32_t stream = 1) {
  H2Case c;
  c.name = std::move(name);
  c.bytes = std::move(bytes);
  c.allowed = {rstWith(code)};
  c.stream = stream;
  return c;
}
// A malformed request (RFC 9113 8.1.1): a stream error of type PROTOCOL_ERROR, and never
// forwarded; "a server MAY send an HTTP response prior to closing or resetting the
// stream", so a 400 is as good.
H2Case malformed(std::string name, const h2::Fields& fields, std::string_view body = {},
                 std::string_view trailers = {}) {
  std::string bytes;
  if (body.empty() && trailers.empty()) {
    bytes = h2::headers(1, h2::block(fields));
  } else {
    bytes = h2::headers(1, h2::block(fields), h2::kEndHeaders);
    if (trailers.empty()) {
      bytes += h2::data(1, body);
    } else {
      if (!body.empty()) bytes += h2::data(1, body, 0);
      bytes += std::string(trailers);
    }
  }
  H2Case c = streamError(std::move(name), std::move(bytes), h2::kProtocolError);
  c.allowed.push_back(status(400));
  return c;
}
// A row answered by any of `allowed`, on stream 1.
H2Case answered(std::string name, std::string bytes, std::vector<Answer> allowed) {
  H2Case c;
  c.name = std::move(name);
  c.bytes = std::move(bytes);
  c.allowed = std::move(allowed);
  return c;
}
// A request that must be served (200) and forwarded with `target`.
H2Case served(std::string name, std::string bytes, std::string target) {
  H2Case c;
  c.name = std::move(name);
  c.bytes = std::move(bytes);
  c.allowed = {status(200)};
  c.forwarded = {std::move(target)};
  return c;
}

std::string postHeaders(uint32_t stream, std::string_view path = "/poison") {
  return h2::headers(stream, h2::block(h2::request("POST", path)), h2::kEndHeaders);
}

std::vector<H2Case> conformanceCases() {
  using namespace h2;
  using namespace std::string_literals;
  const std::string get = headers(1, block(request()));  // GET /poison on stream 1
  std::vector<H2Case> c;

  // ---- Connection preface (3.4)
  // A client preface that is not the preface: poolgate, which also speaks HTTP/1.1 on
  // this port, may close at once, send GOAWAY(PROTOCOL_ERROR), or answer as HTTP/1.1.
  c.push_back(connectionError("BadPreface", "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings() + get, kProtocolError)
                  .raw()
                  .also(kClosedAnswer)
                  .also(http1(400))
                  .also(http1(505)));
  c.push_back(connectionError("FirstFrameNotSettings", std::string(kPreface) + ping() + settings() + get, kProtocolError)
                  .raw());
  c.push_back(connectionError("FirstFrameHeaders", std::string(kPreface) + get, kProtocolError).raw());

  // ---- Frame size (4.2): SETTINGS_MAX_FRAME_SIZE is 16384 until poolgate says otherwise
  // DATA may be a stream error; nghttp2 makes every oversized frame a connection error.
  c.push_back(connectionError("DataOverMaxFrameSize", postHeaders(1) + data(1, std::string(16385, 'p')),
                              kFrameSizeError)
                  .orStreamError());
  c.back().stream = 1;
  // A frame that carries a field block: always a connection error.
  c.push_back(connectionError("HeadersOverMaxFrameSize",
                              headers(1, block(plus(request(), "x-big", std::string(16400, 'p')))), kFrameSizeError));
  c.push_back(connectionError("SettingsLengthNotMultipleOf6", frame(kSettings, 0, 0, u16(kEnablePush) + "\0\0\0"s),
                              kFrameSizeError));  // 6.5
  c.push_back(connectionError("PingLength7", frame(kPing, 0, 0, "0123456"), kFrameSizeError));  // 6.7
  c.push_back(connectionError("PingLength9", frame(kPing, 0, 0, "012345678"), kFrameSizeError));
  c.push_back(connectionError("WindowUpdateLength3", frame(kWindowUpdate, 0, 0, "\0\0\1"s), kFrameSizeError));  // 6.9
  c.push_back(connectionError("WindowUpdateLength5OnStream",
                              postHeaders(1) + frame(kWindowUpdate, 0, 1, "\0\0\0\1\0"s), kFrameSizeError));
  c.push_back(connectionError("RstStreamLength3", postHeaders(1) + frame(kRstStream, 0, 1, "\0\0\0"s),
                              kFrameSizeError));  // 6.4
  c.push_back(connectionError("GoawayLength7", frame(kGoaway, 0, 0, "\0\0\0\0\0\0\0"s), kFrameSizeError));
  // 6.3: "a stream error of type FRAME_SIZE_ERROR"; nghttp2 makes it a connection error.
  c.push_back(streamError("PriorityLength4", postHeaders(1) + frame(kPriority, 0, 1, "\0\0\0\0"s), kFrameSizeError)
                  .orConnectionError());
  // 6.1: padding as long as the payload or longer: a connection error.
  c.push_back(connectionError("DataPaddingTooLong", postHeaders(1) + frame(kData, kPadded | kEndStream, 1, "\x0a" "abc"),
                              kProtocolError));
  c.push_back(connectionError("HeadersPaddingTooLong",
                              frame(kHeaders, kPadded | kEndHeaders | kEndStream, 1, "\xff" + block(request())),
                              kProtocolError));

  // ---- Stream states (5.1)
  c.push_back(connectionError("DataOnIdleStream", data(1, "poison"), kProtocolError));
  c.push_back(connectionError("HeadersOnEvenStream", headers(2, block(request())), kProtocolError));
  c.push_back(connectionError("HeadersOnLowerStreamId",
                              requestFrames(5, "/ok-5") + headers(3, block(request())), kProtocolError)
                  .mayForwarding("/ok-5"));
  // half-closed (remote): "a stream error of type STREAM_CLOSED"; nghttp2 makes DATA
  // there a connection error.
  c.push_back(connectionError("DataAfterEndStream", requestFrames(1, "/ok-1") + data(1, "poison"), kStreamClosed)
                  .orStreamError()
                  .mayForwarding("/ok-1"));
  c.back().stream = 1;
  c.push_back(connectionError("HeadersAfterEndStream",
                              requestFrames(1, "/ok-1") + headers(1, block({{"x-poison", "1"}})), kStreamClosed)
                  .orStreamError()
                  .mayForwarding("/ok-1"));
  c.back().stream = 1;
  c.push_back(connectionError("DataOnStream0", postHeaders(1) + data(0, "poison"), kProtocolError));
  c.push_back(connectionError("HeadersOnStream0", headers(0, block(request())), kProtocolError));
  c.push_back(connectionError("SettingsOnStream1", frame(kSettings, 0, 1, ""), kProtocolError));
  c.push_back(connectionError("PingOnStream1", frame(kPing, 0, 1, "01234567"), kProtocolError));
  c.push_back(connectionError("GoawayOnStream1", frame(kGoaway, 0, 1, u32(0) + u32(0)), kProtocolError));
  c.push_back(connectionError("RstStreamOnStream0", rstStream(0, kCancel), kProtocolError));
  c.push_back(connectionError("RstStreamOnIdleStream", rstStream(1, kCancel), kProtocolError));
  c.push_back(connectionError("WindowUpdateOnIdleStream", windowUpdate(1, 100), kProtocolError));
  c.push_back(connectionError("PriorityOnStream0", priority(0, 1), kProtocolError));
  c.push_back(connectionError("ContinuationWithoutHeaders", continuation(1, block(request())), kProtocolError));
  c.push_back(connectionError("ContinuationAfterEndHeaders",
                              postHeaders(1) + continuation(1, literal("x-poison", "1")), kProtocolError));
  // 6.10: a field block is contiguous; nothing may come between its frames.
  const std::string open = headers(1, block(request()), kEndStream);  // no END_HEADERS
  const std::string rest = continuation(1, literal("x-a", "b"));
  c.push_back(connectionError("PingInsideHeaderBlock", open + ping() + rest, kProtocolError));
  c.push_back(connectionError("DataInsideHeaderBlock", open + data(1, "poison") + rest, kProtocolError));
  c.push_back(connectionError("HeadersInsideHeaderBlock", open + headers(3, block(request())) + rest, kProtocolError));
  c.push_back(connectionError("ContinuationOnAnotherStream", open + continuation(3, literal("x-a", "b")), kProtocolError));
  // 5.5: an extension frame in the middle of a field block is a connection error.
  c.push_back(connectionError("UnknownFrameInsideHeaderBlock", open + frame(0x20, 0, 0, "x") + rest, kProtocolError));
  // 5.5: unknown frame types are ignored, on the connection as on an idle stream.
  c.push_back(served("UnknownFrameTypesIgnored",
                     frame(0x20, 0, 0, "hello") + frame(0x21, 0xff, 1, "x") + requestFrames(1, "/ok-unknown-frame"),
                     "/ok-unknown-frame"));
  // 4.1: flags a frame type does not define are ignored, and so is the reserved bit of
  // the stream identifier.
  c.push_back(served("UndefinedFlagsIgnored",
                     frame(kHeaders, kEndStream | kEndHeaders | 0x02 | 0x10 | 0x40 | 0x80, 1,
                           block(request("GET", "/ok-flags"))) +
                         frame(kPing, 0xfe, 0, "01234567"),
                     "/ok-flags"));
  {
    std::string reserved = headers(1, block(request("GET", "/ok-reserved-bit")));
    reserved[5] = static_cast<char>(reserved[5] | 0x80);
    c.push_back(served("ReservedBitIgnored", reserved, "/ok-reserved-bit"));
  }
  c.push_back(served("HeadersPaddedServed",
                     frame(kHeaders, kPadded | kEndStream | kEndHeaders, 1,
                           "\x05" + block(request("GET", "/ok-padded")) + std::string(5, '\0')),
                     "/ok-padded"));
  // A 40 KB field section in a HEADERS and two CONTINUATION frames, under the announced
  // SETTINGS_MAX_HEADER_LIST_SIZE (65536 here).
  const auto split = [](std::string_view path) {
    std::string b = block(plus(request("GET", path), "x-long", std::string(40000, 'l')));
    std::string out = headers(1, b.substr(0, 16000), kEndStream);
    for (size_t at = 16000; at < b.size(); at += 16000)
      out += continuation(1, b.substr(at, 16000), at + 16000 >= b.size() ? kEndHeaders : 0);
    return out;
  };
  c.push_back(served("HeadersSplitAcrossContinuations", split("/ok-split"), "/ok-split")
                  .withHttp2("http2 = { max_header_list_bytes = 65536; };\n"
                             "limits = { max_header_bytes = 131072; };"));
  // The same with limits.max_header_bytes left at its default (32768): the HTTP/1.1
  // head made from the fields must fit it, so poolgate announces the smaller of the
  // two limits (32768) and a 40 KB field section is over what it said it accepts: 431.
  c.push_back(answered("HeaderListOverHttp1HeadLimit", split("/over-head-limit"),
                       {status(431), rstWith(kProtocolError), rstWith(kEnhanceYourCalm)})
                  .withHttp2("http2 = { max_header_list_bytes = 65536; };")
                  .checking([](const H2Case&, H2Client& client, const TestUpstream&) {
                    auto it = client.serverSettings().find(kMaxHeaderListSize);
                    ASSERT_NE(it, client.serverSettings().end()) << "no SETTINGS_MAX_HEADER_LIST_SIZE announced";
                    EXPECT_EQ(it->second, 32768u);
                  }));
  c.push_back(served("DataAtMaxFrameSize",
                     postHeaders(1, "/ok-16384") + data(1, std::string(16384, 'd')), "/ok-16384")
                  .checking([](const H2Case&, H2Client&, const TestUpstream& upstream) {
                    for (const UpstreamRequest& r : upstream.requests()) {
                      if (r.target == "/ok-16384") {
                        EXPECT_EQ(r.bodyLength, 16384u);
                      }
                    }
                  }));
  // 6.7: a PING is answered with an ACK carrying the same payload.
  c.push_back(served("PingAnswered", ping("h2spec!!") + requestFrames(1, "/ok-ping"), "/ok-ping")
                  .checking([](const H2Case&, H2Client& client, const TestUpstream&) {
                    EXPECT_GE(client.pingAcks(), 1u) << "the PING was not acknowledged";
                  }));
  // 8.4: "A client cannot push": a PUSH_PROMISE from the client is a connection error.
  c.push_back(connectionError("PushPromiseFromClient",
                              postHeaders(1) + frame(kPushPromise, kEndHeaders, 1, u32(2) + block(request())),
                              kProtocolError));
  // 5.3.1: a stream cannot depend on itself: a stream error of type PROTOCOL_ERROR.
  c.push_back(streamError("HeadersDependingOnItself",
                          frame(kHeaders, kEndStream | kEndHeaders | kPriorityFlag, 1, u32(1) + "\x0f" + block(request())),
                          kProtocolError)
                  .orConnectionError());
  c.push_back(streamError("PriorityDependingOnItself", postHeaders(1) + priority(1, 1), kProtocolError)
                  .orConnectionError());

  // ---- SETTINGS (6.5.2)
  c.push_back(connectionError("EnablePush2", settings({{kEnablePush, 2}}), kProtocolError));
  c.push_back(connectionError("InitialWindowSizeOver2To31", settings({{kInitialWindowSize, 0x80000000u}}),
                              kFlowControlError));
  c.push_back(connectionError("MaxFrameSizeBelow16384", settings({{kMaxFrameSize, 16383}}), kProtocolError));
  c.push_back(connectionError("MaxFrameSizeAbove2To24", settings({{kMaxFrameSize, 1u << 24}}), kProtocolError));
  c.push_back(connectionError("SettingsAckWithPayload", frame(kSettings, kAck, 0, u16(kEnablePush) + u32(0)),
                              kFrameSizeError));
  c.push_back(served("UnknownSettingIgnored", settings({{0x99, 7}, {0xfff0, 1}}) + requestFrames(1, "/ok-unknown-setting"),
                     "/ok-unknown-setting"));
  c.back().settingsAck = true;
  c.push_back(served("InitialWindowSizeAtMaximum", settings({{kInitialWindowSize, 0x7fffffffu}}) +
                                                       requestFrames(1, "/ok-big-window"),
                     "/ok-big-window"));
  c.back().settingsAck = true;
  // 6.9.2: a SETTINGS_INITIAL_WINDOW_SIZE change that pushes a stream's window past
  // 2^31-1 is a connection error of type FLOW_CONTROL_ERROR.
  c.push_back(connectionError("InitialWindowSizeChangeOverflowsStream",
                              postHeaders(1) + windowUpdate(1, 0x7fffffffu - 65535) +
                                  settings({{kInitialWindowSize, 65536}}),
                              kFlowControlError));

  // ---- Flow control (6.9)
  // 6.9: "a stream error of type PROTOCOL_ERROR"; nghttp2 makes it a connection error.
  c.push_back(streamError("WindowUpdateZeroOnStream", postHeaders(1) + windowUpdate(1, 0), kProtocolError)
                  .orConnectionError());
  c.push_back(connectionError("WindowUpdateZeroOnConnection", windowUpdate(0, 0), kProtocolError));
  c.push_back(connectionError("ConnectionWindowOverflow", windowUpdate(0, 0x7fffffffu), kFlowControlError));
  c.push_back(streamError("StreamWindowOverflow", postHeaders(1) + windowUpdate(1, 0x7fffffffu), kFlowControlError));
  // More DATA than the stream's window (4096 here, acknowledged in the handshake); the
  // RFC leaves stream or connection error to the receiver.
  c.push_back(streamError("DataOverStreamWindow", postHeaders(1) + data(1, std::string(5000, 'p')), kFlowControlError)
                  .orConnectionError()
                  .withHttp2("http2 = { initial_window_bytes = 4096; };")
                  .checking([](const H2Case&, H2Client& client, const TestUpstream&) {
                    auto it = client.serverSettings().find(kInitialWindowSize);
                    ASSERT_NE(it, client.serverSettings().end()) << "no SETTINGS_INITIAL_WINDOW_SIZE announced";
                    EXPECT_EQ(it->second, 4096u);
                  }));

  // ---- HPACK (RFC 7541): every decoding error is a connection error of type
  // COMPRESSION_ERROR (RFC 9113 4.3)
  c.push_back(connectionError("HpackIndexOutOfRange", headers(1, block(request()) + indexed(70)), kCompressionError));
  c.push_back(connectionError("HpackIndexZero", headers(1, block(request()) + indexed(0)), kCompressionError));
  c.push_back(connectionError("HpackHuffmanPaddingNotOnes",  // '0' (00000) then padding 000
                              headers(1, block(request()) + "\x00"s + str("x-a") + "\x81\x00"s), kCompressionError));
  c.push_back(connectionError("HpackHuffmanPaddingOver7Bits",  // 'a' (00011), 11 bits of padding
                              headers(1, block(request()) + "\x00"s + str("x-a") + "\x82\x1f\xff"s), kCompressionError));
  c.push_back(connectionError("HpackHuffmanEos",
                              headers(1, block(request()) + "\x00"s + str("x-a") + "\x84\xff\xff\xff\xff"s),
                              kCompressionError));
  c.push_back(connectionError("HpackTableSizeUpdateOverLimit", headers(1, tableSizeUpdate(8192) + block(request())),
                              kCompressionError));
  c.push_back(connectionError("HpackTableSizeUpdateAfterField",
                              headers(1, literal(":method", "GET") + tableSizeUpdate(0) +
                                             block(without(request(), ":method"))),
                              kCompressionError));
  c.push_back(connectionError("HpackTruncatedLiteral",
                              headers(1, block(request()) + "\x00"s + str("x-a") + integer(143, 7, 0) + "abc"),
                              kCompressionError));
  c.push_back(served("HpackTableSizeUpdateToZero",
                     headers(1, tableSizeUpdate(0) + block(request("GET", "/ok-table-0"))), "/ok-table-0"));
  c.push_back(connectionError("HpackIntegerOverflow",
                              headers(1, block(request()) + "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"s),
                              kCompressionError));
  // The encoder side of the probes is right: static and dynamic indexing and Huffman
  // strings decode as they should (x-dyn is sent once, then referenced).
  c.push_back(served("HpackIndexingAndHuffmanServed",
                     headers(1, indexed(2) + indexed(6) + "\x41"s + integer(huffmanEncode("localhost").size(), 7, 0x80) +
                                    huffmanEncode("localhost") + "\x04"s + str("/ok-hpack") +
                                    literalIndexed("x-dyn", "dynamic") + indexed(62)),
                     "/ok-hpack")
                  .checking([](const H2Case&, H2Client&, const TestUpstream& upstream) {
                    for (const UpstreamRequest& r : upstream.requests()) {
                      if (r.target != "/ok-hpack") continue;
                      EXPECT_EQ(countHeader(r.headers, "x-dyn"), 2u);
                      EXPECT_EQ(r.header("host").value_or(""), "localhost");
                    }
                  }));

  // ---- Pseudo-header fields and fields (8.2, 8.3): malformed requests
  const Fields req = request();
  c.push_back(malformed("MissingMethod", without(req, ":method")));
  c.push_back(malformed("MissingScheme", without(req, ":scheme")));
  c.push_back(malformed("MissingPath", without(req, ":path")));
  c.push_back(malformed("EmptyPath", {{":method", "GET"}, {":scheme", "http"}, {":authority", "localhost"},
                                      {":path", ""}, {"x-poison", "1"}}));
  c.push_back(malformed("MissingAuthorityAndHost", without(req, ":authority")));
  c.push_back(malformed("DuplicateMethod", plus(req, ":method", "GET")));
  c.push_back(malformed("DuplicatePath", plus(req, ":path", "/poison-again")));
  c.push_back(malformed("DuplicateScheme", plus(req, ":scheme", "http")));
  c.push_back(malformed("DuplicateAuthority", plus(req, ":authority", "localhost")));
  c.push_back(malformed("UnknownPseudoHeader", plus(req, ":poison", "1")));
  c.push_back(malformed("PseudoHeaderAfterRegularField",
                        {{":method", "GET"}, {":scheme", "http"}, {":authority", "localhost"}, {"x-a", "b"}, {":path", "/poison"}}));
  c.push_back(malformed("StatusPseudoHeaderInRequest", plus(req, ":status", "200")));
  c.push_back(malformed("ProtocolPseudoHeaderWithoutExtendedConnect", plus(req, ":protocol", "websocket")));
  c.push_back(malformed("UppercaseFieldName", plus(req, "X-Poison", "1")));
  c.push_back(malformed("SpaceInFieldName", plus(req, "x poison", "1")));
  c.push_back(malformed("ColonInFieldName", plus(req, "x:poison", "1")));
  c.push_back(malformed("EmptyFieldName", plus(req, "", "poison")));
  c.push_back(malformed("NonAsciiFieldName", plus(req, "x-\xc3\xa9", "1")));
  c.push_back(malformed("ConnectionField", plus(req, "connection", "keep-alive")));
  c.push_back(malformed("KeepAliveField", plus(req, "keep-alive", "timeout=5")));
  c.push_back(malformed("ProxyConnectionField", plus(req, "proxy-connection", "keep-alive")));
  c.push_back(malformed("TransferEncodingField", plus(req, "transfer-encoding", "chunked")));
  c.push_back(malformed("UpgradeField", plus(req, "upgrade", "websocket")));
  c.push_back(malformed("TeGzip", plus(req, "te", "gzip")));
  c.push_back(malformed("TeTrailersAndGzip", plus(req, "te", "trailers, gzip")));
  c.push_back(served("TeTrailersServed", headers(1, block(plus(request("GET", "/ok-te"), "te", "trailers"))), "/ok-te"));
  c.push_back(malformed("CrInFieldValue", plus(req, "x-a", "b\rc")));
  c.push_back(malformed("LfInFieldValue", plus(req, "x-a", "b\nx-injected: poison")));
  c.push_back(malformed("CrLfInFieldValue", plus(req, "x-a", "b\r\nx-injected: poison")));
  c.push_back(malformed("NulInFieldValue", plus(req, "x-a", "b\0c"s)));
  c.push_back(malformed("LeadingSpaceInFieldValue", plus(req, "x-a", " b")));
  c.push_back(malformed("TrailingTabInFieldValue", plus(req, "x-a", "b\t")));
  c.push_back(malformed("CrLfInPath", plus(without(req, ":path"), ":path", "/poison\r\nx: y")));
  c.push_back(malformed("SpaceInPath", plus(without(req, ":path"), ":path", "/poison HTTP/1.1")));
  c.push_back(malformed("MethodWithInvalidCharacter", prepend(without(req, ":method"), ":method", "G@T")));
  c.push_back(malformed("MethodWithSpace", prepend(without(req, ":method"), ":method", "GET /poison")));
  c.push_back(malformed("ContentLengthLongerThanData",
                        plus(request("POST"), "content-length", "100"), "poison"));
  c.push_back(malformed("ContentLengthShorterThanData",
                        plus(request("POST"), "content-length", "2"), "poison"));
  c.push_back(malformed("ContentLengthWithoutData", plus(request("POST"), "content-length", "6")));
  c.push_back(malformed("ContentLengthNotANumber", plus(request("POST"), "content-length", "abc"), "poison"));
  c.push_back(malformed("TwoContentLengths",
                        plus(plus(request("POST"), "content-length", "6"), "content-length", "7"), "poison"));
  // 8.1: trailers must end the stream and carry no pseudo-header.
  c.push_back(malformed("PseudoHeaderInTrailers", request("POST"), "poison",
                        headers(1, block({{":path", "/poison"}}))));
  c.push_back(malformed("TrailersWithoutEndStream", request("POST"), "poison",
                        headers(1, block({{"x-trailer", "1"}}), kEndHeaders) + data(1, "more")));
  // 8.3.1: ":authority MUST NOT include the deprecated userinfo subcomponent".
  c.push_back(malformed("AuthorityWithUserinfo", request("GET", "/poison", "user@localhost")));
  // 8.3.1: "A server SHOULD treat a request as malformed if it contains a Host header
  // field that identifies an entity that differs from the entity in the :authority
  // pseudo-header field" (poolgate refuses the same disagreement over HTTP/1.1, between
  // Host and an absolute-form target).
  c.push_back(malformed("HostDiffersFromAuthority", plus(req, "host", "poison.example")));
  c.push_back(served("HostAgreesWithAuthority", headers(1, block(plus(request("GET", "/ok-host"), "host", "localhost"))),
                     "/ok-host"));
  c.push_back(served("HostWithoutAuthority",
                     headers(1, block(plus(without(request("GET", "/ok-host-only"), ":authority"), "host", "localhost"))),
                     "/ok-host-only")
                  .checking([](const H2Case&, H2Client&, const TestUpstream& upstream) {
                    for (const UpstreamRequest& r : upstream.requests()) {
                      if (r.target == "/ok-host-only") {
                        EXPECT_EQ(r.header("host").value_or(""), "localhost");
                      }
                    }
                  }));
  // 8.3.1: ":path" is origin-form (or "*" for OPTIONS); poolgate refuses the same
  // targets over HTTP/1.1.
  c.push_back(malformed("PathNotOriginForm", request("GET", "poison")));
  c.push_back(malformed("PathAsteriskForGet", request("GET", "*")));
  c.push_back(malformed("PathWithFragment", request("GET", "/poison#frag")));
  c.push_back(served("OptionsAsterisk", headers(1, block(request("OPTIONS", "*"))), "*"));

  // ---- CONNECT (8.5): refused as over HTTP/1.1 (405); a malformed CONNECT is reset
  c.push_back(answered("ConnectRefused405",
                     headers(1, block({{":method", "CONNECT"}, {":authority", "poison.example:443"}})),
                     {status(405)}));
  c.push_back(malformed("ConnectWithSchemeAndPath",
                        {{":method", "CONNECT"}, {":scheme", "http"}, {":authority", "poison.example:443"}, {":path", "/"}}));
  c.push_back(malformed("ConnectWithoutAuthority", {{":method", "CONNECT"}, {"x-poison", "1"}}));

  // ---- Header list size (SETTINGS_MAX_HEADER_LIST_SIZE, 10.5.1): a field section over
  // the limit may get 431 or a stream error, and is never forwarded.
  {
    std::string big;
    for (int i = 0; i < 40; ++i) big += literal("x-poison-" + std::to_string(i), std::string(1000, 'p'));
    std::string bytes = headers(1, block(request()) + big.substr(0, 10000), kEndStream);
    for (size_t at = 10000; at < big.size(); at += 10000)
      bytes += continuation(1, big.substr(at, 10000), at + 10000 >= big.size() ? kEndHeaders : 0);
    c.push_back(answered("HeaderListOverDefaultLimit", bytes, {status(431), rstWith(kProtocolError), rstWith(kEnhanceYourCalm)}));
    c.back().checking([](const H2Case&, H2Client& client, const TestUpstream&) {
      auto it = client.serverSettings().find(kMaxHeaderListSize);
      ASSERT_NE(it, client.serverSettings().end()) << "no SETTINGS_MAX_HEADER_LIST_SIZE announced";
      EXPECT_EQ(it->second, 32768u);
    });
  }
  c.push_back(answered("HeaderListOverConfiguredLimit",
                       headers(1, block(plus(request(), "x-poison", std::string(5000, 'p')))),
                       {status(431), rstWith(kProtocolError), rstWith(kEnhanceYourCalm)}));
  c.back().withHttp2("http2 = { max_header_list_bytes = 4096; };");
  c.push_back(served("HeaderListUnderConfiguredLimit",
                     headers(1, block(plus(request("GET", "/ok-list"), "x-fill", std::string(3000, 'f')))), "/ok-list")
                  .withHttp2("http2 = { max_header_list_bytes = 4096; };"));
  return c;
}

class Http2ConformanceTest : public Http2Fixture, public ::testing::WithParamInterface<H2Case> {};

TEST_P(Http2ConformanceTest, Row) {
  const H2Case& c = GetParam();
  startHttp2(c.http2);
  warmPool();

  auto client = std::make_unique<H2Client>(port());
  if (c.start == Start::kHandshake) client->handshake();
  client->send(c.bytes);  // poolgate may close before it has read everything
  client->pump(
      [&] {
        Answer a = firstAnswer(*client, c.stream);
        if (a.kind == Answer::kStatus) return client->stream(c.stream).done() || client->closed();
        return a.kind != Answer::kNothing;
      },
      5s);
  const Answer got = firstAnswer(*client, c.stream);
  std::cout << "[ answer   ] " << c.name << ": " << describe(got) << "  <- " << client->describeEvents() << std::endl;
  EXPECT_TRUE(std::find(c.allowed.begin(), c.allowed.end(), got) != c.allowed.end())
      << "got " << describe(got) << ", expected " << describe(c.allowed) << "; poolgate sent: " << client->describeEvents();
  if (c.settingsAck) {
    EXPECT_GE(client->settingsAcks(), 2u) << "the row's SETTINGS was not acknowledged";
  }

  bool usable = false;
  switch (got.kind) {
    case Answer::kGoaway:
    case Answer::kClosed:
    case Answer::kHttp1:
      // 5.4.1: "After sending the GOAWAY frame for an error condition, the endpoint
      // MUST close the TCP connection."
      EXPECT_TRUE(client->waitClosed()) << "the connection stays open after " << describe(got);
      break;
    case Answer::kRst:
    case Answer::kStatus: {
      // A stream error leaves the connection usable: a new stream is served.
      usable = true;
      StreamState& after = exchange(*client, 99, "/after");
      EXPECT_EQ(after.status.value_or(0), 200) << "the connection is not usable after " << describe(got) << ": "
                                               << client->describeEvents();
      break;
    }
    case Answer::kNothing:
      break;
  }
  if (c.check) c.check(c, *client, upstream_);
  client.reset();

  // What the row must forward is waited for first: the upstream reads each connection in a
  // thread of its own, so the barrier below orders the bytes, not their recording (a
  // request forwarded on the eve of a GOAWAY was once recorded after the barrier).
  std::map<std::string, size_t> wanted;
  for (const std::string& target : c.forwarded) ++wanted[target];
  waitUntil(
      [&] {
        std::map<std::string, size_t> got;
        for (const UpstreamRequest& r : upstream_.requests()) ++got[r.target];
        for (const auto& [target, n] : wanted)
          if (got[target] < n) return false;
        return true;
      },
      5s);  // a request that never comes is reported below
  // Barrier: once it has arrived, anything poolgate forwarded earlier has too.
  HttpClient barrier = connect();
  ASSERT_EQ(barrier.get("/barrier").status, 200);
  std::vector<UpstreamRequest> seen = upstream_.requests();
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen.front().target, "/warm");
  std::multiset<std::string> byRow;
  for (size_t i = 1; i < seen.size(); ++i) byRow.insert(seen[i].target);
  auto take = [&](const std::string& target) {
    auto it = byRow.find(target);
    if (it == byRow.end()) return false;
    byRow.erase(it);
    return true;
  };
  // Found by name, not as the last one recorded: a request the row may forward can be
  // recorded after it (see above).
  EXPECT_TRUE(take("/barrier")) << "the barrier is not recorded";
  for (const std::string& target : c.forwarded) {
    EXPECT_TRUE(take(target)) << target << " did not reach the upstream";
  }
  if (usable) {
    EXPECT_TRUE(take("/after")) << "/after did not reach the upstream";
  }
  for (const std::string& target : c.mayForward) take(target);
  for (const std::string& target : byRow) ADD_FAILURE() << "a request the row did not allow reached the upstream: " << target;
  EXPECT_EQ(upstream_.rawReceived().find("poison"), std::string::npos) << "part of a refused request reached the upstream";

  Json stats = proxy().stats();
  if (got.kind == Answer::kGoaway) {
    EXPECT_GE(totalOf(stats, "http2_goaways_sent_total"), 1u) << "the GOAWAY is not counted";
  }
  if (got.kind == Answer::kRst) {
    EXPECT_GE(totalOf(stats, "http2_resets_sent_total"), 1u) << "the RST_STREAM is not counted";
  }
}

// Rows that fail today because of a bug: they keep the RFC's expectation and run under
// the DISABLED_Http2Conformance prefix (so gtest skips them; --gtest_also_run_disabled_tests
// runs them) until fixed. Remove the entry when the row passes.
const std::map<std::string, std::string>& knownFailures() {
  static const std::map<std::string, std::string> kKnownFailures = {};
  return kKnownFailures;
}

std::vector<H2Case> rows(bool knownFailing) {
  std::vector<H2Case> all = conformanceCases();
  std::vector<H2Case> out;
  for (H2Case& c : all)
    if (knownFailures().count(c.name) == (knownFailing ? 1u : 0u)) out.push_back(std::move(c));
  return out;
}

INSTANTIATE_TEST_SUITE_P(Http2Conformance, Http2ConformanceTest, ::testing::ValuesIn(rows(false)),
                         [](const auto& info) { return info.param.name; });
INSTANTIATE_TEST_SUITE_P(DISABLED_Http2Conformance, Http2ConformanceTest, ::testing::ValuesIn(rows(true)),
                         [](const auto& info) { return info.param.name; });

// ---------------------------------------------------------------------------------------
// The HTTP/2 gauges of /stats (http2_connections, http2_streams_open) come back to zero
// once the clients are gone. Kept apart from the rows, which check the protocol.

class Http2ConformanceGauges : public Http2Fixture {
 protected:
  // A connection error on a connection whose stream 1 is open or opening.
  void connectionErrorWithAStream(const std::string& bytes, uint32_t code) {
    H2Client client(port());
    client.handshake();
    client.send(bytes);
    client.pump([&] { return client.goaway().has_value() || client.closed(); }, 5s);
    auto g = client.goaway();
    ASSERT_TRUE(g.has_value()) << client.describeEvents();
    EXPECT_EQ(h2::errorName(g->code), h2::errorName(code));
    EXPECT_TRUE(client.waitClosed());
  }
};

// Control: stream errors, requests, then the client closes after it has read everything.
TEST_F(Http2ConformanceGauges, BackToZeroAfterStreamErrorsAndAClientClose) {
  startHttp2();
  for (int i = 0; i < 5; ++i) {
    H2Client client(port());
    client.autoWindow = false;  // nothing is sent after the last response
    client.handshake();
    client.send(h2::headers(1, h2::block(h2::plus(h2::request(), "connection", "close"))));
    client.pump([&] { return client.stream(1).done(); }, 5s);
    EXPECT_EQ(client.stream(1).reset.value_or(0), h2::kProtocolError);
    EXPECT_EQ(exchange(client, 3, "/ok").status.value_or(0), 200);
    client.drain();
  }
  expectGaugesBackToZero();
}

// A connection error (HPACK, padding, frame size) while a stream is open or opening:
// once the connection is closed, http2_streams_open must not keep counting that stream.
TEST_F(Http2ConformanceGauges, NoStreamLeftCountedAfterConnectionErrors) {
  startHttp2();
  connectionErrorWithAStream(h2::headers(1, h2::block(h2::request()) + h2::indexed(70)), h2::kCompressionError);
  connectionErrorWithAStream(postHeaders(1) + h2::frame(h2::kData, h2::kPadded | h2::kEndStream, 1, "\x0a" "abc"),
                             h2::kProtocolError);
  connectionErrorWithAStream(postHeaders(1) + h2::frame(h2::kRstStream, 0, 1, std::string(3, '\0')),
                             h2::kFrameSizeError);
  expectGaugesBackToZero();
}

// A client that sends a last frame (here a WINDOW_UPDATE, as for the response it has just
// read) and closes at once: the frame and the FIN arrive together. poolgate must notice
// the EOF and close its side, not hold the connection (CLOSE_WAIT) until a timeout.
TEST_F(Http2ConformanceGauges, ConnectionClosedWhenTheClientClosesRightAfterAFrame) {
  startHttp2();
  for (int i = 0; i < 20; ++i) {
    H2Client client(port());
    client.handshake();
    ASSERT_EQ(exchange(client, 1, "/ok").status.value_or(0), 200);
    client.send(h2::windowUpdate(0, 1000));
  }
  expectGaugesBackToZero();
}

// ---------------------------------------------------------------------------------------
// Attacks

// ---------------------------------------------------------------------------------------
// A stream's timeouts, as for HTTP/1.1: a stream whose request body stops is answered 408
// after client_body; one whose header block stops (a HEADERS frame without END_HEADERS,
// and no CONTINUATION) is ended after client_header. Either way the connection's other
// streams go on (the second case blocks the connection, which then closes).

class Http2StreamTimeouts : public Http2Fixture {};

TEST_F(Http2StreamTimeouts, ABodyThatStopsIsAnswered408) {
  startHttp2("", "timeouts = { client_body = 0.5; };");
  warmPool();
  H2Client client(port());
  client.handshake();
  ASSERT_TRUE(client.send(postHeaders(1)));  // END_HEADERS, no END_STREAM: a body is to come
  ASSERT_TRUE(client.send(h2::data(1, "poison, part of a body that never ends", 0)));
  StreamState& s = client.stream(1);
  ASSERT_TRUE(client.pump([&] { return s.status.has_value() || s.done() || client.closed(); }, 10s))
      << client.describeEvents();
  EXPECT_EQ(s.status.value_or(0), 408) << client.describeEvents();
  StreamState& next = exchange(client, 3, "/after-408");
  EXPECT_EQ(next.status.value_or(0), 200) << client.describeEvents();
}

TEST_F(Http2StreamTimeouts, AHeaderBlockThatStopsIsEndedAfterClientHeader) {
  startHttp2("", "timeouts = { client_header = 0.5; };");
  warmPool();
  H2Client client(port());
  client.handshake();
  ASSERT_TRUE(client.send(h2::headers(1, h2::block(h2::request("GET", "/poison")), h2::kEndStream)));
  ASSERT_TRUE(client.pump([&] { return firstAnswer(client, 1).kind != Answer::kNothing; }, 10s))
      << "nothing 10 s after a header block stopped: " << client.describeEvents();
  expectFreshConnectionServed();
}

struct FloodResult {
  size_t sent = 0;       // bytes poolgate took
  bool closed = false;   // poolgate closed (or reset) the connection
  bool stalled = false;  // poolgate stopped reading for `stall`
  bool goaway = false;   // poolgate sent a GOAWAY (only seen when reading)
  double seconds = 0;
  std::string describe() const {
    std::ostringstream o;
    o << (sent >> 10) << " KiB taken in " << seconds << " s, then "
      << (closed ? "closed" : stalled ? "no more read (backpressure)" : goaway ? "GOAWAY" : "all sent");
    return o.str();
  }
};

class Http2Attack : public Http2Fixture {
 protected:
  // Sends `unit` again and again, up to `maxBytes` or for `budget`, in pieces of about
  // 64 KiB. With `read`, handles what poolgate sent between pieces, and stops at a GOAWAY.
  // Stops when poolgate closes, or when it has not read for `stall`.
  static FloodResult flood(H2Client& client, const std::string& unit, size_t maxBytes, Millis budget, bool read,
                           Millis stall = 3s) {
    std::string piece;
    while (piece.size() < 64 * 1024) piece += unit;
    FloodResult r;
    const auto start = Clock::now();
    while (r.sent < maxBytes && Clock::now() - start < budget) {
      H2Client::SendResult s = client.sendSome(piece, stall);
      r.sent += s.sent;
      if (s.closed) r.closed = true;
      if (s.stalled) r.stalled = true;
      if (read) {
        client.drain();
        if (client.closed()) r.closed = true;
        if (client.goaway()) r.goaway = true;
      }
      if (r.closed || r.stalled || r.goaway) break;
    }
    r.seconds = secondsSince(start);
    return r;
  }

  // A GOAWAY with one of `codes`, or a close, within `timeout`; prints what came.
  void expectGoawayOrClose(H2Client& client, const std::vector<uint32_t>& codes, const std::string& what,
                           Millis timeout = 10s) {
    client.pump([&] { return client.goaway().has_value() || client.closed(); }, timeout);
    std::cout << "[ answer   ] " << what << ": " << client.describeEvents(6) << std::endl;
    auto g = client.goaway();
    ASSERT_TRUE(g || client.closed()) << what << ": neither a GOAWAY nor a close within " << timeout.count() << " ms";
    if (g) {
      EXPECT_NE(std::find(codes.begin(), codes.end(), g->code), codes.end())
          << what << ": GOAWAY " << h2::errorName(g->code);
      EXPECT_TRUE(client.waitClosed(10s)) << what << ": the connection stays open after the GOAWAY";
    }
  }

  // The upstream never saw a byte of "poison".
  void expectNoPoisonUpstream() {
    HttpClient barrier = connect();
    ASSERT_EQ(barrier.get("/barrier").status, 200);
    EXPECT_EQ(upstream_.rawReceived().find("poison"), std::string::npos) << "part of a refused request reached the upstream";
  }

  // A client that never reads floods poolgate with frames that each ask for an answer
  // (SETTINGS, PING). poolgate must not read (and queue answers) without bound: it
  // closes the connection, sends GOAWAY, or stops reading, with its memory bounded; and
  // it serves another client meanwhile.
  void floodFromAClientThatNeverReads(const std::string& unit, const std::string& what) {
    startHttp2();
    const pid_t worker = workerPid();
    ASSERT_GT(worker, 0);
    H2Client attacker(port(), /*rcvbuf=*/4096);
    attacker.handshake();
    const uint64_t rssBefore = rssKib(worker);
    FloodResult r = flood(attacker, unit, 512u << 20, 20s, /*read=*/false);
    const uint64_t rssAfter = rssKib(worker);
    std::cout << "[ answer   ] " << what << ": " << r.describe() << "; worker RSS " << rssBefore << " -> " << rssAfter
              << " KiB" << std::endl;
    EXPECT_TRUE(r.closed || r.stalled) << what << ": poolgate read " << r.describe()
                                       << " from a client that reads none of the answers";
    EXPECT_LT(rssAfter, rssBefore + 64 * 1024) << what << ": the worker grew by " << (rssAfter - rssBefore) << " KiB";
    expectFreshConnectionServed();  // while the attacker is still connected
    if (!r.closed) {
      // Now read: the answers, then a GOAWAY or a close, or the connection still usable.
      attacker.pump([&] { return attacker.goaway().has_value() || attacker.closed(); }, 3s);
      std::cout << "[ answer   ] " << what << " (then read): " << attacker.framesReceived() << " frames, "
                << attacker.describeEvents(4) << std::endl;
    }
  }
};

// CVE-2023-44487: HEADERS then RST_STREAM at once, thousands of times. Each stream is a
// request poolgate may start upstream before the reset cancels it. The defence: a GOAWAY
// (ENHANCE_YOUR_CALM, or INTERNAL_ERROR, what nghttp2's own reset rate limit sends since
// 1.57) or a close, long before the last pair.
TEST_F(Http2Attack, RapidReset) {
  startHttp2();
  warmPool();
  H2Client client(port());
  client.handshake();
  constexpr uint32_t kPairs = 20000;
  std::string pairs;
  for (uint32_t i = 0; i < kPairs; ++i) {
    const uint32_t id = 1 + 2 * i;
    pairs += requestFrames(id, "/rapid-reset") + h2::rstStream(id, h2::kCancel);
  }
  const size_t pairSize = pairs.size() / kPairs;
  const auto start = Clock::now();
  size_t sent = 0;
  while (sent < pairs.size() && !client.closed() && !client.goaway() && secondsSince(start) < 20) {
    H2Client::SendResult s = client.sendSome(std::string_view(pairs).substr(sent, 64 * 1024), 3s);
    sent += s.sent;
    client.drain();
    if (s.closed || s.stalled) break;
  }
  std::cout << "[ answer   ] rapid reset: " << sent / pairSize << " of " << kPairs << " pairs taken in "
            << secondsSince(start) << " s; the upstream saw " << upstream_.requestCount() - 1 << " requests" << std::endl;
  expectGoawayOrClose(client, {h2::kEnhanceYourCalm, h2::kInternalError, h2::kProtocolError}, "rapid reset");
  EXPECT_LT(upstream_.requestCount(), size_t{kPairs / 4}) << "the resets did not stop the requests going upstream";
  expectFreshConnectionServed();
  Json stats = proxy().stats();
  EXPECT_GE(totalOf(stats, "http2_resets_received_total"), 1u);
  EXPECT_GE(totalOf(stats, "http2_goaways_sent_total"), client.goaway() ? 1u : 0u);
}

// CVE-2024-27316 (and nghttp2's CVE-2024-28182): a HEADERS without END_HEADERS, then
// CONTINUATION frames that never end the block. Empty ones add nothing to the field
// section, so no size limit catches them: poolgate must stop the connection anyway.
TEST_F(Http2Attack, EmptyContinuationFlood) {
  startHttp2();
  H2Client client(port());
  client.handshake();
  client.send(h2::headers(1, h2::block(h2::request()), h2::kEndStream));
  FloodResult r = flood(client, h2::continuation(1, "", 0), 64u << 20, 15s, /*read=*/true);
  std::cout << "[ answer   ] empty CONTINUATION flood: " << r.describe() << std::endl;
  EXPECT_TRUE(r.closed || r.goaway || r.stalled) << "poolgate took 64 MiB of CONTINUATION frames";
  expectGoawayOrClose(client, {h2::kEnhanceYourCalm, h2::kProtocolError, h2::kInternalError}, "empty CONTINUATION flood");
  expectFreshConnectionServed();
  expectNoPoisonUpstream();
}

// The same with CONTINUATION frames that each carry fields: the field section grows
// past max_header_list_bytes long before the flood ends.
TEST_F(Http2Attack, ContinuationFloodWithFields) {
  startHttp2();
  const pid_t worker = workerPid();
  H2Client client(port());
  client.handshake();
  client.send(h2::headers(1, h2::block(h2::request()), h2::kEndStream));
  const uint64_t rssBefore = rssKib(worker);
  FloodResult r = flood(client, h2::continuation(1, h2::literal("x-poison", std::string(8000, 'p')), 0), 64u << 20, 15s,
                        /*read=*/true);
  const uint64_t rssAfter = rssKib(worker);
  std::cout << "[ answer   ] CONTINUATION flood with fields: " << r.describe() << "; worker RSS " << rssBefore << " -> "
            << rssAfter << " KiB" << std::endl;
  EXPECT_TRUE(r.closed || r.goaway || r.stalled) << "poolgate took 64 MiB of CONTINUATION frames";
  EXPECT_LT(rssAfter, rssBefore + 64 * 1024) << "the worker grew by " << (rssAfter - rssBefore) << " KiB";
  expectGoawayOrClose(client, {h2::kEnhanceYourCalm, h2::kProtocolError, h2::kInternalError, h2::kCompressionError},
                      "CONTINUATION flood with fields");
  expectFreshConnectionServed();
  expectNoPoisonUpstream();
}

// An HPACK bomb: one 4000-byte field inserted in the dynamic table, then referenced
// 12000 times with one byte each: 16 KB on the wire, 48 MB decoded. The decoded field
// section is far over max_header_list_bytes (32768): refused (431, or a reset) without
// decoding it all into memory, and nothing goes upstream.
TEST_F(Http2Attack, HpackBomb) {
  startHttp2();
  warmPool();
  const pid_t worker = workerPid();
  H2Client client(port());
  client.handshake();
  std::string bomb = h2::block(h2::request()) + h2::literalIndexed("x-poison", std::string(4000, 'b'));
  for (int i = 0; i < 12000; ++i) bomb += h2::indexed(62);
  ASSERT_LE(bomb.size(), 16384u);
  const uint64_t rssBefore = rssKib(worker);
  client.send(h2::headers(1, bomb));
  client.pump([&] { return client.stream(1).done() || client.goaway() || client.closed(); }, 10s);
  const uint64_t rssAfter = rssKib(worker);
  const Answer got = firstAnswer(client, 1);
  std::cout << "[ answer   ] HPACK bomb: " << describe(got) << "  <- " << client.describeEvents() << "; worker RSS "
            << rssBefore << " -> " << rssAfter << " KiB" << std::endl;
  EXPECT_TRUE(got == status(431) || got.kind == Answer::kRst ||
              (got.kind == Answer::kGoaway && got.code != h2::kNoError) || got == kClosedAnswer)
      << "the bomb was not refused: " << describe(got);
  EXPECT_LT(rssAfter, rssBefore + 32 * 1024) << "the worker grew by " << (rssAfter - rssBefore) << " KiB";
  if (got.kind == Answer::kRst || got.kind == Answer::kStatus) {
    StreamState& after = exchange(client, 3, "/after-bomb");
    EXPECT_EQ(after.status.value_or(0), 200) << "the connection is not usable after the bomb: " << client.describeEvents();
  }
  expectFreshConnectionServed();
  expectNoPoisonUpstream();
}

TEST_F(Http2Attack, SettingsFloodFromAClientThatNeverReads) {
  floodFromAClientThatNeverReads(h2::settings({{h2::kEnablePush, 0}}), "SETTINGS flood");
}

TEST_F(Http2Attack, PingFloodFromAClientThatNeverReads) {
  floodFromAClientThatNeverReads(h2::ping(), "PING flood");
}

// CVE-2019-9518: empty DATA frames cost the sender 9 bytes each and give the receiver
// work but nothing to do. Either poolgate cuts the flood (GOAWAY, a reset, a close), or
// it takes the frames at line rate and the request ends normally, within bounds.
TEST_F(Http2Attack, EmptyDataFrameFlood) {
  startHttp2();
  warmPool();
  H2Client client(port());
  client.handshake();
  client.send(postHeaders(1, "/empty-data"));
  FloodResult r = flood(client, h2::data(1, "", 0), 200000 * 9, 20s, /*read=*/true);
  if (!r.closed && !r.goaway && !client.stream(1).reset) client.send(h2::data(1, "done"));
  client.pump([&] { return client.stream(1).done() || client.goaway() || client.closed(); }, 10s);
  const Answer got = firstAnswer(client, 1);
  std::cout << "[ answer   ] empty DATA flood: " << r.describe() << "; " << describe(got) << "  <- "
            << client.describeEvents(4) << std::endl;
  if (got == status(200)) {
    EXPECT_FALSE(r.stalled) << "poolgate stopped reading the DATA frames";
    EXPECT_LT(r.seconds, 15.0);
    auto requests = upstream_.requests();
    ASSERT_FALSE(requests.empty());
    EXPECT_EQ(requests.back().target, "/empty-data");
    EXPECT_EQ(requests.back().body, "done");
  } else {
    EXPECT_TRUE(((got.kind == Answer::kGoaway || got.kind == Answer::kRst) &&
                 (got.code == h2::kEnhanceYourCalm || got.code == h2::kProtocolError)) ||
                got == kClosedAnswer)
        << describe(got);
  }
  expectFreshConnectionServed();
}

// CVE-2019-9513 (resource loop): PRIORITY frames that reshuffle a dependency tree of
// 100000 idle streams. poolgate must stay responsive and bounded: the request after the
// flood is served (or the flood is cut with a GOAWAY or a close).
TEST_F(Http2Attack, PriorityFlood) {
  startHttp2();
  warmPool();
  const pid_t worker = workerPid();
  H2Client client(port());
  client.handshake();
  std::string frames;
  for (uint32_t i = 0; i < 100000; ++i) {
    const uint32_t id = 3 + 2 * (i % 50000);
    frames += h2::priority(id, i % 2 ? id - 2 : 0, static_cast<uint8_t>(i), i % 3 == 0);
  }
  const uint64_t rssBefore = rssKib(worker);
  FloodResult r = flood(client, frames, frames.size(), 20s, /*read=*/true);
  if (!r.closed && !r.goaway) client.send(requestFrames(1, "/after-priorities"));
  client.pump([&] { return client.stream(1).done() || client.goaway() || client.closed(); }, 10s);
  const uint64_t rssAfter = rssKib(worker);
  const Answer got = firstAnswer(client, 1);
  std::cout << "[ answer   ] PRIORITY flood: " << r.describe() << "; " << describe(got) << "; worker RSS " << rssBefore
            << " -> " << rssAfter << " KiB" << std::endl;
  EXPECT_TRUE(got == status(200) || got == goawayWith(h2::kEnhanceYourCalm) || got == goawayWith(h2::kProtocolError) ||
              got == kClosedAnswer)
      << describe(got) << "  <- " << client.describeEvents();
  EXPECT_LT(r.seconds, 15.0);
  EXPECT_LT(rssAfter, rssBefore + 64 * 1024) << "the worker grew by " << (rssAfter - rssBefore) << " KiB";
  expectFreshConnectionServed();
}

// One SETTINGS frame with 2000 entries (CVE-2020-11080: nghttp2 1.41 caps the entries it
// takes): a GOAWAY(ENHANCE_YOUR_CALM) or, if taken, acknowledged at once.
TEST_F(Http2Attack, SettingsFrameWithThousandsOfEntries) {
  startHttp2();
  H2Client client(port());
  client.handshake();
  h2::SettingsList many;
  for (int i = 0; i < 2000; ++i) many.emplace_back(h2::kHeaderTableSize, 4096 + i % 2);
  const auto start = Clock::now();
  client.send(h2::settings(many));
  client.pump([&] { return client.settingsAcks() >= 2 || client.goaway() || client.closed(); }, 10s);
  std::cout << "[ answer   ] SETTINGS with 2000 entries: " << client.settingsAcks() - 1 << " ACK, "
            << client.describeEvents() << " in " << secondsSince(start) << " s" << std::endl;
  auto g = client.goaway();
  if (g) {
    EXPECT_EQ(h2::errorName(g->code), h2::errorName(h2::kEnhanceYourCalm));
    EXPECT_TRUE(client.waitClosed());
  } else {
    EXPECT_GE(client.settingsAcks(), 2u) << client.describeEvents();
  }
  expectFreshConnectionServed();
}

// More concurrent streams than max_concurrent_streams (4 here), before the client has
// acknowledged poolgate's SETTINGS: RFC 9113 5.1.2 allows PROTOCOL_ERROR or
// REFUSED_STREAM as a stream error; REFUSED_STREAM (what nghttp2 sends while the limit
// is not acknowledged) tells the client it may retry. The streams within the limit
// live on, and a slot freed by a reset is usable.
TEST_F(Http2Attack, MoreStreamsThanMaxConcurrentStreamsBeforeSettingsAck) {
  startHttp2("http2 = { max_concurrent_streams = 4; };");
  warmPool();
  H2Client client(port());
  client.handshake({}, /*ack=*/false);
  auto it = client.serverSettings().find(h2::kMaxConcurrentStreams);
  ASSERT_NE(it, client.serverSettings().end()) << "no SETTINGS_MAX_CONCURRENT_STREAMS announced";
  EXPECT_EQ(it->second, 4u);
  std::string open;
  for (uint32_t id = 1; id <= 11; id += 2) open += postHeaders(id, "/poison-" + std::to_string(id));
  client.send(open);
  client.pump([&] { return (client.stream(9).reset && client.stream(11).reset) || client.goaway() || client.closed(); },
              5s);
  std::cout << "[ answer   ] 6 streams for 4: " << client.describeEvents() << std::endl;
  for (uint32_t id : {9u, 11u}) {
    auto& s = client.stream(id);
    ASSERT_TRUE(s.reset.has_value()) << "stream " << id << " over the limit not refused: " << client.describeEvents();
    EXPECT_TRUE(*s.reset == h2::kRefusedStream || *s.reset == h2::kProtocolError) << h2::errorName(*s.reset);
  }
  for (uint32_t id : {1u, 3u, 5u, 7u}) {
    EXPECT_FALSE(client.stream(id).reset.has_value()) << "stream " << id << " reset";
  }
  EXPECT_EQ(totalOf(proxy().stats(), "http2_streams_open"), 4u);
  client.send(h2::rstStream(1, h2::kCancel));
  StreamState& after = exchange(client, 13, "/after");
  EXPECT_EQ(after.status.value_or(0), 200) << "a slot freed by RST_STREAM is not usable: " << client.describeEvents();
  expectNoPoisonUpstream();
}

// The same once the limit (the default, 128) is acknowledged: the streams past it are
// refused (REFUSED_STREAM or PROTOCOL_ERROR, 5.1.2), or, as nghttp2 does, the whole
// connection (GOAWAY PROTOCOL_ERROR: a stream error treated as a connection error). No
// more than 128 streams are ever open.
TEST_F(Http2Attack, MoreStreamsThanMaxConcurrentStreams) {
  startHttp2();
  warmPool();
  H2Client client(port());
  client.handshake();
  auto it = client.serverSettings().find(h2::kMaxConcurrentStreams);
  ASSERT_NE(it, client.serverSettings().end()) << "no SETTINGS_MAX_CONCURRENT_STREAMS announced";
  EXPECT_EQ(it->second, 128u);
  std::string open;
  for (uint32_t i = 0; i < 200; ++i) open += postHeaders(1 + 2 * i, "/poison");
  client.send(open);
  client.pump([&] { return client.resetsReceived() >= 72 || client.goaway() || client.closed(); }, 10s);
  std::cout << "[ answer   ] 200 streams for 128: " << client.describeEvents(4) << std::endl;
  if (auto g = client.goaway()) {
    EXPECT_EQ(h2::errorName(g->code), h2::errorName(h2::kProtocolError));
    EXPECT_TRUE(client.waitClosed());
  } else {
    for (uint32_t i = 0; i < 200; ++i) {
      auto& s = client.stream(1 + 2 * i);
      if (i < 128) {
        EXPECT_FALSE(s.reset.has_value()) << "stream " << 1 + 2 * i << " within the limit was reset";
      } else {
        ASSERT_TRUE(s.reset.has_value()) << "stream " << 1 + 2 * i << " over the limit was not refused";
        EXPECT_TRUE(*s.reset == h2::kRefusedStream || *s.reset == h2::kProtocolError) << h2::errorName(*s.reset);
      }
    }
    EXPECT_EQ(totalOf(proxy().stats(), "http2_streams_open"), 128u);
  }
  expectFreshConnectionServed();
  expectNoPoisonUpstream();
}

// The defences above must not hit an ordinary client: a browser-like mix of PINGs
// (each read as it comes), PRIORITY frames for a few idle "group" streams (as Firefox
// sends), hundreds of requests on one connection, a few streams cancelled in flight (a
// user moving on), and an upload in many small DATA frames ended by an empty one.
TEST_F(Http2Attack, OrdinaryClientIsNotMistakenForAnAttacker) {
  startHttp2();
  H2Client client(port());
  client.handshake();
  client.send(h2::priority(3, 0, 200) + h2::priority(5, 0, 100) + h2::priority(7, 0, 0) + h2::priority(9, 7, 0) +
              h2::priority(11, 3, 0));
  for (size_t i = 0; i < 50; ++i) {
    client.send(h2::ping("pingpong"));
    ASSERT_TRUE(client.pump([&] { return client.pingAcks() > i; }, kIoTimeout)) << client.describeEvents();
  }
  uint32_t id = 13;
  for (int i = 0; i < 300; ++i, id += 2) {
    StreamState& s = exchange(client, id, "/ordinary/" + std::to_string(i));
    ASSERT_EQ(s.status.value_or(0), 200) << "request " << i << ": " << client.describeEvents();
  }
  for (int i = 0; i < 20; ++i, id += 2) {
    client.send(requestFrames(id, "/delay/300"));
    client.send(h2::rstStream(id, h2::kCancel));
  }
  const uint32_t upload = id;
  std::string frames = postHeaders(upload, "/upload");
  for (int i = 0; i < 200; ++i) frames += h2::data(upload, std::string(100, 'u'), 0);
  frames += h2::data(upload, "");
  client.send(frames);
  client.pump([&] { return client.stream(upload).done() || client.goaway() || client.closed(); }, kIoTimeout);
  EXPECT_EQ(client.stream(upload).status.value_or(0), 200) << client.describeEvents();
  EXPECT_FALSE(client.goaway().has_value()) << client.describeEvents();
  EXPECT_FALSE(client.closed());
  bool found = false;
  for (const UpstreamRequest& r : upstream_.requests()) {
    if (r.target != "/upload") continue;
    found = true;
    EXPECT_EQ(r.bodyLength, 20000u);
  }
  EXPECT_TRUE(found) << "the upload did not reach the upstream";
}

}  // namespace
}  // namespace pgtest
