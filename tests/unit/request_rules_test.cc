// What a request head must satisfy before it is forwarded.
#include "http/request_rules.h"

#include <gtest/gtest.h>

#include <string>

namespace poolgate {
namespace {

class NullHandler : public HttpHandler {
 public:
  int onHeadersComplete() override { return HPE_PAUSED; }
  int onBody(const char*, size_t) override { return 0; }
  int onChunkHeader(uint64_t) override { return 0; }
  int onChunkComplete() override { return 0; }
  int onMessageComplete() override { return HPE_PAUSED; }
};

struct Checked {
  int status = -1;        // checkRequestHead's answer; -2 = llhttp refused the head itself
  RequestTarget target;
  std::string text;       // keeps the slices valid
};

Checked check(std::string text, LimitsConfig limits = {}) {
  Checked result;
  result.text = std::move(text);
  NullHandler handler;
  HttpParser parser(HTTP_REQUEST, handler, 100);
  size_t consumed = 0;
  llhttp_errno_t err = parser.execute(result.text.data(), result.text.data(), result.text.size(), &consumed);
  if (err != HPE_PAUSED) {
    result.status = -2;
    return result;
  }
  result.status = checkRequestHead(parser, result.text.data(), result.text.size(), limits, &result.target);
  return result;
}

TEST(RequestRules, PlainOriginFormPasses) {
  Checked c = check("GET /a/b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(c.status, 0);
  EXPECT_EQ(c.target.path, "/a/b");
  EXPECT_EQ(c.target.forward, "/a/b?q=1");
  EXPECT_EQ(c.target.authority, "");
}

TEST(RequestRules, AbsoluteFormBecomesOriginForm) {
  Checked c = check("GET http://Example.com:8080/p?q HTTP/1.1\r\nHost: example.com:8080\r\n\r\n");
  EXPECT_EQ(c.status, 0);
  EXPECT_EQ(c.target.authority, "Example.com:8080");
  EXPECT_EQ(c.target.forward, "/p?q");
  EXPECT_EQ(c.target.path, "/p");
  Checked bare = check("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
  EXPECT_EQ(bare.status, 0);
  EXPECT_EQ(bare.target.forward, "/");
}

TEST(RequestRules, HostMustAgreeWithAbsoluteForm) {
  EXPECT_EQ(check("GET http://a.com/ HTTP/1.1\r\nHost: b.com\r\n\r\n").status, 400);
}

TEST(RequestRules, HostRules) {
  EXPECT_EQ(check("GET / HTTP/1.1\r\n\r\n").status, 400);                       // 1.1 without Host
  EXPECT_EQ(check("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").status, 400);  // two Hosts
  EXPECT_EQ(check("GET / HTTP/1.0\r\n\r\n").status, 0);                           // 1.0 may omit it
}

TEST(RequestRules, TargetForms) {
  EXPECT_EQ(check("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").status, 0);
  EXPECT_EQ(check("GET * HTTP/1.1\r\nHost: a\r\n\r\n").status, 400);
  EXPECT_EQ(check("CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\n\r\n").status, 405);
  EXPECT_EQ(check("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n").status, 400);
  EXPECT_EQ(check("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n").status, 400);
  EXPECT_EQ(check("GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n").status, 400);
}

TEST(RequestRules, FragmentInTargetIsRefused) {
  EXPECT_EQ(check("GET /p#frag HTTP/1.1\r\nHost: a\r\n\r\n").status, 400);
  EXPECT_EQ(check("GET /p?q=1#frag HTTP/1.1\r\nHost: a\r\n\r\n").status, 400);
  EXPECT_EQ(check("GET /p# HTTP/1.1\r\nHost: a\r\n\r\n").status, 400);
  EXPECT_EQ(check("GET http://a/p#frag HTTP/1.1\r\nHost: a\r\n\r\n").status, 400);
  EXPECT_EQ(check("GET http://a#frag HTTP/1.1\r\nHost: a\r\n\r\n").status, -2);  // llhttp refuses this one
  EXPECT_EQ(check("GET /p?q=%23 HTTP/1.1\r\nHost: a\r\n\r\n").status, 0);  // an encoded # is data
}

TEST(RequestRules, HostPort) {
  auto withHost = [](const std::string& host) { return check("GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n").status; };
  EXPECT_EQ(withHost("example.com:8080"), 0);
  EXPECT_EQ(withHost("example.com.:80"), 0);
  EXPECT_EQ(withHost("example.com:0"), 0);
  EXPECT_EQ(withHost("example.com:65535"), 0);
  EXPECT_EQ(withHost("example.com:00080"), 0);   // leading zeros: still 80
  EXPECT_EQ(withHost("example.com:"), 0);        // empty port: RFC 3986 allows it
  EXPECT_EQ(withHost("[::1]:8080"), 0);
  EXPECT_EQ(withHost("[::1]"), 0);
  EXPECT_EQ(withHost("[::1]:"), 0);
  EXPECT_EQ(withHost("example.com.:1.2"), 400);  // not a decimal number
  EXPECT_EQ(withHost("example.com:80a"), 400);
  EXPECT_EQ(withHost("example.com:-1"), 400);
  EXPECT_EQ(withHost("example.com:+80"), 400);
  EXPECT_EQ(withHost("example.com:65536"), 400);  // not a TCP port
  EXPECT_EQ(withHost("example.com:99999999999999999999"), 400);
  EXPECT_EQ(withHost("example.com:80:80"), 400);
  EXPECT_EQ(withHost("a:b:c"), 400);
  EXPECT_EQ(withHost("[::1]x"), 400);
  EXPECT_EQ(withHost("[::1]:8x"), 400);
  EXPECT_EQ(withHost("[::1"), 400);
  EXPECT_EQ(withHost("a]b"), 400);
  // An absolute-form authority stands in for Host (HTTP/1.0 may send no Host).
  EXPECT_EQ(check("GET http://a:1.2/ HTTP/1.0\r\n\r\n").status, 400);
  EXPECT_EQ(check("GET http://a:70000/ HTTP/1.0\r\n\r\n").status, 400);
  EXPECT_EQ(check("GET http://a:8080/ HTTP/1.0\r\n\r\n").status, 0);
}

TEST(RequestRules, IsValidPort) {
  EXPECT_TRUE(isValidPort(""));
  EXPECT_TRUE(isValidPort("0"));
  EXPECT_TRUE(isValidPort("65535"));
  EXPECT_TRUE(isValidPort("0000000000065535"));
  EXPECT_FALSE(isValidPort("65536"));
  EXPECT_FALSE(isValidPort("4294967376"));  // 2^32 + 80: no wrap-around
  EXPECT_FALSE(isValidPort("1.2"));
  EXPECT_FALSE(isValidPort(" 80"));
}

TEST(RequestRules, BareLfWhereLlhttpAllowsIt) {
  EXPECT_EQ(check("GET / HTTP/1.1\nHost: a\r\n\r\n").status, 400);    // after the request line
  EXPECT_EQ(check("GET / HTTP/1.1\r\nHost: a\r\n\n").status, 400);    // the final empty line
  EXPECT_EQ(check("GET / HTTP/1.1\r\nHost: a  \r\n\r\n").status, 0);  // trailing blanks are fine
  EXPECT_EQ(check("GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\r\n").status, 0);  // empty value
}

TEST(RequestRules, TransferEncodings) {
  const char* head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ";
  EXPECT_EQ(check(std::string(head) + "chunked\r\n\r\n").status, 0);
  EXPECT_EQ(check(std::string(head) + "gzip, chunked\r\n\r\n").status, 501);
  EXPECT_EQ(check(std::string(head) + "identity, chunked\r\n\r\n").status, 400);
  EXPECT_EQ(check(std::string(head) + "chunked, chunked\r\n\r\n").status, -2);  // llhttp already refuses
  EXPECT_EQ(check("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").status, 400);
}

TEST(RequestRules, Limits) {
  LimitsConfig limits;
  limits.max_request_line = 16;
  EXPECT_EQ(check("GET /" + std::string(20, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", limits).status, 414);
  limits = LimitsConfig{};
  limits.max_header_bytes = 64;
  EXPECT_EQ(check("GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(80, 'b') + "\r\n\r\n", limits).status, 431);
  limits = LimitsConfig{};
  limits.max_body_bytes = 10;
  EXPECT_EQ(check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", limits).status, 413);
  EXPECT_EQ(check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n", limits).status, 0);
}

TEST(RequestRules, HostWithoutPort) {
  EXPECT_EQ(hostWithoutPort("a.com:80"), "a.com");
  EXPECT_EQ(hostWithoutPort("a.com"), "a.com");
  EXPECT_EQ(hostWithoutPort("[::1]:80"), "[::1]");
}

}  // namespace
}  // namespace poolgate
