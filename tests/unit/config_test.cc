#include "config/config.h"
#include "core/socket.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace poolgate {
namespace {

// The full configuration example of the external contract: every section, with
// the documented defaults written out (README "Every key and its default").
const char* const kSpecExample = R"(workers = 2;                   # 0 = one per CPU (default 0)
accept_mode = "reuseport";     # reuseport | exclusive | shared | mutex | handoff
worker_connections = 10000;    # client connections per worker; past it, stop accepting
max_requests_per_worker = 0;   # recycle a worker after N requests (0 = never)
shutdown_timeout = 30.0;       # graceful stop / reload: how long old workers may drain
pid_file = "";                 # "" = none

log = {
  level = "info";              # error | warn | info | debug
  error = "stderr";            # path or "stderr"
  access = "";                 # path, "stdout", or "" (off)
  access_format = "combined";  # combined | json
};

listen = (
  { address = "127.0.0.1:8080"; backlog = 511; },
  { address = "[::1]:8443";
    tls = { certificates = ( { cert = "site.crt"; key = "site.key"; } ); }; }
);

admin = { address = "127.0.0.1:9901";      # omitted = no admin listener
          allow = [ "127.0.0.1", "10.0.0.0/8" ]; };  # clients allowed (array or list of
                                   # addresses / CIDRs); default loopback only; others get 403

resolver = {                   # for upstream server names (c-ares)
  servers = ( "127.0.0.1:53" );  # omitted = the system's /etc/resolv.conf
  timeout = 2.0;
};

timeouts = {
  client_header = 10.0;        # whole request head must arrive within this → 408
  client_body = 30.0;          # max gap between body reads → 408
  client_keepalive = 60.0;     # idle keep-alive client connection is closed after this
  client_send = 30.0;          # max gap while the client is not reading our response
  upstream_connect = 5.0;      # → 502 (after retries)
  upstream_read = 60.0;        # max gap waiting for upstream bytes → 504
  upstream_send = 30.0;
};

limits = {
  max_request_line = 8192;     # → 414
  max_header_bytes = 32768;    # whole request head → 431
  max_headers = 100;           # → 431
  max_body_bytes = 104857600;  # → 413 (0 = unlimited)
};

upstreams = (
  {
    name = "app";
    servers = ( { address = "127.0.0.1:5000"; weight = 1; },
                { address = "app.internal:5000"; } );   # names resolved with c-ares
    balance = "round_robin";   # round_robin | least_conn | random_two | hash
    hash_key = "";             # for hash: "ip" or "header:NAME"
    pool = {
      max_idle = 32;           # idle connections kept, per worker, per server
      max_conns = 0;           # cap per server across ALL workers (0 = none); waiters queue
      queue_timeout = 5.0;     # a request waiting for a connection past this → 503
      idle_timeout = 60.0;     # idle pooled connection closed after this
      max_requests = 0;        # close an upstream connection after N requests (0 = no cap)
      max_lifetime = 0.0;      # close after this age once idle (0 = no cap)
    };
    health = {
      max_fails = 1;           # passive: failures within fail_timeout that mark a server down
      fail_timeout = 10.0;     # ...and how long it then stays down
      check_path = "";         # active check, "" = off: GET this path, 2xx/3xx = healthy
      check_interval = 5.0;
    };
    retries = 1;               # further attempts on other servers (see Retries)
    tls = { enabled = false; verify = true; ca_file = ""; server_name = ""; };
    dns = { refresh = 0.0; };  # 0 = honour record TTLs; >0 = re-resolve at this interval
  }
);

routes = (                     # first route whose host and longest prefix match wins
  { host = "*"; prefix = "/"; upstream = "app"; }
);
)";

// The smallest valid file: one upstream, everything else defaulted.
const char* const kMinimal =
    R"(upstreams = ( { name = "app"; servers = ( { address = "127.0.0.1:5000"; } ); } );
)";

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/poolgate-config-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }

  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::string write(const std::string& text, const std::string& name = "poolgate.conf") {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  Config load(const std::string& text) { return loadConfigFile(write(text)); }

  // The messages of the ConfigError that loading `text` throws.
  std::vector<std::string> errorsOf(const std::string& text) {
    try {
      load(text);
    } catch (const ConfigError& e) {
      return e.messages();
    }
    ADD_FAILURE() << "no ConfigError for:\n" << text;
    return {};
  }

  // Loading `text` fails with exactly one message, which starts with
  // "FILE:LINE: PATH: " and contains `what`.
  void expectOneError(const std::string& text, int line, const std::string& path,
                      const std::string& what) {
    std::vector<std::string> messages = errorsOf(text);
    ASSERT_EQ(messages.size(), 1u) << ::testing::PrintToString(messages);
    expectMessage(messages[0], line, path, what);
  }

  void expectMessage(const std::string& message, int line, const std::string& path,
                     const std::string& what) {
    std::string prefix = dir_ + "/poolgate.conf:" + std::to_string(line) + ": " + path + ": ";
    EXPECT_EQ(message.substr(0, prefix.size()), prefix) << message;
    EXPECT_NE(message.find(what), std::string::npos) << message;
  }

  std::string dir_;
};

// --- the full example and the defaults --------------------------------------

