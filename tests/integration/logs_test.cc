// Access log formats and reopening log files on SIGUSR1.
#include <signal.h>

#include <cstdio>
#include <sstream>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

bool fileContains(const std::string& path, std::string_view text) {
  return readFile(path).find(text) != std::string::npos;
}

class Logs : public ProxyTest {};

TEST_F(Logs, JsonAccessLogHasOneObjectPerRequest) {
  startProxy(1, "", R"(log = { access = "${DIR}/access.log"; access_format = "json"; };)");
  const std::string path = proxy().dir().file("access.log");
  HttpClient client = connect();
  for (int i = 0; i < 3; ++i) ASSERT_EQ(client.get("/json-" + std::to_string(i)).status, 200);
  ASSERT_TRUE(waitUntil([&] { return fileContains(path, "/json-2"); }, 3s))
      << "access log:\n" << readFile(path);
  std::istringstream lines(readFile(path));
  std::string line;
  size_t count = 0;
  while (std::getline(lines, line)) {
    ++count;
    EXPECT_NO_THROW(Json::parse(line)) << "not JSON: " << line;
  }
  EXPECT_EQ(count, 3u);
}

TEST_F(Logs, CombinedAccessLogLine) {
  startProxy(1, "", R"(log = { access = "${DIR}/access.log"; };)");
  const std::string path = proxy().dir().file("access.log");
  ASSERT_EQ(connect().get("/combined").status, 200);
  EXPECT_TRUE(waitUntil([&] { return fileContains(path, "\"GET /combined HTTP/1.1\" 200 "); },
                        3s))
      << "access log:\n" << readFile(path);
}

TEST_F(Logs, Sigusr1ReopensAccessLog) {
  startProxy(1, "", R"(log = { access = "${DIR}/access.log"; };)");
  const std::string path = proxy().dir().file("access.log");
  HttpClient client = connect();
  ASSERT_EQ(client.get("/before-reopen").status, 200);
  ASSERT_TRUE(waitUntil([&] { return fileContains(path, "/before-reopen"); }, 3s));

  ASSERT_EQ(std::rename(path.c_str(), (path + ".1").c_str()), 0);
  proxy().signal(SIGUSR1);
  // Each poll logs one more request; once reopened, they land in a new access.log.
  EXPECT_TRUE(waitUntil(
      [&] {
        return client.get("/after-reopen").status == 200 && fileContains(path, "/after-reopen");
      },
      3s, 50ms))
      << "no new access.log after SIGUSR1";
  EXPECT_TRUE(fileContains(path + ".1", "/before-reopen"));
}

}  // namespace
}  // namespace pgtest
