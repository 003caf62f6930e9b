// The admin listener's address matcher: parsing "ADDRESS[/PREFIX]" and
// matching peer addresses of both families against it.
#include "core/ip_range.h"

#include <gtest/gtest.h>

#include <string>

#include "core/socket.h"

namespace poolgate {
namespace {

SocketAddress at(const char* ip) {
  SocketAddress address;
  EXPECT_TRUE(makeSocketAddress(ip, 12345, &address)) << ip;
  return address;
}

IpRange range(const char* text) {
  std::string why;
  std::optional<IpRange> parsed = parseIpRange(text, &why);
  EXPECT_TRUE(parsed.has_value()) << text << ": " << why;
  return parsed.value_or(IpRange{});
}

std::string rejection(const char* text) {
  std::string why;
  std::optional<IpRange> parsed = parseIpRange(text, &why);
  EXPECT_FALSE(parsed.has_value()) << text << " was accepted as " << parsed->toString();
  return why;
}

bool in(const char* cidr, const char* ip) { return contains(range(cidr), at(ip).get()); }

TEST(IpRange, ParsesHostsAndRangesOfBothFamilies) {
  EXPECT_EQ(range("127.0.0.1").toString(), "127.0.0.1/32");
  EXPECT_EQ(range("10.0.0.0/8").toString(), "10.0.0.0/8");
  EXPECT_EQ(range("0.0.0.0/0").toString(), "0.0.0.0/0");
  EXPECT_EQ(range("::1").toString(), "::1/128");
  EXPECT_EQ(range("fd00::/8").toString(), "fd00::/8");
  EXPECT_EQ(range("2001:db8::/32").toString(), "2001:db8::/32");
  EXPECT_EQ(range("::/0").toString(), "::/0");
  EXPECT_EQ(range("10.1.2.3").family, AF_INET);
  EXPECT_EQ(range("fd00::/8").family, AF_INET6);
  // The IPv4-mapped spelling is stored as the IPv4 range it covers.
  EXPECT_EQ(range("::ffff:10.0.0.0/104").toString(), "10.0.0.0/8");
  EXPECT_EQ(range("::ffff:127.0.0.1").toString(), "127.0.0.1/32");
}

TEST(IpRange, RejectsWhatIsNotAnAddressOrRange) {
  EXPECT_NE(rejection("").find("empty"), std::string::npos);
  EXPECT_NE(rejection("localhost").find("names are not allowed"), std::string::npos);
  EXPECT_NE(rejection("10.0.0").find("not an IP address"), std::string::npos);
  EXPECT_NE(rejection("10.0.0.256").find("not an IP address"), std::string::npos);
  EXPECT_NE(rejection(" 10.0.0.1").find("not an IP address"), std::string::npos);
  EXPECT_NE(rejection("10.0.0.1 ").find("not an IP address"), std::string::npos);
  EXPECT_NE(rejection("[::1]").find("without brackets"), std::string::npos);
  EXPECT_NE(rejection("10.0.0.0/33").find("out of range (0..32)"), std::string::npos);
  EXPECT_NE(rejection("::/129").find("out of range (0..128)"), std::string::npos);
  EXPECT_NE(rejection("10.0.0.0/").find("bad prefix length"), std::string::npos);
  EXPECT_NE(rejection("10.0.0.0/-1").find("bad prefix length"), std::string::npos);
  EXPECT_NE(rejection("10.0.0.0/8 ").find("bad prefix length"), std::string::npos);
  EXPECT_NE(rejection("10.0.0.0/0x8").find("bad prefix length"), std::string::npos);
  EXPECT_NE(rejection("10.0.0.0/8/8").find("bad prefix length"), std::string::npos);
  EXPECT_NE(rejection("10.0.0.0/0008").find("bad prefix length"), std::string::npos);
  // Bits past the prefix: almost always a typo, so refused with the likely meaning.
  EXPECT_NE(rejection("10.0.0.1/8").find("did you mean 10.0.0.0/8?"), std::string::npos);
  EXPECT_NE(rejection("192.168.1.1/23").find("did you mean 192.168.0.0/23?"), std::string::npos);
  EXPECT_NE(rejection("fd00::1/8").find("did you mean fd00::/8?"), std::string::npos);
}

TEST(IpRange, MatchesByPrefix) {
  EXPECT_TRUE(in("10.0.0.0/8", "10.0.0.0"));
  EXPECT_TRUE(in("10.0.0.0/8", "10.255.255.255"));
  EXPECT_FALSE(in("10.0.0.0/8", "11.0.0.0"));
  EXPECT_FALSE(in("10.0.0.0/8", "9.255.255.255"));
  EXPECT_TRUE(in("192.168.0.0/23", "192.168.1.200"));
  EXPECT_FALSE(in("192.168.0.0/23", "192.168.2.1"));  // the 23rd bit
  EXPECT_TRUE(in("127.0.0.1", "127.0.0.1"));
  EXPECT_FALSE(in("127.0.0.1", "127.0.0.2"));
  EXPECT_TRUE(in("0.0.0.0/0", "203.0.113.9"));
  EXPECT_FALSE(in("0.0.0.0/0", "::1"));  // families never mix
  EXPECT_TRUE(in("fd00::/8", "fd12:3456::1"));
  EXPECT_FALSE(in("fd00::/8", "fe80::1"));
  EXPECT_TRUE(in("2001:db8::/33", "2001:db8:7fff::1"));
  EXPECT_FALSE(in("2001:db8::/33", "2001:db8:8000::1"));
  EXPECT_TRUE(in("::1", "::1"));
  EXPECT_FALSE(in("::1", "::2"));
  EXPECT_TRUE(in("::/0", "fe80::1"));
  EXPECT_FALSE(in("::/0", "10.0.0.1"));
}

TEST(IpRange, MatchesIpv4MappedPeersAsIpv4) {
  // A dual-stack listener ([::]:port) sees an IPv4 client as ::ffff:a.b.c.d.
  EXPECT_TRUE(in("10.0.0.0/8", "::ffff:10.9.8.7"));
  EXPECT_FALSE(in("10.0.0.0/8", "::ffff:11.0.0.1"));
  EXPECT_TRUE(in("::ffff:10.0.0.0/104", "10.1.1.1"));
  EXPECT_TRUE(in("::ffff:10.0.0.0/104", "::ffff:10.1.1.1"));
  EXPECT_FALSE(in("::/0", "::ffff:10.1.1.1"));  // it is an IPv4 client
}

TEST(IpRange, LoopbackAndLists) {
  EXPECT_TRUE(isLoopback(at("127.0.0.1").get()));
  EXPECT_TRUE(isLoopback(at("127.255.0.9").get()));
  EXPECT_TRUE(isLoopback(at("::1").get()));
  EXPECT_TRUE(isLoopback(at("::ffff:127.0.0.1").get()));
  EXPECT_FALSE(isLoopback(at("128.0.0.1").get()));
  EXPECT_FALSE(isLoopback(at("0.0.0.0").get()));
  EXPECT_FALSE(isLoopback(at("::").get()));
  EXPECT_FALSE(isLoopback(at("::2").get()));
  EXPECT_FALSE(isLoopback(nullptr));

  std::vector<IpRange> list = {range("10.0.0.0/8"), range("fd00::/8")};
  EXPECT_TRUE(matchesAny(list, at("10.3.3.3").get()));
  EXPECT_TRUE(matchesAny(list, at("fd00::5").get()));
  EXPECT_FALSE(matchesAny(list, at("127.0.0.1").get()));
  EXPECT_FALSE(matchesAny({}, at("127.0.0.1").get()));
  sockaddr unix_address{};
  unix_address.sa_family = AF_UNIX;
  EXPECT_FALSE(matchesAny({range("0.0.0.0/0"), range("::/0")}, &unix_address));
}

}  // namespace
}  // namespace poolgate