TEST_F(ConfigFileTest, SpecExampleParses) {
  std::string path = write(kSpecExample);
  Config config = loadConfigFile(path);

  EXPECT_EQ(config.source_file, path);
  EXPECT_EQ(config.workers, 2u);
  EXPECT_EQ(config.effectiveWorkers(), 2u);
  EXPECT_EQ(config.accept_mode, AcceptMode::kReuseport);
  EXPECT_EQ(config.worker_connections, 10000u);
  EXPECT_EQ(config.fd_reserve, 0u);  // automatic
  EXPECT_EQ(config.max_requests_per_worker, 0u);
  EXPECT_DOUBLE_EQ(config.shutdown_timeout, 30.0);
  EXPECT_EQ(config.pid_file, "");

  EXPECT_EQ(config.log.level, LogLevel::kInfo);
  EXPECT_EQ(config.log.error, "stderr");
  EXPECT_EQ(config.log.access, "");
  EXPECT_EQ(config.log.access_format, AccessFormat::kCombined);

  ASSERT_EQ(config.listen.size(), 2u);
  EXPECT_EQ(config.listen[0].address.host, "127.0.0.1");
  EXPECT_EQ(config.listen[0].address.port, 8080);
  EXPECT_TRUE(config.listen[0].address.numeric);
  EXPECT_FALSE(config.listen[0].address.ipv6);
  EXPECT_EQ(config.listen[0].backlog, 511);
  EXPECT_FALSE(config.listen[0].tls.has_value());
  EXPECT_EQ(config.listen[1].address.host, "::1");
  EXPECT_EQ(config.listen[1].address.port, 8443);
  EXPECT_TRUE(config.listen[1].address.ipv6);
  EXPECT_EQ(config.listen[1].address.text, "[::1]:8443");
  EXPECT_EQ(config.listen[1].backlog, 511);
  ASSERT_TRUE(config.listen[1].tls.has_value());
  const ListenTlsConfig& tls = *config.listen[1].tls;
  ASSERT_EQ(tls.certificates.size(), 1u);
  EXPECT_EQ(tls.certificates[0].cert, dir_ + "/site.crt");  // relative to the file's folder
  EXPECT_EQ(tls.certificates[0].key, dir_ + "/site.key");
  EXPECT_EQ(tls.ciphers, "");
  EXPECT_EQ(tls.min_version, "TLSv1.2");
  EXPECT_DOUBLE_EQ(tls.handshake_timeout, 10.0);

  ASSERT_TRUE(config.admin.has_value());
  EXPECT_EQ(config.admin->address.host, "127.0.0.1");
  EXPECT_EQ(config.admin->address.port, 9901);
  ASSERT_EQ(config.admin->allow.size(), 2u);
  EXPECT_EQ(config.admin->allow[0].toString(), "127.0.0.1/32");
  EXPECT_EQ(config.admin->allow[1].toString(), "10.0.0.0/8");

  ASSERT_EQ(config.resolver.servers.size(), 1u);
  EXPECT_EQ(config.resolver.servers[0].host, "127.0.0.1");
  EXPECT_EQ(config.resolver.servers[0].port, 53);
  EXPECT_DOUBLE_EQ(config.resolver.timeout, 2.0);

  EXPECT_DOUBLE_EQ(config.timeouts.client_header, 10.0);
  EXPECT_DOUBLE_EQ(config.timeouts.client_body, 30.0);
  EXPECT_DOUBLE_EQ(config.timeouts.client_keepalive, 60.0);
  EXPECT_DOUBLE_EQ(config.timeouts.client_send, 30.0);
  EXPECT_DOUBLE_EQ(config.timeouts.upstream_connect, 5.0);
  EXPECT_DOUBLE_EQ(config.timeouts.upstream_read, 60.0);
  EXPECT_DOUBLE_EQ(config.timeouts.upstream_send, 30.0);

  EXPECT_EQ(config.limits.max_request_line, 8192u);
  EXPECT_EQ(config.limits.max_header_bytes, 32768u);
  EXPECT_EQ(config.limits.max_headers, 100u);
  EXPECT_EQ(config.limits.max_body_bytes, 104857600u);

  ASSERT_EQ(config.upstreams.size(), 1u);
  const UpstreamConfig& app = config.upstreams[0];
  EXPECT_EQ(app.name, "app");
  ASSERT_EQ(app.servers.size(), 2u);
  EXPECT_EQ(app.servers[0].address.host, "127.0.0.1");
  EXPECT_EQ(app.servers[0].address.port, 5000);
  EXPECT_TRUE(app.servers[0].address.numeric);
  EXPECT_EQ(app.servers[0].weight, 1u);
  EXPECT_EQ(app.servers[1].address.host, "app.internal");
  EXPECT_EQ(app.servers[1].address.port, 5000);
  EXPECT_FALSE(app.servers[1].address.numeric);
  EXPECT_EQ(app.servers[1].weight, 1u);
  EXPECT_EQ(app.balance, Balance::kRoundRobin);
  EXPECT_EQ(app.hash_key, "");
  EXPECT_EQ(app.pool.max_idle, 32u);
  EXPECT_EQ(app.pool.max_conns, 0u);
  EXPECT_DOUBLE_EQ(app.pool.queue_timeout, 5.0);
  EXPECT_DOUBLE_EQ(app.pool.idle_timeout, 60.0);
  EXPECT_EQ(app.pool.max_requests, 0u);
  EXPECT_DOUBLE_EQ(app.pool.max_lifetime, 0.0);
  EXPECT_EQ(app.health.max_fails, 1u);
  EXPECT_DOUBLE_EQ(app.health.fail_timeout, 10.0);
  EXPECT_EQ(app.health.check_path, "");
  EXPECT_DOUBLE_EQ(app.health.check_interval, 5.0);
  EXPECT_EQ(app.retries, 1u);
  EXPECT_FALSE(app.tls.enabled);
  EXPECT_TRUE(app.tls.verify);
  EXPECT_EQ(app.tls.ca_file, "");
  EXPECT_EQ(app.tls.server_name, "");
  EXPECT_DOUBLE_EQ(app.dns_refresh, 0.0);

  ASSERT_EQ(config.routes.size(), 1u);
  EXPECT_EQ(config.routes[0].host, "*");
  EXPECT_EQ(config.routes[0].prefix, "/");
  EXPECT_EQ(config.routes[0].upstream, "app");
  EXPECT_EQ(config.routes[0].upstream_index, 0u);
}

