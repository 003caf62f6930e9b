// poolgate in front of the demo prefork upstream (tools/demo-upstream).
#include <regex>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

// Runs demo-upstream on a kernel-chosen port and learns the port from its stdout.
class DemoUpstream {
 public:
  explicit DemoUpstream(int workers) {
    std::string out = dir_.file("demo.log");
    process_ = std::make_unique<Process>(
        std::vector<std::string>{DEMO_UPSTREAM_BINARY, "--listen", "127.0.0.1:0", "--workers",
                                 std::to_string(workers)},
        out, out);
    static const std::regex kListening(R"(demo-upstream listening on ([0-9.]+):(\d+))");
    bool ready = waitUntil(
        [&] {
          std::string text = readFile(out);
          std::smatch m;
          if (!std::regex_search(text, m, kListening)) return false;
          address_ = m[1].str() + ":" + m[2].str();
          return true;
        },
        kStartTimeout);
    if (!ready)
      throw HarnessError("demo-upstream did not report its port; output:\n" + readFile(out));
  }
  ~DemoUpstream() {
    process_->signal(SIGTERM);
    if (!process_->wait(5s)) process_->killGroup();
    process_->killGroup();  // reaps; also ends any worker left behind
  }
  const std::string& address() const { return address_; }

 private:
  TempDir dir_;
  std::unique_ptr<Process> process_;
  std::string address_;
};

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
