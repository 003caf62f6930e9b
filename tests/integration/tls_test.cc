// TLS: listeners (certificate choice by SNI, ALPN, session resumption across workers,
// X-Forwarded-Proto https, handshake timeout, plain HTTP to a TLS port, `-t` checks,
// reload) and TLS to upstreams (verification, SNI, resumption, pooling, stats).
//
// Certificates are made at test time with the openssl command line tool: a CA, and
// leaf certificates it signs. Clients are `openssl s_client`, curl and Python's ssl
// module; the TLS upstream is a small Python HTTP/1.1 keep-alive server.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <regex>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

std::string withoutSpaces(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
  return s;
}

// A CA and the certificates it signs, in a temporary folder.
class TestPki {
 public:
  TestPki() {
    run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=poolgate test CA", "-addext",
         "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-keyout", dir_.file("ca.key"), "-out", dir_.file("ca.crt")});
  }

  // name.crt / name.key for subject CN=`cn` and subjectAltName `san` (e.g.
  // "DNS:a.example,DNS:b.example"), signed by the CA. `expired`: valid in 2020 only.
  void issue(const std::string& name, const std::string& cn, const std::string& san,
             bool expired = false) {
    run({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", "/CN=" + cn, "-addext", "subjectAltName=" + san, "-keyout", key(name),
         "-out", dir_.file(name + ".csr")});
    if (!expired) {
      run({"openssl", "x509", "-req", "-in", dir_.file(name + ".csr"), "-CA", ca(), "-CAkey",
           dir_.file("ca.key"), "-set_serial", std::to_string(++serial_), "-days", "2",
           "-copy_extensions", "copy", "-out", cert(name)});
      return;
    }
    // `openssl x509` cannot date a certificate in the past; `openssl ca` can.
    dir_.write("ca.cnf",
               "[ ca ]\ndefault_ca = test_ca\n[ test_ca ]\ndatabase = " + dir_.file("index.txt") +
                   "\nnew_certs_dir = " + dir_.path() + "\nserial = " + dir_.file("serial") +
                   "\ndefault_md = sha256\npolicy = any\ncopy_extensions = copy\n"
                   "unique_subject = no\n[ any ]\ncommonName = supplied\n");
    dir_.write("index.txt", "");
    dir_.write("serial", "7F01\n");
    run({"openssl", "ca", "-batch", "-config", dir_.file("ca.cnf"), "-cert", ca(), "-keyfile",
         dir_.file("ca.key"), "-in", dir_.file(name + ".csr"), "-out", cert(name), "-startdate",
         "20200101000000Z", "-enddate", "20200102000000Z", "-notext"});
  }

  std::string ca() const { return dir_.file("ca.crt"); }
  std::string cert(const std::string& name) const { return dir_.file(name + ".crt"); }
  std::string key(const std::string& name) const { return dir_.file(name + ".key"); }
  const TempDir& dir() const { return dir_; }

 private:
  void run(const std::vector<std::string>& argv) {
    CommandResult r = runCommand(argv, 30s);
    if (r.status.code() != 0) throw HarnessError(argv[1] + " failed: " + r.err);
  }
  TempDir dir_;
  int serial_ = 1000;
};

// A Python client (ssl module) for what s_client does not do well: TLS 1.3 sessions,
// several requests per connection. Prints one JSON object per connection.
constexpr const char* kPythonClient = R"PY(
import json, socket, ssl, sys
port, sni, cafile, connections, per_connection, version = (
    int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(cafile)
if version == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
elif version == "1.3":
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.set_alpn_protocols(["http/1.1"])

def read_response(f):
    status = int(f.readline().split()[1])
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = f.read(length)
    return status, body

session = None
for i in range(connections):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname=sni, session=session)
    f = s.makefile("rb")
    statuses = []
    for j in range(per_connection):
        s.sendall(("GET /py/%d/%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (i, j, sni)).encode())
        statuses.append(read_response(f)[0])
    print(json.dumps({"reused": s.session_reused, "version": s.version(),
                      "alpn": s.selected_alpn_protocol(), "statuses": statuses}), flush=True)
    session = s.session
    f.close()
    s.close()
)PY";

// An HTTP/1.1 keep-alive upstream over TLS (Python ssl + http.server), one thread per
// connection. Prints "port N" once it listens. Answers every GET with 200 and a small
// JSON body.
constexpr const char* kPythonTlsUpstream = R"PY(
import http.server, json, socket, socketserver, ssl, sys
cert, key = sys.argv[1], sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"path": self.path,
                           "sni": getattr(self.connection, "poolgate_sni", None),
                           "proto": self.headers.get("X-Forwarded-Proto")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.path == "/bye":  # then a close_notify on the idle connection
            self.wfile.flush()
            self.connection.settimeout(5)
            try:
                self.connection.unwrap()
            except Exception:
                pass
            self.close_connection = True
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    def get_request(self):
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # head and body are two records
        return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr
    def handle_error(self, request, client_address):
        pass
def remember_sni(sock, name, context):
    sock.poolgate_sni = name
ctx.sni_callback = remember_sni
server = Server(("127.0.0.1", 0), Handler)
print("port %d" % server.server_address[1], flush=True)
server.serve_forever()
)PY";