// Every key set to a value other than its default, so that a key wired to the
// wrong field shows.
TEST_F(ConfigFileTest, EveryKeyReachesItsField) {
  Config config = load(R"(
workers = 3; accept_mode = "handoff"; worker_connections = 77; fd_reserve = 64;
max_requests_per_worker = 5000000000L; shutdown_timeout = 7; pid_file = "/run/pg.pid";
log = { level = "debug"; error = "/var/log/pg.err"; access = "stdout"; access_format = "json"; };
listen = ( { address = "*:0"; backlog = 64;
             tls = { certificates = ( { cert = "/etc/a.crt"; key = "keys/a.key"; },
                                      { cert = "b.crt"; key = "b.key"; } );
                     ciphers = "HIGH"; min_version = "TLSv1.3"; handshake_timeout = 2.5; }; } );
admin = { address = "[::1]:0"; };
resolver = { servers = [ "10.0.0.1:5353", "[::1]:53" ]; timeout = 1; };
timeouts = { client_header = 1.5; client_body = 2; client_keepalive = 3; client_send = 4;
             upstream_connect = 5.5; upstream_read = 6; upstream_send = 7; };
limits = { max_request_line = 100; max_header_bytes = 200; max_headers = 10;
           max_body_bytes = 0; };
upstreams = (
  { name = "a"; servers = ( { address = "a.local:81"; weight = 5; } );
    balance = "hash"; hash_key = "header:X-User";
    pool = { max_idle = 1; max_conns = 2; queue_timeout = 3; idle_timeout = 4;
             max_requests = 5; max_lifetime = 6.5; };
    health = { max_fails = 0; fail_timeout = 1; };
    retries = 0;
    tls = { enabled = true; verify = false; ca_file = "ca.pem"; server_name = "a.example"; };
    dns = { refresh = 30; }; },
  { name = "b"; servers = ( { address = "[::1]:82"; } ); balance = "least_conn";
    health = { check_path = "/healthz"; check_interval = 0.5; }; },
  { name = "c"; servers = ( { address = "10.1.1.1:83"; } ); balance = "random_two"; }
);
routes = (
  { host = "API.Example.com"; prefix = "/api"; upstream = "b"; },
  { host = "*.Example.com"; upstream = "c"; },
  { upstream = "a"; }
);
)");
  EXPECT_EQ(config.workers, 3u);
  EXPECT_EQ(config.accept_mode, AcceptMode::kHandoff);
  EXPECT_EQ(config.worker_connections, 77u);
  EXPECT_EQ(config.fd_reserve, 64u);
  EXPECT_EQ(config.max_requests_per_worker, 5000000000u);
  EXPECT_DOUBLE_EQ(config.shutdown_timeout, 7.0);
  EXPECT_EQ(config.pid_file, "/run/pg.pid");
  EXPECT_EQ(config.log.level, LogLevel::kDebug);
  EXPECT_EQ(config.log.error, "/var/log/pg.err");
  EXPECT_EQ(config.log.access, "stdout");
  EXPECT_EQ(config.log.access_format, AccessFormat::kJson);

  ASSERT_EQ(config.listen.size(), 1u);
  EXPECT_EQ(config.listen[0].address.host, "0.0.0.0");
  EXPECT_EQ(config.listen[0].address.port, 0);
  EXPECT_EQ(config.listen[0].backlog, 64);
  ASSERT_TRUE(config.listen[0].tls.has_value());
  const ListenTlsConfig& tls = *config.listen[0].tls;
  ASSERT_EQ(tls.certificates.size(), 2u);
  EXPECT_EQ(tls.certificates[0].cert, "/etc/a.crt");
  EXPECT_EQ(tls.certificates[0].key, dir_ + "/keys/a.key");
  EXPECT_EQ(tls.certificates[1].cert, dir_ + "/b.crt");
  EXPECT_EQ(tls.ciphers, "HIGH");
  EXPECT_EQ(tls.min_version, "TLSv1.3");
  EXPECT_DOUBLE_EQ(tls.handshake_timeout, 2.5);
  ASSERT_TRUE(config.admin.has_value());
  EXPECT_EQ(config.admin->address.host, "::1");
  EXPECT_EQ(config.admin->address.port, 0);

  ASSERT_EQ(config.resolver.servers.size(), 2u);
  EXPECT_EQ(config.resolver.servers[0].port, 5353);
  EXPECT_TRUE(config.resolver.servers[1].ipv6);
  EXPECT_DOUBLE_EQ(config.resolver.timeout, 1.0);

  EXPECT_DOUBLE_EQ(config.timeouts.client_header, 1.5);
  EXPECT_DOUBLE_EQ(config.timeouts.client_body, 2.0);
  EXPECT_DOUBLE_EQ(config.timeouts.client_keepalive, 3.0);
  EXPECT_DOUBLE_EQ(config.timeouts.client_send, 4.0);
  EXPECT_DOUBLE_EQ(config.timeouts.upstream_connect, 5.5);
  EXPECT_DOUBLE_EQ(config.timeouts.upstream_read, 6.0);
  EXPECT_DOUBLE_EQ(config.timeouts.upstream_send, 7.0);
  EXPECT_EQ(config.limits.max_request_line, 100u);
  EXPECT_EQ(config.limits.max_header_bytes, 200u);
  EXPECT_EQ(config.limits.max_headers, 10u);
  EXPECT_EQ(config.limits.max_body_bytes, 0u);

  ASSERT_EQ(config.upstreams.size(), 3u);
  const UpstreamConfig& a = config.upstreams[0];
  EXPECT_EQ(a.servers[0].address.host, "a.local");
  EXPECT_EQ(a.servers[0].address.port, 81);
  EXPECT_EQ(a.servers[0].weight, 5u);
  EXPECT_EQ(a.balance, Balance::kHash);
  EXPECT_EQ(a.hash_key, "header:X-User");
  EXPECT_EQ(a.pool.max_idle, 1u);
  EXPECT_EQ(a.pool.max_conns, 2u);
  EXPECT_DOUBLE_EQ(a.pool.queue_timeout, 3.0);
  EXPECT_DOUBLE_EQ(a.pool.idle_timeout, 4.0);
  EXPECT_EQ(a.pool.max_requests, 5u);
  EXPECT_DOUBLE_EQ(a.pool.max_lifetime, 6.5);
  EXPECT_EQ(a.health.max_fails, 0u);
  EXPECT_DOUBLE_EQ(a.health.fail_timeout, 1.0);
  EXPECT_EQ(config.upstreams[1].health.check_path, "/healthz");  // (not with TLS: see below)
  EXPECT_DOUBLE_EQ(config.upstreams[1].health.check_interval, 0.5);
  EXPECT_EQ(a.retries, 0u);
  EXPECT_TRUE(a.tls.enabled);
  EXPECT_FALSE(a.tls.verify);
  EXPECT_EQ(a.tls.ca_file, dir_ + "/ca.pem");
  EXPECT_EQ(a.tls.server_name, "a.example");
  EXPECT_DOUBLE_EQ(a.dns_refresh, 30.0);
  EXPECT_EQ(config.upstreams[1].balance, Balance::kLeastConn);
  EXPECT_EQ(config.upstreams[2].balance, Balance::kRandomTwo);

  ASSERT_EQ(config.routes.size(), 3u);
  EXPECT_EQ(config.routes[0].host, "api.example.com");
  EXPECT_EQ(config.routes[0].prefix, "/api");
  EXPECT_EQ(config.routes[0].upstream_index, 1u);
  EXPECT_EQ(config.routes[1].host, "*.example.com");
  EXPECT_EQ(config.routes[1].prefix, "/");
  EXPECT_EQ(config.routes[1].upstream_index, 2u);
  EXPECT_EQ(config.routes[2].host, "*");
  EXPECT_EQ(config.routes[2].upstream_index, 0u);
}

TEST_F(ConfigFileTest, MinimalFileTakesDefaults) {
  Config config = load(kMinimal);
  ASSERT_EQ(config.listen.size(), 1u);
  EXPECT_EQ(config.listen[0].address.text, "127.0.0.1:8080");
  EXPECT_EQ(config.listen[0].backlog, 511);
  EXPECT_FALSE(config.admin.has_value());  // no admin section, no admin listener
  EXPECT_TRUE(config.resolver.servers.empty());
  EXPECT_EQ(config.workers, 0u);
  EXPECT_EQ(config.log.level, LogLevel::kInfo);
  ASSERT_EQ(config.routes.size(), 1u);  // the catch-all route is added
  EXPECT_EQ(config.routes[0].host, "*");
  EXPECT_EQ(config.routes[0].prefix, "/");
  EXPECT_EQ(config.routes[0].upstream, "app");
  EXPECT_EQ(config.routes[0].upstream_index, 0u);
}

