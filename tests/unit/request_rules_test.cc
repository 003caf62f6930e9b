// What a request head must satisfy before it is forwarded.
#include "proxy/request_rules.h"

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