// A TLS upstream server process, stopped with the object.
class TlsUpstream {
 public:
  TlsUpstream(const std::string& cert, const std::string& key) {
    std::string script = dir_.write("tls_upstream.py", kPythonTlsUpstream);
    process_ = std::make_unique<Process>(std::vector<std::string>{"python3", script, cert, key},
                                         dir_.file("out"), dir_.file("err"));
    static const std::regex kPort(R"(port (\d+))");
    bool up = waitUntil(
        [&] {
          std::smatch m;
          std::string out = readFile(dir_.file("out"));
          if (!std::regex_search(out, m, kPort)) return false;
          port_ = static_cast<uint16_t>(std::stoul(m[1]));
          return true;
        },
        10s);
    if (!up) throw HarnessError("TLS upstream did not start: " + readFile(dir_.file("err")));
  }
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  TempDir dir_;
  std::unique_ptr<Process> process_;
  uint16_t port_ = 0;
};

// The number of the line of `text` that contains `needle` (1-based), or 0.
int lineOf(const std::string& text, const std::string& needle) {
  size_t at = text.find(needle);
  if (at == std::string::npos) return 0;
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(at), '\n'));
}

class Tls : public ProxyTest {
 protected:
  // Certificates: default.example (first, the default), a.example + b.example (one
  // certificate, two names) and *.wild.example; all signed by the test CA.
  void makeCertificates() {
    pki_.issue("default", "default.example", "DNS:default.example");
    pki_.issue("a", "a.example", "DNS:a.example,DNS:b.example");
    pki_.issue("wild", "*.wild.example", "DNS:*.wild.example");
  }

  std::string certificatesSetting(const std::vector<std::string>& names) const {
    std::string list;
    for (const std::string& name : names) {
      if (!list.empty()) list += ", ";
      list += "{ cert = \"" + pki_.cert(name) + "\"; key = \"" + pki_.key(name) + "\"; }";
    }
    return list;
  }

  // The standard proxy config with its listener made a TLS one.
  std::string tlsConfig(int workers, const std::string& tlsExtra = "", std::string_view upstreamExtra = "",
                        std::string_view topExtra = "") {
    std::string config = proxyConfig(upstream_.address(), workers, upstreamExtra, topExtra);
    const std::string plain = "listen = ( { address = \"127.0.0.1:0\"; } );";
    config.replace(config.find(plain), plain.size(),
                   "listen = ( { address = \"127.0.0.1:0\"; tls = { certificates = ( " +
                       certificatesSetting({"default", "a", "wild"}) + " ); " + tlsExtra +
                       " }; } );");
    return config;
  }

  void startTlsProxy(int workers, const std::string& tlsExtra = "", std::string_view topExtra = "") {
    makeCertificates();
    startProxyWithConfig(tlsConfig(workers, tlsExtra, "", topExtra), {});
  }

  std::string port() { return std::to_string(proxy().proxyPort()); }

  // Output of `openssl s_client` connecting with SNI `serverName` (stdin: /dev/null).
  std::string handshake(const std::string& serverName, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {"openssl", "s_client", "-connect", "127.0.0.1:" + port(),
                                     "-servername", serverName, "-alpn", "http/1.1", "-CAfile",
                                     pki_.ca()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    CommandResult r = runCommand(argv);
    return r.out + r.err;
  }

  // The Python client: `connections` connections in a row (each resuming the previous
  // one's session), `perConnection` keep-alive requests on each.
  std::vector<Json> pythonClient(const std::string& sni, int connections, int perConnection,
                                 const std::string& version = "any") {
    std::string script = pki_.dir().write("client.py", kPythonClient);
    CommandResult r = runCommand({"python3", script, port(), sni, pki_.ca(), std::to_string(connections),
                                  std::to_string(perConnection), version},
                                 60s);
    if (r.status.code() != 0) throw HarnessError("python client: " + r.err);
    std::vector<Json> results;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty()) results.push_back(Json::parse(line));
    }
    return results;
  }

  // Accepted connections per worker pid, from /stats.
  std::map<pid_t, uint64_t> acceptedByWorker() {
    std::map<pid_t, uint64_t> accepted;
    const Json s = proxy().stats();
    for (const auto& w : s.at("workers")) accepted[w.at("pid").get<pid_t>()] = w.at("accepted").get<uint64_t>();
    return accepted;
  }

  TestPki pki_;
};