TEST_F(ConfigFileTest, BufferingKeysReachTheirFieldsAndDefaultOn) {
  Config defaults = load(kMinimal);
  EXPECT_TRUE(defaults.buffering.request);
  EXPECT_TRUE(defaults.buffering.response);
  EXPECT_TRUE(defaults.routes[0].request_buffering);
  EXPECT_TRUE(defaults.routes[0].response_buffering);
  Config config = load(std::string(kMinimal) +
                       "buffering = { request = false; response = false; memory = 1000; max_temp_file = 0; "
                       "worker_memory = 5000; temp_path = \"" + dir_ + "\"; };\n"
                       "routes = ( { prefix = \"/up\"; upstream = \"app\"; request_buffering = false; },\n"
                       "           { upstream = \"app\"; response_buffering = false; } );\n");
  EXPECT_FALSE(config.buffering.request);
  EXPECT_FALSE(config.buffering.response);
  EXPECT_EQ(config.buffering.memory, 1000u);
  EXPECT_EQ(config.buffering.max_temp_file, 0u);
  EXPECT_EQ(config.buffering.worker_memory, 5000u);
  EXPECT_EQ(config.buffering.temp_path, dir_);
  ASSERT_EQ(config.routes.size(), 2u);
  EXPECT_FALSE(config.routes[0].request_buffering);
  EXPECT_TRUE(config.routes[0].response_buffering);
  EXPECT_TRUE(config.routes[1].request_buffering);
  EXPECT_FALSE(config.routes[1].response_buffering);
}

TEST_F(ConfigFileTest, Http2KeysReachTheirFieldsWithSafeDefaults) {
  Config defaults = load(kMinimal);
  EXPECT_FALSE(defaults.listen[0].http2);  // ALPN selects http/1.1 unless asked
  EXPECT_EQ(defaults.http2.max_concurrent_streams, 128u);
  EXPECT_EQ(defaults.http2.initial_window_bytes, 65535u);
  EXPECT_EQ(defaults.http2.max_header_list_bytes, 32768u);
  Config config = load(std::string(kMinimal) +
                       "listen = ( { address = \"127.0.0.1:8080\"; http2 = true; } );\n"
                       "http2 = { max_concurrent_streams = 10; initial_window_bytes = 1048576; "
                       "max_header_list_bytes = 4096; };\n");
  EXPECT_TRUE(config.listen[0].http2);
  EXPECT_EQ(config.http2.max_concurrent_streams, 10u);
  EXPECT_EQ(config.http2.initial_window_bytes, 1048576u);
  EXPECT_EQ(config.http2.max_header_list_bytes, 4096u);
}

TEST_F(ConfigFileTest, Http2LimitsAreBounded) {
  expectOneError(std::string(kMinimal) + "http2 = { max_concurrent_streams = 0; };\n", 2,
                 "http2.max_concurrent_streams", "must be between 1 and 65536");
  expectOneError(std::string(kMinimal) + "http2 = {\n initial_window_bytes = 2147483648L; };\n", 3,
                 "http2.initial_window_bytes", "must be between 1024 and 16777216");
  expectOneError(std::string(kMinimal) + "listen = ( { address = \"127.0.0.1:8080\"; http2 = \"yes\"; } );\n", 2,
                 "listen[0].http2", "expected a boolean");
}

TEST_F(ConfigFileTest, RequestBufferingMustBeABoolean) {
  expectOneError(std::string(kMinimal) + "buffering = { request = 1; };\n", 2, "buffering.request",
                 "expected a boolean (true or false), got an integer");
}

TEST_F(ConfigFileTest, DurationsAcceptIntegersAndFloats) {
  Config config = load(std::string(kMinimal) +
                       "shutdown_timeout = 5; timeouts = { client_header = 0.25; "
                       "client_body = 3L; };\n");
  EXPECT_DOUBLE_EQ(config.shutdown_timeout, 5.0);
  EXPECT_DOUBLE_EQ(config.timeouts.client_header, 0.25);
  EXPECT_DOUBLE_EQ(config.timeouts.client_body, 3.0);
}

TEST(ConfigDefault, MatchesSpec) {
  Config config = defaultConfig();
  EXPECT_EQ(config.source_file, "");
  EXPECT_EQ(config.workers, 0u);
  EXPECT_GE(config.effectiveWorkers(), 1u);
  EXPECT_LE(config.effectiveWorkers(), kMaxWorkers);
  ASSERT_EQ(config.listen.size(), 1u);
  EXPECT_EQ(config.listen[0].address.host, "127.0.0.1");
  EXPECT_EQ(config.listen[0].address.port, 8080);
  EXPECT_TRUE(config.listen[0].address.numeric);
  ASSERT_TRUE(config.admin.has_value());
  EXPECT_EQ(config.admin->address.host, "127.0.0.1");
  EXPECT_EQ(config.admin->address.port, 9901);
  ASSERT_EQ(config.upstreams.size(), 1u);
  EXPECT_EQ(config.upstreams[0].name, "app");
  ASSERT_EQ(config.upstreams[0].servers.size(), 1u);
  EXPECT_EQ(config.upstreams[0].servers[0].address.host, "127.0.0.1");
  EXPECT_EQ(config.upstreams[0].servers[0].address.port, 5000);
  ASSERT_EQ(config.routes.size(), 1u);
  EXPECT_EQ(config.routes[0].upstream, "app");
  EXPECT_EQ(config.routes[0].upstream_index, 0u);
}

TEST(ConfigDefault, EffectiveWorkers) {
  Config config;
  config.workers = 5;
  EXPECT_EQ(config.effectiveWorkers(), 5u);
  config.workers = 0;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  uint32_t expected = cpus < 1 ? 1 : std::min<uint32_t>(static_cast<uint32_t>(cpus), kMaxWorkers);
  EXPECT_EQ(config.effectiveWorkers(), expected);
}

