#include "core/ip_range.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cctype>
#include <cstring>

namespace poolgate {

namespace {

std::optional<IpRange> fail(std::string* why, std::string what) {
  if (why != nullptr) *why = std::move(what);
  return std::nullopt;
}

constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool isV4Mapped(const uint8_t (&bytes)[16]) { return std::memcmp(bytes, kMappedPrefix, 12) == 0; }

// Whether the first `bits` bits of a and b agree.
bool samePrefix(const uint8_t* a, const uint8_t* b, unsigned bits) {
  const unsigned whole = bits / 8;
  if (std::memcmp(a, b, whole) != 0) return false;
  const unsigned rest = bits % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

// Clears the bits after `bits`; returns whether any was set.
bool clearHostBits(uint8_t* bytes, unsigned size, unsigned bits) {
  bool had = false;
  for (unsigned i = 0; i < size; ++i) {
    const unsigned keep = bits >= (i + 1) * 8 ? 8 : bits > i * 8 ? bits - i * 8 : 0;
    const uint8_t mask = keep == 0 ? 0 : static_cast<uint8_t>(0xff << (8 - keep));
    if ((bytes[i] & ~mask) != 0) had = true;
    bytes[i] &= mask;
  }
  return had;
}

}  // namespace

std::string IpRange::toString() const {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes, text, sizeof text);
  return std::string(text) + "/" + std::to_string(prefix);
}

std::optional<IpRange> parseIpRange(std::string_view text, std::string* why) {
  if (text.empty()) return fail(why, "empty");
  const size_t slash = text.find('/');
  std::string host(text.substr(0, slash));
  if (!host.empty() && host.front() == '[') {
    return fail(why, "write IPv6 addresses without brackets");
  }
  IpRange range;
  unsigned max_bits;
  if (inet_pton(AF_INET, host.c_str(), range.bytes) == 1) {
    range.family = AF_INET;
    max_bits = 32;
  } else if (inet_pton(AF_INET6, host.c_str(), range.bytes) == 1) {
    range.family = AF_INET6;
    max_bits = 128;
  } else {
    return fail(why, "not an IP address or CIDR range (names are not allowed)");
  }
  unsigned bits = max_bits;
  if (slash != std::string_view::npos) {
    std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) {
      return fail(why, "bad prefix length after '/'");
    }
    bits = 0;
    for (char c : digits) {
      if (!std::isdigit(static_cast<unsigned char>(c))) {
        return fail(why, "bad prefix length after '/'");
      }
      bits = bits * 10 + static_cast<unsigned>(c - '0');
    }
    if (bits > max_bits) {
      return fail(why, "prefix length /" + std::string(digits) + " is out of range (0.." +
                           std::to_string(max_bits) + ")");
    }
  }
  range.prefix = static_cast<uint8_t>(bits);
  if (clearHostBits(range.bytes, max_bits / 8, bits)) {
    return fail(why, "bits set after the /" + std::to_string(bits) + " prefix (did you mean " +
                         range.toString() + "?)");
  }
  // ::ffff:a.b.c.d/96+n is the IPv4 range a.b.c.d/n.
  if (range.family == AF_INET6 && range.prefix >= 96 && isV4Mapped(range.bytes)) {
    uint8_t v4[4];
    std::memcpy(v4, range.bytes + 12, 4);
    std::memset(range.bytes, 0, sizeof range.bytes);
    std::memcpy(range.bytes, v4, 4);
    range.family = AF_INET;
    range.prefix = static_cast<uint8_t>(range.prefix - 96);
  }
  return range;
}

bool contains(const IpRange& range, const sockaddr* address) {
  if (address == nullptr) return false;
  const uint8_t* bytes = nullptr;
  int family = address->sa_family;
  if (family == AF_INET) {
    bytes = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(address)->sin_addr);
  } else if (family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr;
    bytes = reinterpret_cast<const uint8_t*>(&v6);
    if (std::memcmp(bytes, kMappedPrefix, 12) == 0) {  // an IPv4 client on a dual-stack socket
      bytes += 12;
      family = AF_INET;
    }
  } else {
    return false;
  }
  return family == range.family && samePrefix(bytes, range.bytes, range.prefix);
}

bool matchesAny(const std::vector<IpRange>& ranges, const sockaddr* address) {
  for (const IpRange& range : ranges) {
    if (contains(range, address)) return true;
  }
  return false;
}

bool isLoopback(const sockaddr* address) {
  static const std::vector<IpRange> kLoopback = {*parseIpRange("127.0.0.0/8", nullptr),
                                                 *parseIpRange("::1", nullptr)};
  return matchesAny(kLoopback, address);
}

}  // namespace poolgate
