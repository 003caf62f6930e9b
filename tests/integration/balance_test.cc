// Balancing across two real upstreams, through the binary.
#include "tests/integration/harness.h"

namespace pgtest {
namespace {

class Balance : public ProxyTest {
 protected:
  void startWithTwoServers(const std::string& upstreamExtra) {
    std::string servers = "servers = ( { address = \"" + upstream_.address() + "\"; }, { address = \"" +
                          second_.address() + "\"; } );";
    startProxyWithConfig("workers = 1;\n"
                         "listen = ( { address = \"127.0.0.1:0\"; } );\n"
                         "admin = { address = \"127.0.0.1:0\"; };\n"
                         "upstreams = ( { name = \"app\"; " + servers + " " + upstreamExtra + " } );\n",
                         {});
  }
  TestUpstream second_;
};

TEST_F(Balance, RoundRobinSharesEqualWeights) {
  startWithTwoServers("");
  HttpClient client = connect();
  for (int i = 0; i < 20; ++i) ASSERT_EQ(client.get("/rr").status, 200);
  EXPECT_EQ(upstream_.requests().size(), 10u);
  EXPECT_EQ(second_.requests().size(), 10u);
}

TEST_F(Balance, WeightsAreRespected) {
  startProxyWithConfig("workers = 1;\n"
                       "listen = ( { address = \"127.0.0.1:0\"; } );\n"
                       "admin = { address = \"127.0.0.1:0\"; };\n"
                       "upstreams = ( { name = \"app\"; servers = ( { address = \"" + upstream_.address() +
                           "\"; weight = 3; }, { address = \"" + second_.address() + "\"; } ); } );\n",
                       {});
  HttpClient client = connect();
  for (int i = 0; i < 40; ++i) ASSERT_EQ(client.get("/w").status, 200);
  EXPECT_EQ(upstream_.requests().size(), 30u);
  EXPECT_EQ(second_.requests().size(), 10u);
}

TEST_F(Balance, HashOnHeaderKeepsAKeyOnOneServer) {
  startWithTwoServers("balance = \"hash\"; hash_key = \"header:X-User\";");
  HttpClient client = connect();
  for (int user = 0; user < 8; ++user) {
    for (int i = 0; i < 5; ++i) {
      ASSERT_EQ(client.get("/h", {{"X-User", "user-" + std::to_string(user)}}).status, 200);
    }
  }
  // Every user's five requests landed together on one of the two servers.
  auto countFor = [](const TestUpstream& u, const std::string& user) {
    size_t n = 0;
    for (const UpstreamRequest& r : u.requests()) n += r.header("X-User") == user;
    return n;
  };
  size_t onFirst = 0;
  for (int user = 0; user < 8; ++user) {
    std::string name = "user-" + std::to_string(user);
    size_t a = countFor(upstream_, name), b = countFor(second_, name);
    EXPECT_TRUE((a == 5 && b == 0) || (a == 0 && b == 5)) << name << ": " << a << " + " << b;
    onFirst += a == 5;
  }
  EXPECT_GT(onFirst, 0u) << "all keys on one server";
  EXPECT_LT(onFirst, 8u) << "all keys on one server";
}

TEST_F(Balance, LeastConnAvoidsTheBusyServer) {
  startWithTwoServers("balance = \"least_conn\";");
  // One slow request occupies a server; the next ones go to the other.
  HttpClient slow = connect();
  slow.send(serializeRequest("GET", "/delay/1500"));
  ASSERT_TRUE(waitUntil([&] { return upstream_.requests().size() + second_.requests().size() == 1; }, 3s));
  TestUpstream& busy = upstream_.requests().size() == 1 ? upstream_ : second_;
  TestUpstream& free = &busy == &upstream_ ? second_ : upstream_;
  HttpClient client = connect();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(client.get("/lc").status, 200);
  EXPECT_EQ(free.requests().size(), 5u);
  EXPECT_EQ(busy.requests().size(), 1u);
  EXPECT_EQ(slow.read().status, 200);
}

}  // namespace
}  // namespace pgtest