TEST(ConfigDefault, EnumNames) {
  EXPECT_STREQ(toString(AcceptMode::kReuseport), "reuseport");
  EXPECT_STREQ(toString(AcceptMode::kExclusive), "exclusive");
  EXPECT_STREQ(toString(AcceptMode::kShared), "shared");
  EXPECT_STREQ(toString(AcceptMode::kMutex), "mutex");
  EXPECT_STREQ(toString(AcceptMode::kHandoff), "handoff");
  EXPECT_STREQ(toString(LogLevel::kError), "error");
  EXPECT_STREQ(toString(LogLevel::kWarn), "warn");
  EXPECT_STREQ(toString(LogLevel::kInfo), "info");
  EXPECT_STREQ(toString(LogLevel::kDebug), "debug");
  EXPECT_STREQ(toString(Balance::kRoundRobin), "round_robin");
  EXPECT_STREQ(toString(Balance::kLeastConn), "least_conn");
  EXPECT_STREQ(toString(Balance::kRandomTwo), "random_two");
  EXPECT_STREQ(toString(Balance::kHash), "hash");
  EXPECT_STREQ(toString(AccessFormat::kCombined), "combined");
  EXPECT_STREQ(toString(AccessFormat::kJson), "json");
}

// --- parseHostPort -----------------------------------------------------------

TEST(ConfigHostPort, Accepts) {
  struct Case {
    const char* text;
    const char* host;
    uint16_t port;
    bool numeric;
    bool ipv6;
  };
  const Case cases[] = {
      {"1.2.3.4:80", "1.2.3.4", 80, true, false},
      {"[::1]:80", "::1", 80, true, true},
      {"[2001:db8::1]:65535", "2001:db8::1", 65535, true, true},
      {"*:80", "0.0.0.0", 80, true, false},
      {"name:80", "name", 80, false, false},
      {"app.internal:5000", "app.internal", 5000, false, false},
      {"127.0.0.1:0", "127.0.0.1", 0, true, false},
  };
  for (const Case& c : cases) {
    std::string why;
    std::optional<HostPort> address = parseHostPort(c.text, &why);
    ASSERT_TRUE(address.has_value()) << c.text << ": " << why;
    EXPECT_EQ(address->host, c.host) << c.text;
    EXPECT_EQ(address->port, c.port) << c.text;
    EXPECT_EQ(address->numeric, c.numeric) << c.text;
    EXPECT_EQ(address->ipv6, c.ipv6) << c.text;
    EXPECT_EQ(address->text, c.text);
  }
}

TEST(ConfigHostPort, Rejects) {
  const char* const cases[] = {
      "",
      "1.2.3.4",
      "1.2.3.4:",
      "1.2.3.4:65536",
      "1.2.3.4:99999999999",
      "1.2.3.4:8x",
      "1.2.3.4:-1",
      ":80",
      "[::1]",
      "[::1]80",
      "[::1:80",
      "::1]:80",
      "[]:80",
      "::1:80",
      "[not-v6]:80",
      "bad host:80",
      "a/b:80",
      "1.2.3.4: 80",
  };
  for (const char* text : cases) {
    std::string why;
    EXPECT_FALSE(parseHostPort(text, &why).has_value()) << "accepted " << text;
    EXPECT_FALSE(why.empty()) << text;
  }
}

// --- errors: each one located as FILE:LINE: path ---------------------------

TEST_F(ConfigFileTest, UnknownTopLevelKey) {
  expectOneError(std::string(kMinimal) + "\nworkerz = 2;\n", 3, "workerz", "unknown setting");
}

TEST_F(ConfigFileTest, UnknownNestedKey) {
  expectOneError(R"(upstreams = (
  { name = "app";
    servers = ( { address = "127.0.0.1:5000"; } );
    pool = {
      max_idle = 3;
      max_idel = 4;
    };
  }
);
)",
                 6, "upstreams[0].pool.max_idel", "unknown setting");
}

TEST_F(ConfigFileTest, UnknownKeysInEverySection) {
  std::vector<std::string> messages = errorsOf(R"(upstreams = ( { name = "app";
  servers = ( { address = "127.0.0.1:5000"; port = 1; } );
  tls = { enable = true; };
  dns = { ttl = 1; };
  health = { path = "/"; }; } );
log = { levle = "info"; };
listen = ( { address = "127.0.0.1:0";
  tls = { certificates = ( { cert = "a"; key = "b"; pem = "c"; } ); }; } );
admin = { addr = "1"; address = "127.0.0.1:0"; };
resolver = { server = 1; };
timeouts = { client = 1; };
limits = { max_body = 1; };
routes = ( { upstream = "app"; path = "/"; } );
)");
  ASSERT_EQ(messages.size(), 11u) << ::testing::PrintToString(messages);
  expectMessage(messages[0], 2, "upstreams[0].servers[0].port", "unknown setting");
  expectMessage(messages[1], 3, "upstreams[0].tls.enable", "unknown setting");
  expectMessage(messages[2], 4, "upstreams[0].dns.ttl", "unknown setting");
  expectMessage(messages[3], 5, "upstreams[0].health.path", "unknown setting");
  expectMessage(messages[4], 6, "log.levle", "unknown setting");
  expectMessage(messages[5], 8, "listen[0].tls.certificates[0].pem", "unknown setting");
  expectMessage(messages[6], 9, "admin.addr", "unknown setting");
  expectMessage(messages[7], 10, "resolver.server", "unknown setting");
  expectMessage(messages[8], 11, "timeouts.client", "unknown setting");
  expectMessage(messages[9], 12, "limits.max_body", "unknown setting");
  expectMessage(messages[10], 13, "routes[0].path", "unknown setting");
}

TEST_F(ConfigFileTest, WrongTypes) {
  expectOneError(std::string(kMinimal) + "workers = \"2\";\n", 2, "workers",
                 "expected an integer, got a string");
  expectOneError(std::string(kMinimal) + "worker_connections = 1.5;\n", 2, "worker_connections",
                 "expected an integer, got a float");
  expectOneError(std::string(kMinimal) + "timeouts = { client_header = \"10s\"; };\n", 2,
                 "timeouts.client_header", "expected a number of seconds, got a string");
  expectOneError(std::string(kMinimal) + "log = \"debug\";\n", 2, "log",
                 "expected a group { }, got a string");
  expectOneError(std::string(kMinimal) + "listen = { address = \"127.0.0.1:0\"; };\n", 2, "listen",
                 "expected a list ( ), got a group { }");
  expectOneError(R"(upstreams = ( { name = "app"; servers = ( { address = "127.0.0.1:5000"; } );
  tls = { enabled = 1; }; } );
)",
                 2, "upstreams[0].tls.enabled", "expected a boolean");
  expectOneError(R"(upstreams = ( { name = "app";
  servers = ( "127.0.0.1:5000" ); } );
)",
                 2, "upstreams[0].servers[0]", "expected a group { }, got a string");
}