TEST_F(Tls, CertificateChosenBySniWithAlpn) {
  startTlsProxy(1);
  struct Case {
    const char* sni;
    const char* subject;
  };
  for (const Case& c : {Case{"a.example", "subject=CN=a.example"},
                        Case{"b.example", "subject=CN=a.example"},  // the second name of a.example's certificate
                        Case{"A.Example", "subject=CN=a.example"},  // names are case-insensitive
                        Case{"x.wild.example", "subject=CN=*.wild.example"},
                        Case{"y.x.wild.example", "subject=CN=default.example"},  // one label only
                        Case{"wild.example", "subject=CN=default.example"},
                        Case{"unknown.example", "subject=CN=default.example"}}) {
    std::string out = handshake(c.sni);
    EXPECT_NE(withoutSpaces(out).find(c.subject), std::string::npos)
        << "SNI " << c.sni << ":\n" << out;
    EXPECT_NE(out.find("ALPN protocol: http/1.1"), std::string::npos) << out;
  }
  // Without SNI: the first certificate.
  CommandResult r = runCommand({"openssl", "s_client", "-connect", "127.0.0.1:" + port(), "-noservername"});
  EXPECT_NE(withoutSpaces(r.out).find("subject=CN=default.example"), std::string::npos) << r.out;
}

TEST_F(Tls, BothTls12AndTls13AreSpoken) {
  startTlsProxy(1);
  EXPECT_NE(handshake("a.example", {"-tls1_2"}).find("Protocol  : TLSv1.2"), std::string::npos);
  std::string out13 = handshake("a.example", {"-tls1_3"});
  EXPECT_NE(out13.find("TLSv1.3"), std::string::npos) << out13;
  EXPECT_NE(out13.find("Verify return code: 0 (ok)"), std::string::npos) << out13;
}

TEST_F(Tls, MinVersionIsApplied) {
  startTlsProxy(1, "min_version = \"TLSv1.3\";");
  std::string out = handshake("a.example", {"-tls1_2"});
  EXPECT_NE(out.find("alert protocol version"), std::string::npos) << out;
  EXPECT_NE(out.find("Cipher is (NONE)"), std::string::npos) << out;
  EXPECT_NE(handshake("a.example", {"-tls1_3"}).find("TLSv1.3"), std::string::npos);
}

