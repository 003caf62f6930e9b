// poolgate in front of the demo prefork upstream (tools/demo-upstream).

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

// DemoUpstream (harness.h) runs demo-upstream on a kernel-chosen port.

TEST(DemoUpstreamBehindPoolgate, EchoSizeAndChunked) {
  DemoUpstream demo(2);
  Poolgate proxy(proxyConfig(demo.address(), 1));
  proxy.start();
  HttpClient client(proxy.proxyPort());

  HttpResponse first = client.get("/echo");
  HttpResponse second = client.get("/echo");
  ASSERT_EQ(first.status, 200);
  ASSERT_EQ(second.status, 200);
  ASSERT_TRUE(first.has("X-Connection"));
  EXPECT_EQ(first.header("X-Connection"), second.header("X-Connection"))
      << "keep-alive requests used different upstream connections";
  EXPECT_TRUE(first.json().contains("conn"));

  HttpResponse sized = client.get("/size/100000");
  ASSERT_EQ(sized.status, 200);
  EXPECT_EQ(sized.body.size(), 100000u);

  HttpResponse chunked = client.get("/chunked/100000");
  ASSERT_EQ(chunked.status, 200);
  EXPECT_EQ(chunked.body.size(), 100000u);

  auto start = Clock::now();
  HttpResponse delayed = client.get("/delay/100");
  EXPECT_EQ(delayed.status, 200);
  EXPECT_GE(secondsSince(start), 0.09);
}

}  // namespace
}  // namespace pgtest
