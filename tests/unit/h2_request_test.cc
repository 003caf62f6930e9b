// H2Request (http/h2_request.h): HTTP/2 request fields in, the HTTP/1.1 head
// poolgate forwards out, read back by the proxy's own RequestReader.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "core/buffer.h"
#include "http/h2_request.h"
#include "http/request_reader.h"

namespace poolgate {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

Fields get(std::string path = "/") {
  return {{":method", "GET"}, {":scheme", "https"}, {":authority", "example.com"}, {":path", std::move(path)}};
}

class H2RequestTest : public ::testing::Test {
 protected:
  // The head written for `fields`, or "REFUSED" when a field or the whole is malformed.
  std::string head(const Fields& fields, bool end_stream = true) {
    request_.clear();
    for (const auto& [name, value] : fields) {
      if (!request_.add(name, value)) return "REFUSED";
    }
    Buffer out(buffers_);
    if (!request_.write(out, end_stream)) return "REFUSED";
    return std::string(out.data(), out.size());
  }

  BufferPool buffers_;
  H2Request request_;
};

TEST_F(H2RequestTest, AGetBecomesOneHttp11HeadWithHostFromAuthority) {
  Fields f = get("/a?b=c");
  f.push_back({"accept", "*/*"});
  EXPECT_EQ(head(f), "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\naccept: */*\r\n\r\n");
  EXPECT_EQ(request_.framing(), H2Request::Framing::kNone);
}

TEST_F(H2RequestTest, CookiesAreJoinedIntoOneField) {
  Fields f = get();
  f.push_back({"cookie", "a=1"});
  f.push_back({"x", "y"});
  f.push_back({"cookie", "b=2"});
  EXPECT_EQ(head(f), "GET / HTTP/1.1\r\nHost: example.com\r\nx: y\r\ncookie: a=1; b=2\r\n\r\n");
}

TEST_F(H2RequestTest, HostServesWithoutAuthorityAndMustMatchIt) {
  EXPECT_EQ(head({{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {"host", "h.example"}}),
            "GET / HTTP/1.1\r\nHost: h.example\r\n\r\n");
  Fields same = get();
  same.push_back({"host", "EXAMPLE.com"});
  EXPECT_EQ(head(same), "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
  Fields other = get();
  other.push_back({"host", "other.example"});
  EXPECT_EQ(head(other), "REFUSED");
}

TEST_F(H2RequestTest, ConnectionSpecificFieldsAreRefused) {
  for (const char* name : {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}) {
    Fields f = get();
    f.push_back({name, "x"});
    EXPECT_EQ(head(f), "REFUSED") << name;
  }
  Fields trailers = get();
  trailers.push_back({"te", "trailers"});
  EXPECT_EQ(head(trailers), "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");  // allowed, not forwarded
  Fields gzip = get();
  gzip.push_back({"te", "gzip"});
  EXPECT_EQ(head(gzip), "REFUSED");
}

TEST_F(H2RequestTest, MalformedFieldsAreRefused) {
  const Fields bad[] = {
      {{"X-Upper", "v"}},          {{"bad name", "v"}}, {{"", "v"}},
      {{"x", "a\r\nInjected: 1"}}, {{"x", "a\nb"}},     {{"x", std::string("a\0b", 3)}},
      {{"x", " leading"}},         {{"x", "trailing\t"}},
  };
  for (const Fields& extra : bad) {
    Fields f = get();
    f.insert(f.end(), extra.begin(), extra.end());
    EXPECT_EQ(head(f), "REFUSED") << extra[0].first;
  }
}

TEST_F(H2RequestTest, PseudoHeaderRulesOfRfc9113) {
  EXPECT_EQ(head({{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}}), "REFUSED");  // no :path
  EXPECT_EQ(head({{":method", "GET"}, {":path", "/"}, {":authority", "a"}}), "REFUSED");       // no :scheme
  EXPECT_EQ(head({{":scheme", "http"}, {":path", "/"}, {":authority", "a"}}), "REFUSED");      // no :method
  Fields twice = get();
  twice.push_back({":path", "/again"});
  EXPECT_EQ(head(twice), "REFUSED");
  Fields after = {{":method", "GET"}, {"x", "y"}, {":scheme", "http"}, {":path", "/"}};
  EXPECT_EQ(head(after), "REFUSED");
  Fields status = get();
  status.push_back({":status", "200"});
  EXPECT_EQ(head(status), "REFUSED");
  Fields protocol = get();
  protocol.push_back({":protocol", "websocket"});
  EXPECT_EQ(head(protocol), "REFUSED");
  EXPECT_EQ(head(get("/a b")), "REFUSED");      // a space would split the request line
  EXPECT_EQ(head(get("no-slash")), "REFUSED");
  EXPECT_EQ(head({{":method", "GET"}, {":scheme", "http"}, {":authority", "user@h"}, {":path", "/"}}), "REFUSED");
  EXPECT_EQ(head({{":method", "OPTIONS"}, {":scheme", "http"}, {":authority", "h"}, {":path", "*"}}),
            "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
}

TEST_F(H2RequestTest, ConnectIsWrittenAsATunnelRequestWithoutBody) {
  EXPECT_EQ(head({{":method", "CONNECT"}, {":authority", "h:443"}}, /*end_stream=*/false),
            "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n");
  EXPECT_EQ(request_.framing(), H2Request::Framing::kNone);
  EXPECT_EQ(head({{":method", "CONNECT"}, {":authority", "h:443"}, {":path", "/"}}), "REFUSED");
}

TEST_F(H2RequestTest, BodyFraming) {
  Fields length = {{":method", "POST"}, {":scheme", "http"}, {":authority", "h"}, {":path", "/"},
                   {"content-length", "5"}};
  EXPECT_EQ(head(length, false), "POST / HTTP/1.1\r\nHost: h\r\ncontent-length: 5\r\n\r\n");
  EXPECT_EQ(request_.framing(), H2Request::Framing::kLength);
  EXPECT_EQ(head(length, /*end_stream=*/true), "REFUSED");  // 5 bytes announced, none coming

  Fields none = {{":method", "POST"}, {":scheme", "http"}, {":authority", "h"}, {":path", "/"}};
  EXPECT_EQ(head(none, false), "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
  Buffer out(buffers_);
  request_.writeData(out, "hello");
  request_.writeData(out, "");
  request_.writeData(out, std::string(17, 'x'));
  request_.writeEnd(out);
  EXPECT_EQ(std::string(out.data(), out.size()), "5\r\nhello\r\n11\r\n" + std::string(17, 'x') + "\r\n0\r\n\r\n");

  EXPECT_EQ(head(none, true), "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
  Fields two = length;
  two.push_back({"content-length", "5"});
  EXPECT_EQ(head(two, false), "REFUSED");
  Fields signed_length = none;
  signed_length.push_back({"content-length", "+5"});
  EXPECT_EQ(head(signed_length, false), "REFUSED");
}

TEST_F(H2RequestTest, TheForwardedBytesReadBackAsExactlyThatRequest) {
  Fields f = {{":method", "PUT"}, {":scheme", "https"}, {":authority", "h.example:8443"}, {":path", "/up"},
              {"user-agent", "t"}};
  std::string bytes = head(f, false);
  Buffer out(buffers_);
  request_.writeData(out, "abc");
  request_.writeData(out, "defg");
  request_.writeEnd(out);
  bytes.append(out.data(), out.size());

  LimitsConfig limits;
  RequestReader reader(buffers_, limits);
  ReadRoom room = reader.reserve();
  ASSERT_GE(room.size, bytes.size());
  std::copy(bytes.begin(), bytes.end(), room.at);
  reader.commit(bytes.size());
  ASSERT_EQ(reader.next(), RequestReader::Event::kHead);
  EXPECT_EQ(reader.verdict(), 0);
  EXPECT_EQ(reader.host(), "h.example:8443");
  EXPECT_EQ(reader.target().path, "/up");
  std::string body;
  for (;;) {
    RequestReader::Event e = reader.next();
    if (e == RequestReader::Event::kBody) body += reader.body();
    if (e == RequestReader::Event::kComplete || e == RequestReader::Event::kError ||
        e == RequestReader::Event::kNeedMore) {
      EXPECT_EQ(e, RequestReader::Event::kComplete);
      break;
    }
  }
  EXPECT_EQ(body, "abcdefg");
  EXPECT_TRUE(reader.unread().empty());
}

TEST_F(H2RequestTest, ListBytesCountNameValueAnd32PerField) {
  request_.clear();
  ASSERT_TRUE(request_.add(":method", "GET"));
  ASSERT_TRUE(request_.add("x", "yz"));
  EXPECT_EQ(request_.listBytes(), (7 + 3 + 32) + (1 + 2 + 32));
}

TEST_F(H2RequestTest, TrailersGoInTheLastChunkOfABodyWithoutLength) {
  Fields f = get("/up");
  f[0].second = "POST";
  ASSERT_NE(head(f, /*end_stream=*/false), "REFUSED");
  ASSERT_EQ(request_.framing(), H2Request::Framing::kChunked);
  EXPECT_TRUE(request_.addTrailer("x-checksum", "abc"));
  EXPECT_TRUE(request_.addTrailer("grpc-timeout", "1S"));
  EXPECT_EQ(request_.trailerBytes(), (10 + 3 + 32) + (12 + 2 + 32));
  Buffer out(buffers_);
  request_.writeData(out, "hello");
  request_.writeEnd(out);
  EXPECT_EQ(std::string(out.data(), out.size()), "5\r\nhello\r\n0\r\nx-checksum: abc\r\ngrpc-timeout: 1S\r\n\r\n");
}

TEST_F(H2RequestTest, TrailersAfterALengthBodyAreDropped) {
  Fields f = get("/up");
  f[0].second = "POST";
  f.push_back({"content-length", "5"});
  ASSERT_NE(head(f, /*end_stream=*/false), "REFUSED");
  EXPECT_TRUE(request_.addTrailer("x-checksum", "abc"));  // well formed: no stream error
  Buffer out(buffers_);
  request_.writeData(out, "hello");
  request_.writeEnd(out);
  EXPECT_EQ(std::string(out.data(), out.size()), "hello");  // HTTP/1.1 has no place for them
}

TEST_F(H2RequestTest, MalformedTrailersAreRefused) {
  Fields f = get("/up");
  f[0].second = "POST";
  ASSERT_NE(head(f, /*end_stream=*/false), "REFUSED");
  for (const auto& [name, value] : Fields{{":path", "/x"}, {"X-Upper", "v"}, {"connection", "close"},
                                          {"transfer-encoding", "chunked"}, {"te", "trailers"}, {"host", "h"},
                                          {"content-length", "1"}, {"x-crlf", "a\r\nInjected: 1"}, {"x-nul", std::string("a\0b", 3)}}) {
    EXPECT_FALSE(request_.addTrailer(name, value)) << name;
  }
  Buffer out(buffers_);
  request_.writeEnd(out);
  EXPECT_EQ(std::string(out.data(), out.size()), "0\r\n\r\n");
}

}  // namespace
}  // namespace poolgate