TEST_F(Tls, CiphersAreApplied) {  // TLS 1.2 cipher list
  startTlsProxy(1, "ciphers = \"ECDHE-ECDSA-AES128-GCM-SHA256\";");
  std::string refused = handshake("a.example", {"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"});
  EXPECT_NE(refused.find("Cipher is (NONE)"), std::string::npos) << refused;
  std::string taken = handshake("a.example", {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305"});
  EXPECT_NE(taken.find("Cipher is ECDHE-ECDSA-AES128-GCM-SHA256"), std::string::npos) << taken;
}

TEST_F(Tls, HttpsRequestIsForwardedWithProtoHttps) {
  startTlsProxy(1);
  std::string request =
      "GET /over-tls HTTP/1.1\\r\\nHost: a.example\\r\\nConnection: close\\r\\n\\r\\n";
  CommandResult r = runCommand(
      {"/bin/sh", "-c",
       "printf '" + request + "' | openssl s_client -quiet -ign_eof -servername a.example "
       "-connect 127.0.0.1:" + port()});
  EXPECT_NE(r.out.find("HTTP/1.1 200"), std::string::npos) << r.out << r.err;
  ASSERT_TRUE(upstream_.waitForRequests(1, 2s));
  EXPECT_EQ(upstream_.requests().at(0).header("X-Forwarded-Proto"), "https");
}

TEST_F(Tls, CurlVerifiesAndGetsTheResponse) {
  startTlsProxy(1);
  CommandResult r = runCommand({"curl", "-sS", "--cacert", pki_.ca(), "--resolve",
                                "b.example:" + port() + ":127.0.0.1", "-o", "/dev/null", "-w",
                                "%{http_code} %{http_version}", "https://b.example:" + port() + "/curl"});
  EXPECT_EQ(r.out, "200 1.1") << r.err;
  ASSERT_TRUE(upstream_.waitForRequests(1, 2s));
  EXPECT_EQ(upstream_.requests().at(0).header("X-Forwarded-Proto"), "https");
  EXPECT_EQ(upstream_.requests().at(0).path(), "/curl");
}

TEST_F(Tls, KeepAliveRequestsAndLargeBodiesOverTls) {
  startTlsProxy(1);
  // 50 keep-alive requests on each of 3 connections.
  std::vector<Json> results = pythonClient("a.example", 3, 50);
  ASSERT_EQ(results.size(), 3u);
  for (const Json& r : results) {
    ASSERT_EQ(r.at("statuses").size(), 50u);
    for (const Json& status : r.at("statuses")) EXPECT_EQ(status.get<int>(), 200);
    EXPECT_EQ(r.at("alpn"), "http/1.1");
  }
  // A 4 MiB response and a 3 MiB upload through curl: many TLS records, partial writes.
  TempDir files;
  const std::string body = patternBody(3 << 20, 7);
  std::string upload = files.write("upload", body);
  CommandResult down = runCommand({"curl", "-sS", "--cacert", pki_.ca(), "--resolve",
                                   "a.example:" + port() + ":127.0.0.1", "-o", files.file("down"),
                                   "https://a.example:" + port() + "/size/4194304"},
                                  30s);
  ASSERT_EQ(down.status.code(), 0) << down.err;
  EXPECT_EQ(readFile(files.file("down")), patternBody(4194304, 4194304));
  CommandResult up = runCommand({"curl", "-sS", "--cacert", pki_.ca(), "--resolve",
                                 "a.example:" + port() + ":127.0.0.1", "--data-binary", "@" + upload,
                                 "https://a.example:" + port() + "/upload"},
                                30s);
  ASSERT_EQ(up.status.code(), 0) << up.err;
  Json answer = Json::parse(up.out);
  EXPECT_EQ(answer.at("body_length").get<size_t>(), body.size());
  EXPECT_EQ(answer.at("body_checksum").get<uint64_t>(), checksum(body));
}

TEST_F(Tls, SessionsResumeOnAnyWorker) {
  startTlsProxy(2);
  const std::string session = pki_.dir().file("session.pem");
  std::string first = handshake("a.example", {"-tls1_2", "-sess_out", session});
  ASSERT_NE(first.find("New,"), std::string::npos) << first;
  auto before = acceptedByWorker();
  for (int i = 0; i < 16; ++i) {  // new connections spread over both workers (reuseport)
    std::string out = handshake("a.example", {"-tls1_2", "-sess_in", session});
    EXPECT_NE(out.find("Reused,"), std::string::npos) << "connection " << i << ":\n" << out;
  }
  // Each worker accepted some of them (the /stats request itself adds one).
  auto after = acceptedByWorker();
  ASSERT_EQ(after.size(), 2u);
  for (const auto& [pid, accepted] : after) EXPECT_GE(accepted - before[pid], 2u) << "worker " << pid;
}

TEST_F(Tls, Tls13SessionsResumeOnAnyWorker) {
  startTlsProxy(2);
  auto before = acceptedByWorker();
  std::vector<Json> results = pythonClient("a.example", 16, 1, "1.3");
  ASSERT_EQ(results.size(), 16u);
  EXPECT_FALSE(results[0].at("reused").get<bool>());
  for (size_t i = 1; i < results.size(); ++i) {
    EXPECT_TRUE(results[i].at("reused").get<bool>()) << "connection " << i << ": " << results[i];
    EXPECT_EQ(results[i].at("version"), "TLSv1.3");
  }
  auto after = acceptedByWorker();
  for (const auto& [pid, accepted] : after) EXPECT_GE(accepted - before[pid], 2u) << "worker " << pid;
}

// SIGUSR2 hands the ticket secret to the new master (through an inherited
// pipe): a session from the old master's workers resumes on the new ones.
TEST_F(Tls, SessionsResumeAcrossABinaryUpgrade) {
  startTlsProxy(1, "", "pid_file = \"${DIR}/poolgate.pid\";");
  const std::string pidFile = proxy().dir().file("poolgate.pid");
  const pid_t oldMaster = proxy().pid();
  const std::string session = pki_.dir().file("session.pem");
  ASSERT_NE(handshake("a.example", {"-tls1_2", "-sess_out", session}).find("New,"), std::string::npos);

  proxy().signal(SIGUSR2);
  pid_t newMaster = 0;
  ASSERT_TRUE(waitUntil(
      [&] {
        std::string current = readFile(pidFile);
        if (readFile(pidFile + ".oldbin").empty() || current.empty()) return false;
        newMaster = std::stoi(current);
        return newMaster != oldMaster && proxy().stats().at("master_pid").get<pid_t>() == newMaster;
      },
      10s))
      << "no new master serving after SIGUSR2";
  proxy().signal(SIGQUIT);  // the old master and its workers leave
  ASSERT_TRUE(proxy().waitExit(15s).has_value());

  std::string out = handshake("a.example", {"-tls1_2", "-sess_in", session});
  EXPECT_NE(out.find("Reused,"), std::string::npos) << "the old master's session did not resume:\n" << out;
  ::kill(newMaster, SIGTERM);
  EXPECT_TRUE(waitUntil([&] { return processGone(newMaster); }, 10s));
}

TEST_F(Tls, PlainHttpToTlsPortIsClosedCleanly) {
  startTlsProxy(1);
  HttpClient client(proxy().proxyPort());
  client.send("GET /plain HTTP/1.1\r\nHost: a.example\r\nUser-Agent: plain\r\n\r\n");
  // Nothing comes back but a FIN: no answer, no reset.
  pollfd p{client.fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1);
  char byte;
  ssize_t n = recv(client.fd(), &byte, 1, 0);
  EXPECT_EQ(n, 0) << (n < 0 ? strerror(errno) : "a byte arrived");
  // The proxy goes on serving, and nothing reached the upstream.
  EXPECT_NE(handshake("a.example").find("ALPN protocol: http/1.1"), std::string::npos);
  EXPECT_EQ(upstream_.requestCount(), 0u);
}

TEST_F(Tls, StalledHandshakeTimesOut) {
  startTlsProxy(1, "handshake_timeout = 0.3;");
  HttpClient client(proxy().proxyPort());
  EXPECT_TRUE(client.waitClosed(10s));  // no ClientHello ever: closed
  // Half a ClientHello: closed too.
  HttpClient partial(proxy().proxyPort());
  partial.send(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));
  EXPECT_TRUE(partial.waitClosed(10s));
  EXPECT_TRUE(waitUntil([&] { return sumOverWorkers(proxy().stats(), "/clients/idle") == 0; }, 5s));
}

TEST_F(Tls, AdminListenerStaysPlain) {
  startTlsProxy(1);
  EXPECT_EQ(proxy().admin("/health").status, 200);
}

TEST_F(Tls, HandoffModeWithPlainAndTlsListeners) {
  makeCertificates();
  std::string config = proxyConfig(upstream_.address(), 2, "", "accept_mode = \"handoff\";");
  const std::string plain = "listen = ( { address = \"127.0.0.1:0\"; } );";
  config.replace(config.find(plain), plain.size(),
                 "listen = ( { address = \"127.0.0.1:0\"; }, { address = \"127.0.0.1:0\"; tls = { certificates = ( " +
                     certificatesSetting({"default", "a"}) + " ); }; } );");
  startProxyWithConfig(config, {});
  std::smatch m;
  const std::string log = proxy().log();
  ASSERT_TRUE(std::regex_search(log, m, std::regex(R"(listening on 127\.0\.0\.1:(\d+) \(proxy, tls\))")));
  const std::string tls_port = m[1];
  EXPECT_EQ(httpGet(proxy().proxyPort(), "/plain").status, 200);
  CommandResult r = runCommand({"curl", "-sS", "--cacert", pki_.ca(), "--resolve",
                                "a.example:" + tls_port + ":127.0.0.1", "-o", "/dev/null", "-w", "%{http_code}",
                                "https://a.example:" + tls_port + "/handed"});
  EXPECT_EQ(r.out, "200") << r.err;
  ASSERT_TRUE(upstream_.waitForRequests(2, 2s));
  EXPECT_EQ(upstream_.requests().at(0).header("X-Forwarded-Proto"), "http");
  EXPECT_EQ(upstream_.requests().at(1).header("X-Forwarded-Proto"), "https");
}

// ---- poolgate -t ---------------------------------------------------------------------

class TlsCheck : public ::testing::Test {
 protected:
  // A config with one TLS listener using `cert` and `key`; returns its path.
  std::string writeConfig(const std::string& cert, const std::string& key,
                          const std::string& upstreamTls = "") {
    text_ = "workers = 1;\n"
            "listen = ( { address = \"127.0.0.1:0\";\n"
            "  tls = { certificates = ( { cert = \"" + cert + "\";\n"
            "                             key = \"" + key + "\"; } ); }; } );\n"
            "upstreams = ( { name = \"app\"; servers = ( { address = \"127.0.0.1:1\"; } );\n"
            "  " + upstreamTls + " } );\n";
    return dir_.write("poolgate.conf", text_);
  }
  CommandResult check(const std::string& path) { return runCommand({POOLGATE_BINARY, "-t", "-c", path}); }

  TestPki pki_;
  TempDir dir_;
  std::string text_;
};

TEST_F(TlsCheck, GoodCertificatesPass) {
  pki_.issue("site", "site.example", "DNS:site.example");
  CommandResult r = check(writeConfig(pki_.cert("site"), pki_.key("site")));
  EXPECT_EQ(r.status.code(), 0) << r.err;
  EXPECT_EQ(r.out, "configuration ok\n");
}

TEST_F(TlsCheck, MissingCertificateIsReportedAtItsLine) {
  pki_.issue("site", "site.example", "DNS:site.example");
  const std::string missing = dir_.file("missing.crt");
  std::string path = writeConfig(missing, pki_.key("site"));
  CommandResult r = check(path);
  EXPECT_EQ(r.status.code(), 1);
  const std::string expected = path + ":" + std::to_string(lineOf(text_, "cert =")) +
                               ": listen[0].tls.certificates[0].cert: cannot read " + missing +
                               ": No such file or directory\n";
  EXPECT_EQ(r.err, expected + "configuration has errors\n");
}

TEST_F(TlsCheck, KeyNotMatchingTheCertificateIsReportedAtItsLine) {
  pki_.issue("site", "site.example", "DNS:site.example");
  pki_.issue("other", "other.example", "DNS:other.example");
  std::string path = writeConfig(pki_.cert("site"), pki_.key("other"));
  CommandResult r = check(path);
  EXPECT_EQ(r.status.code(), 1);
  const std::string expected = path + ":" + std::to_string(lineOf(text_, "key =")) +
                               ": listen[0].tls.certificates[0].key: the key " + pki_.key("other") +
                               " does not match the certificate " + pki_.cert("site") + "\n";
  EXPECT_EQ(r.err, expected + "configuration has errors\n");
}

TEST_F(TlsCheck, NotACertificateIsReported) {
  pki_.issue("site", "site.example", "DNS:site.example");
  std::string garbage = dir_.write("garbage.crt", "not a certificate\n");
  CommandResult r = check(writeConfig(garbage, pki_.key("site")));
  EXPECT_EQ(r.status.code(), 1);
  EXPECT_NE(r.err.find("listen[0].tls.certificates[0].cert: cannot load the certificate " + garbage),
            std::string::npos)
      << r.err;
}

TEST_F(TlsCheck, MissingUpstreamCaFileIsReported) {
  pki_.issue("site", "site.example", "DNS:site.example");
  std::string path = writeConfig(pki_.cert("site"), pki_.key("site"),
                                 "tls = { enabled = true; ca_file = \"nowhere.pem\"; };");
  CommandResult r = check(path);
  EXPECT_EQ(r.status.code(), 1);
  EXPECT_NE(r.err.find(path + ":" + std::to_string(lineOf(text_, "ca_file")) +
                       ": upstreams[0].tls.ca_file: cannot read " + dir_.file("nowhere.pem")),
            std::string::npos)
      << r.err;
}

TEST_F(TlsCheck, StartWithABadKeyFails) {
  pki_.issue("site", "site.example", "DNS:site.example");
  pki_.issue("other", "other.example", "DNS:other.example");
  std::string path = writeConfig(pki_.cert("site"), pki_.key("other"));
  CommandResult r = runCommand({POOLGATE_BINARY, "-c", path});
  EXPECT_EQ(r.status.code(), 1);
  EXPECT_NE(r.err.find("listen[0].tls.certificates[0].key: the key"), std::string::npos) << r.err;
}

// ---- reload ------------------------------------------------------------------------------

TEST_F(Tls, ReloadRereadsCertificates) {
  makeCertificates();
  // The listener's only certificate lives in files the test rewrites.
  TempDir live;
  auto install = [&](const std::string& name) {
    live.write("site.crt", readFile(pki_.cert(name)));
    live.write("site.key", readFile(pki_.key(name)));
  };
  install("default");
  std::string config = proxyConfig(upstream_.address(), 1, "", "pid_file = \"${DIR}/pid\";");
  const std::string plain = "listen = ( { address = \"127.0.0.1:0\"; } );";
  config.replace(config.find(plain), plain.size(),
                 "listen = ( { address = \"127.0.0.1:0\"; tls = { certificates = ( { cert = \"" +
                     live.file("site.crt") + "\"; key = \"" + live.file("site.key") + "\"; } ); }; } );");
  startProxyWithConfig(config, {});
  EXPECT_NE(withoutSpaces(handshake("a.example")).find("subject=CN=default.example"), std::string::npos);

  install("a");
  proxy().signal(SIGHUP);
  ASSERT_TRUE(waitUntil([&] { return proxy().stats().at("generation") == 2; }, 10s)) << proxy().logTail();
  ASSERT_TRUE(proxy().waitForRunningWorkers(1));
  ASSERT_TRUE(waitUntil([&] { return withoutSpaces(handshake("a.example")).find("subject=CN=a.example") != std::string::npos; },
                        10s));

  // A key that does not match: the reload fails, generation 2 serves on.
  live.write("site.key", readFile(pki_.key("wild")));
  proxy().signal(SIGHUP);
  ASSERT_TRUE(waitUntil([&] { return proxy().log().find("reload failed") != std::string::npos; }, 10s));
  EXPECT_NE(proxy().log().find("listen[0].tls.certificates[0].key: the key"), std::string::npos);
  EXPECT_EQ(proxy().stats().at("generation"), 2);
  EXPECT_NE(withoutSpaces(handshake("a.example")).find("subject=CN=a.example"), std::string::npos);
}


// ---- TLS to upstreams --------------------------------------------------------------------

class UpstreamTls : public ProxyTest {
 protected:
  // The TLS upstream with a certificate for `san`, signed by the test CA (or expired).
  void startUpstream(const std::string& san, bool expired = false) {
    pki_.issue("upstream", "upstream", san, expired);
    tls_upstream_ = std::make_unique<TlsUpstream>(pki_.cert("upstream"), pki_.key("upstream"));
  }
  // poolgate (plain listener) in front of the TLS upstream; `tls` is the upstream's
  // tls group body.
  void startTlsProxy(const std::string& tls, const std::string& upstreamExtra = "") {
    startProxyWithConfig(proxyConfig(tls_upstream_->address(), 1, "tls = { " + tls + " }; " + upstreamExtra), {});
  }
  std::string caSetting() const { return "enabled = true; ca_file = \"" + pki_.ca() + "\";"; }
  Json server() {
    return proxy().stats().at("workers").at(0).at("upstreams").at(0).at("servers").at(0);
  }
  Json get(const std::string& path) {
    HttpResponse r = httpGet(proxy().proxyPort(), path);
    EXPECT_EQ(r.status, 200) << path << ": " << r.body;
    return r.status == 200 ? r.json() : Json();
  }

  TestPki pki_;
  std::unique_ptr<TlsUpstream> tls_upstream_;
};

// The master's active checks speak TLS to a TLS upstream, verified like requests.
TEST_F(UpstreamTls, ActiveChecksSpeakTls) {
  startUpstream("DNS:localhost,IP:127.0.0.1");
  // (A check times out at its interval: 1 s leaves a TLS handshake in the
  // master room on a machine busy with other builds; 0.2 s did not always.)
  startTlsProxy(caSetting(), "health = { check_path = \"/healthz\"; check_interval = 1.0; };");
  ASSERT_TRUE(waitUntil([&] { return server().at("check") == "passing" && server().at("checks_total").get<int>() >= 2; },
                        10s))
      << server();
  EXPECT_EQ(server().at("check_failures_total"), 0) << server();
  get("/after-checks");
}

TEST_F(UpstreamTls, ActiveCheckFailsVerificationAndTakesTheServerOut) {
  startUpstream("DNS:other.example");  // not the address poolgate checks it against
  startTlsProxy(caSetting(), "health = { check_path = \"/healthz\"; check_interval = 0.2; };");
  ASSERT_TRUE(waitUntil([&] { return server().at("check") == "failing"; }, 10s)) << server();
  EXPECT_FALSE(server().at("healthy").get<bool>());
  EXPECT_NE(proxy().log().find("fails its health check (GET /healthz: TLS handshake:"), std::string::npos)
      << proxy().logTail();
  expectProxyError(httpGet(proxy().proxyPort(), "/while-failing"), 503);
}

TEST_F(UpstreamTls, VerifiedByIpAddressAndPooled) {
  startUpstream("DNS:localhost,IP:127.0.0.1");
  startTlsProxy(caSetting());
  HttpClient client = connect();
  constexpr int kRequests = 5000;
  for (int i = 0; i < kRequests; ++i) {
    HttpResponse r = client.get("/r/" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.body;
    if (i == 0) {
      Json body = r.json();
      EXPECT_EQ(body.at("path"), "/r/0");
      EXPECT_EQ(body.at("proto"), "http");
      EXPECT_TRUE(body.at("sni").is_null());  // an IP address is not sent as SNI
    }
  }
  Json s = server();
  const double opened = s.at("opened_total").get<double>(), reused = s.at("reused_total").get<double>();
  EXPECT_GE(reused / (reused + opened), 0.99) << s;
  EXPECT_EQ(s.at("tls_handshakes_total").get<double>(), opened) << s;
  EXPECT_EQ(s.at("failed_total"), 0) << s;
  EXPECT_GE(proxy().stats().at("totals").at("reuse_ratio").get<double>(), 0.99);
}

TEST_F(UpstreamTls, ServerNameIsSentAndVerified) {
  startUpstream("DNS:app.internal");
  startTlsProxy(caSetting() + " server_name = \"app.internal\";");
  Json body = get("/named");
  EXPECT_EQ(body.value("sni", ""), "app.internal");
}

TEST_F(UpstreamTls, SessionsResumeOnNewConnections) {
  startUpstream("IP:127.0.0.1");
  startTlsProxy(caSetting(), "pool = { max_requests = 1; };");  // a new connection per request
  constexpr int kRequests = 8;
  for (int i = 0; i < kRequests; ++i) get("/again");
  Json s = server();
  EXPECT_EQ(s.at("tls_handshakes_total"), kRequests) << s;
  EXPECT_EQ(s.at("tls_resumed_total"), kRequests - 1) << s;
  HttpResponse metrics = proxy().admin("/metrics");
  EXPECT_NE(metrics.body.find("poolgate_upstream_tls_resumed_total{"), std::string::npos);
}

TEST_F(UpstreamTls, CloseNotifyOnAnIdleConnectionClosesIt) {
  startUpstream("IP:127.0.0.1");
  startTlsProxy(caSetting());
  get("/bye");  // the upstream then sends close_notify on the pooled connection
  ASSERT_TRUE(waitUntil([&] { return server().at("open") == 0; }, 10s)) << server();
  get("/after");
  Json s = server();
  EXPECT_EQ(s.at("opened_total"), 2) << s;
  EXPECT_EQ(s.at("failed_total"), 0) << s;
}

struct VerifyCase {
  const char* name;
  const char* san;
  bool expired;
  bool with_ca;
  const char* reason;
};

class UpstreamTlsVerification : public UpstreamTls, public ::testing::WithParamInterface<VerifyCase> {};

TEST_P(UpstreamTlsVerification, FailureIs502WithTheReasonLogged) {
  const VerifyCase& c = GetParam();
  startUpstream(c.san, c.expired);
  startTlsProxy(c.with_ca ? caSetting() : "enabled = true;");
  HttpResponse r = httpGet(proxy().proxyPort(), "/refused");
  expectProxyError(r, 502);
  EXPECT_TRUE(waitUntil([&] { return proxy().log().find(c.reason) != std::string::npos; }, 5s))
      << "expected \"" << c.reason << "\" in:\n" << proxy().logTail();
  EXPECT_NE(proxy().log().find("TLS handshake failed: certificate verify failed"), std::string::npos);
  // With verify = false the same server is used.
  proxy_.reset();
  startTlsProxy(std::string(c.with_ca ? caSetting() : "enabled = true;") + " verify = false;");
  get("/unverified");
}

INSTANTIATE_TEST_SUITE_P(
    , UpstreamTlsVerification,
    ::testing::Values(VerifyCase{"WrongHost", "DNS:other.example", false, true, "IP address mismatch"},
                      VerifyCase{"Expired", "IP:127.0.0.1", true, true, "certificate has expired"},
                      VerifyCase{"UnknownCa", "IP:127.0.0.1", false, false, "unable to get local issuer certificate"}),
    [](const ::testing::TestParamInfo<VerifyCase>& info) { return std::string(info.param.name); });

TEST_F(UpstreamTls, WrongServerNameFails) {
  startUpstream("DNS:app.internal");
  startTlsProxy(caSetting() + " server_name = \"db.internal\";");
  expectProxyError(httpGet(proxy().proxyPort(), "/x"), 502);
  EXPECT_TRUE(waitUntil([&] { return proxy().log().find("hostname mismatch") != std::string::npos; }, 5s))
      << proxy().logTail();
}

TEST_F(UpstreamTls, HttpsOnBothSides) {
  startUpstream("IP:127.0.0.1");
  pki_.issue("front", "front.example", "DNS:front.example");
  std::string config = proxyConfig(tls_upstream_->address(), 1, "tls = { " + caSetting() + " };");
  const std::string plain = "listen = ( { address = \"127.0.0.1:0\"; } );";
  config.replace(config.find(plain), plain.size(),
                 "listen = ( { address = \"127.0.0.1:0\"; tls = { certificates = ( { cert = \"" +
                     pki_.cert("front") + "\"; key = \"" + pki_.key("front") + "\"; } ); }; } );");
  startProxyWithConfig(config, {});
  const std::string port = std::to_string(proxy().proxyPort());
  CommandResult r = runCommand({"curl", "-sS", "--cacert", pki_.ca(), "--resolve",
                                "front.example:" + port + ":127.0.0.1", "https://front.example:" + port + "/both"});
  ASSERT_EQ(r.status.code(), 0) << r.err;
  Json body = Json::parse(r.out);
  EXPECT_EQ(body.at("path"), "/both");
  EXPECT_EQ(body.at("proto"), "https");
}

}  // namespace
}  // namespace pgtest
