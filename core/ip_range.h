// IP address ranges ("10.0.0.0/8", "::1", "fd00::/8") and matching a peer
// address against them: the admin listener's `allow` list.
//
// An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket shows
// for an IPv4 client) is matched as the IPv4 address it carries, and a range
// written in that form (::ffff:10.0.0.0/104) is stored as the IPv4 range it
// covers, so that both spellings agree.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace poolgate {

struct IpRange {
  int family = AF_INET;  // AF_INET or AF_INET6
  uint8_t bytes[16] = {};  // network byte order; the first 4 for IPv4
  uint8_t prefix = 32;     // leading bits that must match (0..32 or 0..128)

  // The canonical text: "10.0.0.0/8", "::1/128".
  std::string toString() const;
};

// Parses "ADDRESS" (a single host) or "ADDRESS/PREFIX". Bits set after the
// prefix are an error ("10.0.0.1/8": did you mean 10.0.0.0/8?), as are names,
// brackets, spaces and out-of-range prefixes. std::nullopt with *why set on
// error.
std::optional<IpRange> parseIpRange(std::string_view text, std::string* why);

// Whether `address` (AF_INET or AF_INET6; anything else never matches) lies
// in `range`.
bool contains(const IpRange& range, const sockaddr* address);
bool matchesAny(const std::vector<IpRange>& ranges, const sockaddr* address);

// 127.0.0.0/8 and ::1 (IPv4-mapped 127/8 included).
bool isLoopback(const sockaddr* address);

}  // namespace poolgate