TEST_F(ConfigFileTest, BadEnums) {
  expectOneError(std::string(kMinimal) + "accept_mode = \"fork\";\n", 2, "accept_mode",
                 "unknown value \"fork\" (expected reuseport, exclusive, shared, mutex or "
                 "handoff)");
  expectOneError(std::string(kMinimal) + "log = { level = \"trace\"; };\n", 2, "log.level",
                 "unknown value \"trace\"");
  expectOneError(std::string(kMinimal) + "log = { access_format = \"xml\"; };\n", 2,
                 "log.access_format", "unknown value \"xml\"");
  expectOneError(R"(upstreams = ( { name = "app"; servers = ( { address = "127.0.0.1:5000"; } );
  balance = "fastest"; } );
)",
                 2, "upstreams[0].balance", "unknown value \"fastest\"");
  expectOneError(std::string(kMinimal) +
                     "listen = ( { address = \"127.0.0.1:0\";\n"
                     "  tls = { certificates = ( { cert = \"a\"; key = \"b\"; } );\n"
                     "          min_version = \"TLSv1.0\"; }; } );\n",
                 4, "listen[0].tls.min_version", "unknown value \"TLSv1.0\"");
}

TEST_F(ConfigFileTest, OutOfRange) {
  expectOneError(std::string(kMinimal) + "workers = 65;\n", 2, "workers",
                 "must be between 0 and 64 (got 65)");
  expectOneError(std::string(kMinimal) + "workers = -1;\n", 2, "workers", "(got -1)");
  expectOneError(std::string(kMinimal) + "worker_connections = 0;\n", 2, "worker_connections",
                 "must be at least 1 (got 0)");
  expectOneError(std::string(kMinimal) + "limits = { max_headers = 0; };\n", 2,
                 "limits.max_headers", "must be at least 1");
  expectOneError(std::string(kMinimal) + "limits = { max_request_line = 5000000000L; };\n", 2,
                 "limits.max_request_line", "must be at most 4294967295 (got 5000000000)");
  expectOneError(std::string(kMinimal) + "shutdown_timeout = -1.5;\n", 2, "shutdown_timeout",
                 "must not be negative (got -1.5)");
  expectOneError(std::string(kMinimal) + "resolver = { timeout = 0; };\n", 2, "resolver.timeout",
                 "must be greater than 0");
  expectOneError(
      std::string(kMinimal) + "listen = ( { address = \"127.0.0.1:0\"; backlog = 0; } );\n", 2,
      "listen[0].backlog", "must be at least 1 (got 0)");
  expectOneError(R"(upstreams = ( { name = "app";
  servers = ( { address = "127.0.0.1:5000"; weight = 0; } ); } );
)",
                 2, "upstreams[0].servers[0].weight", "must be between 1 and 65535 (got 0)");
}

TEST_F(ConfigFileTest, BadAddresses) {
  expectOneError(std::string(kMinimal) + "listen = ( { address = \"localhost:80\"; } );\n", 2,
                 "listen[0].address", "must be a numeric IP address or \"*\"");
  expectOneError(std::string(kMinimal) + "listen = ( { address = \"127.0.0.1\"; } );\n", 2,
                 "listen[0].address", "missing port");
  expectOneError(std::string(kMinimal) + "admin = { address = \"127.0.0.1:70000\"; };\n", 2,
                 "admin.address", "out of range");
  expectOneError(std::string(kMinimal) + "resolver = { servers = ( \"dns.local:53\" ); };\n", 2,
                 "resolver.servers[0]", "must be a numeric IP address");
  expectOneError(R"(upstreams = ( { name = "app";
  servers = ( { address = "127.0.0.1:5000"; },
              { address = "app.local:0"; } ); } );
)",
                 3, "upstreams[0].servers[1].address", "port 0 is not allowed");
  expectOneError(R"(upstreams = ( { name = "app";
  servers = ( { address = "[::1:5000"; } ); } );
)",
                 2, "upstreams[0].servers[0].address", "bad address \"[::1:5000\"");
}

// --- admin.allow ---------------------------------------------------------------

SocketAddress peer(const char* ip) {
  SocketAddress address;
  EXPECT_TRUE(makeSocketAddress(ip, 40000, &address)) << ip;
  return address;
}

TEST_F(ConfigFileTest, AdminAllowTakesArraysAndListsOfBothFamilies) {
  Config config = load(std::string(kMinimal) +
                       "admin = { address = \"127.0.0.1:9901\";\n"
                       "          allow = [ \"127.0.0.1\", \"10.0.0.0/8\", \"::1\", \"fd00::/8\" ]; };\n");
  ASSERT_TRUE(config.admin.has_value());
  ASSERT_EQ(config.admin->allow.size(), 4u);
  EXPECT_EQ(config.admin->allow[2].toString(), "::1/128");
  EXPECT_EQ(config.admin->allow[3].toString(), "fd00::/8");
  EXPECT_TRUE(config.admin->allows(peer("10.20.30.40").get()));
  EXPECT_TRUE(config.admin->allows(peer("fdab::1").get()));
  EXPECT_TRUE(config.admin->allows(peer("::1").get()));
  EXPECT_FALSE(config.admin->allows(peer("127.0.0.2").get()));  // only 127.0.0.1 was listed
  EXPECT_FALSE(config.admin->allows(peer("192.168.1.1").get()));
  EXPECT_FALSE(config.admin->allows(peer("fe80::1").get()));

  Config list = load(std::string(kMinimal) +
                     "admin = { address = \"127.0.0.1:9901\"; allow = ( \"192.168.0.0/16\" ); };\n");
  ASSERT_EQ(list.admin->allow.size(), 1u);
  EXPECT_TRUE(list.admin->allows(peer("192.168.7.7").get()));
  EXPECT_FALSE(list.admin->allows(peer("127.0.0.1").get()));  // a list replaces the default
}

TEST_F(ConfigFileTest, AdminWithoutAllowAdmitsLoopbackOnly) {
  Config config = load(std::string(kMinimal) + "admin = { address = \"127.0.0.1:9901\"; };\n");
  ASSERT_TRUE(config.admin.has_value());
  EXPECT_TRUE(config.admin->allow.empty());
  EXPECT_TRUE(config.admin->allows(peer("127.0.0.1").get()));
  EXPECT_TRUE(config.admin->allows(peer("127.1.2.3").get()));
  EXPECT_TRUE(config.admin->allows(peer("::1").get()));
  EXPECT_TRUE(config.admin->allows(peer("::ffff:127.0.0.1").get()));
  EXPECT_FALSE(config.admin->allows(peer("10.0.0.1").get()));
  EXPECT_FALSE(config.admin->allows(peer("::2").get()));
  EXPECT_FALSE(config.admin->allows(peer("::ffff:10.0.0.1").get()));
  EXPECT_TRUE(defaultConfig().admin->allows(peer("127.0.0.1").get()));
  EXPECT_FALSE(defaultConfig().admin->allows(peer("10.0.0.1").get()));
}

