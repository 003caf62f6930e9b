// IpAddress (core/socket.h): the peer as a client connection keeps it, and
// its text, made per exchange (X-Forwarded-For, the access log, ip_hash).
#include "core/socket.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <random>
#include <string>

namespace poolgate {
namespace {

std::string textOf(const std::string& host) {
  SocketAddress address;
  EXPECT_TRUE(makeSocketAddress(host, 80, &address)) << host;
  return IpAddress::of(address).text().c_str();
}

TEST(IpAddress, TextOfIpv4AddressesAsInetNtopWritesIt) {
  for (const char* host : {"0.0.0.0", "255.255.255.255", "127.0.0.1", "10.0.100.9", "192.0.2.1", "1.20.199.250"}) {
    EXPECT_EQ(textOf(host), host);
  }
  // Every octet value, in every position, against the C library.
  std::mt19937 random(7);
  for (int i = 0; i < 2000; ++i) {
    in_addr addr;
    addr.s_addr = random();
    char expected[INET_ADDRSTRLEN];
    ASSERT_NE(inet_ntop(AF_INET, &addr, expected, sizeof expected), nullptr);
    EXPECT_EQ(textOf(expected), expected);
  }
}

TEST(IpAddress, TextOfIpv6AddressesIsTheCompressedForm) {
  EXPECT_EQ(textOf("::1"), "::1");
  EXPECT_EQ(textOf("2001:db8:0:0:0:0:0:1"), "2001:db8::1");
  EXPECT_EQ(textOf("fe80::1:2:3:4"), "fe80::1:2:3:4");
}

TEST(IpAddress, NoAddressHasNoText) {
  EXPECT_STREQ(IpAddress().text().c_str(), "");
  EXPECT_STREQ(IpAddress::of(SocketAddress()).text().c_str(), "");
}

}  // namespace
}  // namespace poolgate