TEST_F(ConfigFileTest, BadAdminAllowEntriesNameTheirLineAndIndex) {
  std::vector<std::string> messages = errorsOf(std::string(kMinimal) +
                                               "admin = { address = \"127.0.0.1:9901\";\n"
                                               "  allow = [ \"127.0.0.1\",\n"
                                               "            \"10.0.0.1/8\",\n"
                                               "            \"localhost\",\n"
                                               "            \"::1/129\",\n"
                                               "            \"10.0.0.0/\" ]; };\n");
  ASSERT_EQ(messages.size(), 4u) << ::testing::PrintToString(messages);
  expectMessage(messages[0], 4, "admin.allow[1]", "bad address or CIDR range \"10.0.0.1/8\"");
  EXPECT_NE(messages[0].find("did you mean 10.0.0.0/8?"), std::string::npos) << messages[0];
  expectMessage(messages[1], 5, "admin.allow[2]", "names are not allowed");
  expectMessage(messages[2], 6, "admin.allow[3]", "out of range (0..128)");
  expectMessage(messages[3], 7, "admin.allow[4]", "bad prefix length");

  expectOneError(std::string(kMinimal) + "admin = { address = \"127.0.0.1:9901\"; allow = [ ]; };\n", 2,
                 "admin.allow", "empty");
  expectOneError(std::string(kMinimal) + "admin = { address = \"127.0.0.1:9901\"; allow = \"127.0.0.1\"; };\n",
                 2, "admin.allow", "expected an array [ ]");
  expectOneError(std::string(kMinimal) + "admin = { address = \"127.0.0.1:9901\"; allow = ( 127 ); };\n", 2,
                 "admin.allow[0]", "expected a string");
  expectOneError(std::string(kMinimal) + "admin = { address = \"127.0.0.1:9901\"; alow = [ \"::1\" ]; };\n",
                 2, "admin.alow", "unknown setting");
}

TEST_F(ConfigFileTest, NonLoopbackAdminWithoutAllowIsWarnedAbout) {
  auto warnings = [&](const std::string& admin) {
    return configWarnings(load(std::string(kMinimal) + admin));
  };
  std::vector<std::string> exposed = warnings("admin = { address = \"*:9901\"; };\n");
  ASSERT_EQ(exposed.size(), 1u);
  expectMessage(exposed[0], 2, "admin.address", "not a loopback address");
  EXPECT_NE(exposed[0].find("admin.allow"), std::string::npos) << exposed[0];
  EXPECT_EQ(warnings("admin = { address = \"[::]:9901\"; };\n").size(), 1u);
  EXPECT_EQ(warnings("admin = { address = \"10.1.2.3:9901\"; };\n").size(), 1u);
  // Loopback, or an explicit allow list: nothing to say.
  EXPECT_TRUE(warnings("admin = { address = \"127.0.0.1:9901\"; };\n").empty());
  EXPECT_TRUE(warnings("admin = { address = \"127.0.0.5:9901\"; };\n").empty());
  EXPECT_TRUE(warnings("admin = { address = \"[::1]:9901\"; };\n").empty());
  EXPECT_TRUE(warnings("admin = { address = \"*:9901\"; allow = [ \"10.0.0.0/8\" ]; };\n").empty());
  EXPECT_TRUE(warnings("").empty());  // no admin listener
  EXPECT_TRUE(configWarnings(defaultConfig()).empty());
}

TEST_F(ConfigFileTest, DuplicateListenAddress) {
  expectOneError(std::string(kMinimal) +
                     "listen = ( { address = \"127.0.0.1:8000\"; },\n"
                     "           { address = \"127.0.0.1:8000\"; } );\n",
                 3, "listen[1].address", "same address as listen[0]");
}

TEST_F(ConfigFileTest, MissingUpstreamReference) {
  expectOneError(std::string(kMinimal) +
                     "routes = (\n"
                     "  { prefix = \"/\"; upstream = \"app\"; },\n"
                     "  { prefix = \"/api\"; upstream = \"api\"; }\n"
                     ");\n",
                 4, "routes[1].upstream", "no upstream named \"api\"");
}

TEST_F(ConfigFileTest, DuplicateUpstream) {
  expectOneError(R"(upstreams = (
  { name = "app"; servers = ( { address = "127.0.0.1:5000"; } ); },
  { servers = ( { address = "127.0.0.1:5001"; } );
    name = "app"; }
);
routes = ( { upstream = "app"; } );
)",
                 4, "upstreams[1].name", "duplicate upstream name \"app\" (first at line 2)");
}

TEST_F(ConfigFileTest, HashWithoutHashKey) {
  expectOneError(R"(upstreams = (
  { name = "app";
    servers = ( { address = "127.0.0.1:5000"; } );
    balance = "hash"; }
);
)",
                 2, "upstreams[0].hash_key", "required when balance is \"hash\"");
  expectOneError(R"(upstreams = (
  { name = "app";
    servers = ( { address = "127.0.0.1:5000"; } );
    balance = "hash";
    hash_key = "cookie"; }
);
)",
                 5, "upstreams[0].hash_key", "unknown value \"cookie\"");
}

TEST_F(ConfigFileTest, HashWithEmptyHashKey) {
  expectOneError(R"(upstreams = (
  { name = "app";
    servers = ( { address = "127.0.0.1:5000"; } );
    balance = "hash";
    hash_key = ""; }
);
)",
                 5, "upstreams[0].hash_key", "required when balance is \"hash\"");
}

TEST_F(ConfigFileTest, TwoUpstreamsWithoutRoutes) {
  expectOneError(R"(workers = 1;
upstreams = (
  { name = "a"; servers = ( { address = "127.0.0.1:5000"; } ); },
  { name = "b"; servers = ( { address = "127.0.0.1:5001"; } ); }
);
)",
                 2, "upstreams", "routes are required when there is more than one upstream");
}

TEST_F(ConfigFileTest, MissingAndEmptySections) {
  expectOneError("workers = 1;\n", 1, "upstreams", "missing (required)");
  expectOneError("upstreams = ();\n", 1, "upstreams", "at least one upstream is required");
  expectOneError(std::string(kMinimal) + "listen = ();\n", 2, "listen",
                 "at least one listen address is required");
  expectOneError("upstreams = (\n  { name = \"app\"; }\n);\n", 2, "upstreams[0].servers",
                 "missing (required)");
  expectOneError("upstreams = (\n  { name = \"app\"; servers = (); }\n);\n", 2,
                 "upstreams[0].servers", "at least one server is required");
  expectOneError("upstreams = (\n  { servers = ( { address = \"127.0.0.1:5000\"; } ); }\n);\n", 2,
                 "upstreams[0].name", "missing (required)");
  expectOneError(std::string(kMinimal) + "admin = { };\n", 2, "admin.address",
                 "missing (required)");
}

TEST_F(ConfigFileTest, BadUpstreamName) {
  expectOneError(
      "upstreams = (\n  { name = \"my app\"; servers = ( { address = \"127.0.0.1:5000\"; } ); "
      "}\n);\n",
      2, "upstreams[0].name", "bad name \"my app\"");
}

TEST_F(ConfigFileTest, BadRoutes) {
  expectOneError(
      std::string(kMinimal) + "routes = ( { prefix = \"api\"; upstream = \"app\"; } );\n", 2,
      "routes[0].prefix", "must start with '/'");
  expectOneError(std::string(kMinimal) + "routes = ( { host = \"*.\"; upstream = \"app\"; } );\n",
                 2, "routes[0].host", "bad host");
  expectOneError(std::string(kMinimal) + "routes = ( { prefix = \"/\"; } );\n", 2,
                 "routes[0].upstream", "missing (required)");
}

TEST_F(ConfigFileTest, BadTlsCertificates) {
  expectOneError(std::string(kMinimal) +
                     "listen = ( { address = \"127.0.0.1:0\";\n"
                     "  tls = { certificates = ( { cert = \"\"; key = \"k\"; } ); }; } );\n",
                 3, "listen[0].tls.certificates[0].cert", "must not be empty");
  expectOneError(std::string(kMinimal) +
                     "listen = ( { address = \"127.0.0.1:0\";\n"
                     "  tls = { certificates = ( { cert = \"c\"; } ); }; } );\n",
                 3, "listen[0].tls.certificates[0].key", "missing (required)");
  expectOneError(std::string(kMinimal) +
                     "listen = ( { address = \"127.0.0.1:0\";\n"
                     "  tls = { certificates = (); }; } );\n",
                 3, "listen[0].tls.certificates", "at least one certificate is required");
  expectOneError(std::string(kMinimal) +
                     "listen = ( { address = \"127.0.0.1:0\";\n"
                     "  tls = { ciphers = \"HIGH\"; }; } );\n",
                 3, "listen[0].tls.certificates", "missing (required)");
}

// libconfig 1.5 wraps an unsuffixed literal past 32 bits; that must not pass silently.
TEST_F(ConfigFileTest, IntegerPast32BitsNeedsLSuffix) {
  expectOneError(std::string(kMinimal) + "limits = {\n  max_body_bytes = 5000000000; # 5 GB\n};\n",
                 3, "limits.max_body_bytes",
                 "5000000000 does not fit in 32 bits: write it as 5000000000L");
  expectOneError(std::string(kMinimal) + "max_requests_per_worker = 99999999999999999999;\n", 2,
                 "max_requests_per_worker", "99999999999999999999 is too large");
  expectOneError(std::string(kMinimal) + "shutdown_timeout = 3000000000;\n", 2, "shutdown_timeout",
                 "3000000000 does not fit in 32 bits");
  Config config = load(std::string(kMinimal) + "limits = { max_body_bytes = 5000000000L; };\n");
  EXPECT_EQ(config.limits.max_body_bytes, 5000000000u);
}

TEST_F(ConfigFileTest, IncludedFilesKeepTheirNamesAndFolders) {
  std::filesystem::create_directory(dir_ + "/conf.d");
  write(
      "listen = ( { address = \"127.0.0.1:0\";\n"
      "  tls = { certificates = ( { cert = \"site.crt\"; key = \"site.key\"; } ); }; } );\n",
      "conf.d/listen.conf");
  Config config = load(std::string(kMinimal) + "@include \"conf.d/listen.conf\"\n");
  ASSERT_EQ(config.listen.size(), 1u);
  ASSERT_TRUE(config.listen[0].tls.has_value());
  EXPECT_EQ(config.listen[0].tls->certificates[0].cert, dir_ + "/conf.d/site.crt");

  write("workers = 1;\nworkerz = 2;\n", "conf.d/workers.conf");
  std::vector<std::string> messages =
      errorsOf(std::string(kMinimal) + "@include \"conf.d/workers.conf\"\n");
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0], dir_ + "/conf.d/workers.conf:2: workerz: unknown setting");
}

TEST_F(ConfigFileTest, CollectsEveryError) {
  std::string path = write(R"(workers = 100;
accept_mode = "fork";
upstreams = (
  { name = "app"; servers = ( { address = "nohost"; } ); }
);
bogus = 1;
)");
  try {
    loadConfigFile(path);
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.messages().size(), 4u) << e.what();
    EXPECT_EQ(e.messages()[0].rfind(path + ":1: workers: ", 0), 0u) << e.messages()[0];
    EXPECT_EQ(e.messages()[1].rfind(path + ":2: accept_mode: ", 0), 0u) << e.messages()[1];
    EXPECT_EQ(e.messages()[2].rfind(path + ":4: upstreams[0].servers[0].address: ", 0), 0u)
        << e.messages()[2];
    EXPECT_EQ(e.messages()[3].rfind(path + ":6: bogus: unknown setting", 0), 0u) << e.messages()[3];
    std::string joined =
        e.messages()[0] + "\n" + e.messages()[1] + "\n" + e.messages()[2] + "\n" + e.messages()[3];
    EXPECT_EQ(std::string(e.what()), joined);
  }
}

TEST_F(ConfigFileTest, SyntaxErrorNamesItsLine) {
  std::vector<std::string> messages = errorsOf("workers = 1;\naccept_mode = ;\nlog = {};\n");
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].rfind(dir_ + "/poolgate.conf:2: syntax error: ", 0), 0u) << messages[0];
  EXPECT_NE(messages[0].find("accept_mode = ;"), std::string::npos) << messages[0];

  messages = errorsOf("workers = 1;\n\nworkers = 2;\n");
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0], dir_ + "/poolgate.conf:3: syntax error: duplicate setting name");
}

TEST_F(ConfigFileTest, MissingFile) {
  std::string path = dir_ + "/absent.conf";
  try {
    loadConfigFile(path);
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.messages().size(), 1u);
    EXPECT_EQ(e.messages()[0], path + ": cannot read: No such file or directory");
  }
  try {
    loadConfigFile(dir_);  // a folder
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.messages()[0], dir_ + ": cannot read: Is a directory");
  }
}

TEST(ConfigText, UsesTheGivenName) {
  try {
    loadConfigText("workers = 1;\nfoo = 2;\n", "inline.conf");
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.messages().size(), 2u) << e.what();
    // In line order, although the missing upstreams are found last.
    EXPECT_EQ(e.messages()[0], "inline.conf:1: upstreams: missing (required)");
    EXPECT_EQ(e.messages()[1], "inline.conf:2: foo: unknown setting");
  }
  Config config = loadConfigText(kMinimal, "inline.conf");
  EXPECT_EQ(config.source_file, "inline.conf");
}

}  // namespace
}  // namespace poolgate
