#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>
#include <utility>

extern char** environ;

namespace pgtest {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

namespace {

std::string errnoText(std::string_view what) {
  return std::string(what) + ": " + std::strerror(errno);
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return std::string(s.substr(b, e - b));
}

int pollFor(int fd, short events, Millis timeout) {
  pollfd p{fd, events, 0};
  for (;;) {
    int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw HarnessError(errnoText("poll"));
    return n == 0 ? 0 : p.revents;
  }
}

void setIoTimeouts(int fd, Millis timeout) {
  timeval tv{};
  tv.tv_sec = timeout.count() / 1000;
  tv.tv_usec = (timeout.count() % 1000) * 1000;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Sends everything; the socket's SO_SNDTIMEO bounds each send. Returns false when the
// peer closed or reset, throws on a timeout.
bool sendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE || errno == ECONNRESET) return false;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        throw HarnessError("send: peer did not read for the I/O timeout");
      throw HarnessError(errnoText("send"));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

uint16_t localPortOf(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw HarnessError(errnoText("getsockname"));
  return ntohs(addr.sin_port);
}

sockaddr_in loopback(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// A numeric IPv4 or IPv6 address and a port as a socket address; throws on a bad address.
socklen_t numericAddress(const std::string& host, uint16_t port, sockaddr_storage* out) {
  *out = {};
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    return sizeof(sockaddr_in);
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    return sizeof(sockaddr_in6);
  }
  throw HarnessError("not a numeric IP address: '" + host + "'");
}

uint16_t portOf(const sockaddr_storage& addr) {
  return ntohs(addr.ss_family == AF_INET6
                   ? reinterpret_cast<const sockaddr_in6&>(addr).sin6_port
                   : reinterpret_cast<const sockaddr_in&>(addr).sin_port);
}

const char* reasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

bool bodylessStatus(int status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

// Reads a message body following the framing rules shared by requests and responses,
// handing it to `sink` piece by piece.
Framing readBody(SocketReader& reader, const Headers& headers, bool allowClose,
                 const SocketReader::Sink& sink) {
  std::vector<std::string> te = headerTokens(headers, "Transfer-Encoding");
  if (!te.empty()) {
    if (te.back() != "chunked") throw HarnessError("Transfer-Encoding not ending in chunked");
    reader.readChunked(sink);
    return Framing::kChunked;
  }
  if (auto cl = findHeader(headers, "Content-Length")) {
    char* end = nullptr;
    unsigned long long n = std::strtoull(cl->c_str(), &end, 10);
    if (cl->empty() || *end != '\0') throw HarnessError("bad Content-Length: " + *cl);
    reader.readExact(n, sink);
    return Framing::kContentLength;
  }
  if (allowClose) {
    sink(reader.readToEof());
    return Framing::kClose;
  }
  return Framing::kNone;
}

std::string readBody(SocketReader& reader, const Headers& headers, bool allowClose,
                     Framing* framing) {
  std::string body;
  *framing = readBody(reader, headers, allowClose, [&](std::string_view piece) { body.append(piece); });
  return body;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Waiting

bool waitUntil(const std::function<bool()>& condition, Millis timeout, Millis interval) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    bool ok = false;
    try {
      ok = condition();
    } catch (const std::exception&) {
      ok = false;
    }
    if (ok) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);  // poll interval, not synchronisation
  }
}

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---------------------------------------------------------------------------------------
// Files

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "poolgate-it-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw HarnessError(errnoText("mkdtemp"));
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::file(std::string_view name) const { return path_ + "/" + std::string(name); }

std::string TempDir::write(std::string_view name, std::string_view content) const {
  std::string p = file(name);
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!out) throw HarnessError("cannot write " + p);
  return p;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tailLines(const std::string& text, size_t lines) {
  size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (size_t i = 0; i < lines && pos > 0; ++i) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) return text;
    pos = nl;
    if (i + 1 == lines) return text.substr(pos + 1);
  }
  return text;
}

// ---------------------------------------------------------------------------------------
// Processes

bool ExitStatus::exited() const { return WIFEXITED(raw); }
int ExitStatus::code() const { return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1; }
int ExitStatus::signal() const { return WIFSIGNALED(raw) ? WTERMSIG(raw) : 0; }
std::string ExitStatus::describe() const {
  if (exited()) return "exit " + std::to_string(code());
  if (signal() != 0) return std::string("killed by signal ") + strsignal(signal());
  return "status " + std::to_string(raw);
}

// Children that die with the test process
//
// A test binary killed from outside (ctest's timeout, Ctrl-C, kill -9) runs no destructor,
// and its children are in process groups of their own (so that a poolgate master and its
// workers can be killed together), which Ctrl-C on the terminal does not reach: without
// more, they run on for ever. Two layers, each enough for a plain poolgate:
//
// 1. PR_SET_PDEATHSIG = SIGKILL in every child, set between fork and exec (it survives
//    exec). poolgate's workers set the same on themselves right after the master forks
//    them (Master::runWorker in process/master_supervision.cc, with the getppid() check
//    for a master that died first; the master is single-threaded), so a master killed
//    this way takes its workers along.
//    The trap: the death signal is sent when the *thread* that forked the child ends,
//    not the process. Every spawn of the suite runs on gtest's main thread (test bodies,
//    fixtures, and the constructors of Process, Poolgate, Dnsmasq and the dashboard
//    test's browser; the helper threads of runConcurrently, std::async and TestUpstream
//    only do HTTP), and the main thread ends only with the process. A child spawned from
//    any other thread gets no death signal (a std::async that starts a process would
//    otherwise see it killed as soon as its thread returned) and relies on layer 2 alone.
//
// 2. A guard process, forked at the first spawn, holding one end of a socket pair whose
//    other end only the test process holds (close-on-exec, so no child keeps it). Each
//    spawned child's process group is registered with it. When the test process is gone,
//    however it went, the guard reads EOF and SIGKILLs every registered group that still
//    has a member. This covers what layer 1 misses: processes of the group that are not
//    the test's children, such as the new master a binary upgrade (SIGUSR2) forks — it
//    has no death signal of its own and outlives the old master by design — with its
//    workers, or a browser's zygote and renderers; and spawns from other threads. The
//    guard ignores the terminal's signals (SIGINT, SIGHUP, SIGQUIT, SIGTERM), so that
//    Ctrl-C, which reaches it with the test, does not stop it first. Group ids are
//    recycled (pid_max may be 32768), so the guard forgets a group as soon as it has no
//    member left (checked every 200 ms), long before its number can come round again.
namespace {

[[noreturn]] void childFailed(int errorPipe, int err) {
  ssize_t ignored = ::write(errorPipe, &err, sizeof err);
  (void)ignored;
  ::_exit(127);
}

// Writes "poolgate test guard: ..." to stderr without allocating (the guard is a fork of
// a multithreaded process: only async-signal-safe calls there).
void guardSay(const char* what, pid_t pgid) {
  char buf[160];
  size_t n = 0;
  for (const char* s = "poolgate test guard: "; *s && n < sizeof buf; ++s) buf[n++] = *s;
  for (const char* s = what; *s && n < sizeof buf; ++s) buf[n++] = *s;
  char digits[16];
  size_t d = 0;
  unsigned long v = static_cast<unsigned long>(pgid);
  do {
    digits[d++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && d < sizeof digits);
  while (d > 0 && n < sizeof buf) buf[n++] = digits[--d];
  if (n < sizeof buf) buf[n++] = '\n';
  ssize_t ignored = ::write(2, buf, n);
  (void)ignored;
}

// Reads a decimal number at *p, moving *p past it; -1 when there is none.
long parseNumber(const char** p, const char* end) {
  long v = -1;
  for (; *p < end && **p >= '0' && **p <= '9'; ++*p) v = (v < 0 ? 0 : v * 10) + (**p - '0');
  return v;
}

// Whether a process other than a zombie has process group `pgid`: a scan of /proc with
// system calls only (no opendir: the guard may not allocate). When /proc cannot be read,
// true: better a needless SIGKILL to a group that has ended than a leftover.
bool groupHasLiveMember(pid_t pgid) {
  const int dir = ::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return true;
  alignas(dirent64) char entries[8192];
  bool found = false;
  long n;
  while (!found && (n = ::syscall(SYS_getdents64, dir, entries, sizeof entries)) > 0) {
    for (long off = 0; off < n && !found;) {
      const auto* entry = reinterpret_cast<const dirent64*>(entries + off);
      off += entry->d_reclen;
      const char* name = entry->d_name;
      if (name[0] < '1' || name[0] > '9') continue;
      // "/proc/" NAME "/stat"
      char path[64] = "/proc/";
      size_t len = 6;
      for (const char* c = name; *c != '\0' && len < 40; ++c) path[len++] = *c;
      for (const char* c = "/stat"; *c != '\0'; ++c) path[len++] = *c;
      path[len] = '\0';
      const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;  // gone meanwhile
      char stat[512];
      const ssize_t got = ::read(fd, stat, sizeof stat);
      ::close(fd);
      if (got <= 0) continue;
      // "pid (comm) state ppid pgrp ...": comm may hold spaces and ')'.
      const char* end = stat + got;
      const char* paren = nullptr;
      for (const char* c = stat; c < end; ++c)
        if (*c == ')') paren = c;
      if (paren == nullptr || end - paren < 4) continue;
      const char state = paren[2];
      const char* p = paren + 3;
      if (p < end && *p == ' ') ++p;
      parseNumber(&p, end);  // ppid
      if (p < end && *p == ' ') ++p;
      const long group = parseNumber(&p, end);
      found = group == pgid && state != 'Z' && state != 'X';
    }
  }
  ::close(dir);
  return found;
}

// The guard's life: registrations in, and on EOF a SIGKILL to every group still there.
[[noreturn]] void guardMain(int sock) {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  for (int s : {SIGINT, SIGHUP, SIGQUIT, SIGTERM, SIGPIPE, SIGUSR1, SIGUSR2})
    ::sigaction(s, &ignore, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Nothing of the test process's but stderr (for the message below): a listening
  // socket kept open here would still accept connections after the test closed it.
  if (sock != 3) {
    ::dup2(sock, 3);
    sock = 3;
  }
  ::syscall(SYS_close_range, 4u, ~0u, 0u);
  ::close(0);
  ::close(1);

  static pid_t groups[4096];
  size_t count = 0;
  unsigned char buf[256];
  size_t have = 0;
  for (;;) {
    pollfd p{sock, POLLIN, 0};
    const int ready = ::poll(&p, 1, count > 0 ? 200 : -1);
    // Forget the groups that have ended, before their numbers can be reused.
    size_t kept = 0;
    for (size_t i = 0; i < count; ++i)
      if (::kill(-groups[i], 0) == 0 || errno != ESRCH) groups[kept++] = groups[i];
    count = kept;
    if (ready < 0 && errno != EINTR) break;  // cannot wait: act as if the test had gone
    if (ready <= 0) continue;                 // the 200 ms are up, or EINTR
    const ssize_t n = ::read(sock, buf + have, sizeof buf - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF (or an error): the test process is gone
    have += static_cast<size_t>(n);
    size_t used = 0;
    for (; have - used >= sizeof(int32_t); used += sizeof(int32_t)) {
      int32_t pgid;
      std::memcpy(&pgid, buf + used, sizeof pgid);
      if (pgid > 1 && count < sizeof groups / sizeof groups[0]) groups[count++] = pgid;
    }
    std::memmove(buf, buf + used, have - used);
    have -= used;
  }
  for (size_t i = 0; i < count; ++i) {
    // A group of zombies only (its members just died, not yet reaped) is no leftover.
    if (::kill(-groups[i], 0) != 0 || !groupHasLiveMember(groups[i])) continue;
    ::kill(-groups[i], SIGKILL);
    guardSay("the test process is gone; SIGKILL to its leftover process group ", groups[i]);
  }
  ::_exit(0);
}

class Guard {
 public:
  static Guard& instance() {
    static Guard guard;
    return guard;
  }

  void watch(pid_t pgid) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (fd_ < 0) start();
    const int32_t value = pgid;
    if (::send(fd_, &value, sizeof value, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof value) &&
        !warned_) {
      warned_ = true;
      std::cerr << "poolgate test harness: the guard process is gone ("
                << std::strerror(errno) << "); children may outlive a killed test\n";
    }
  }

 private:
  void start() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      throw HarnessError(errnoText("socketpair (guard)"));
    sigset_t all, old;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old);
    const pid_t pid = ::fork();
    if (pid == 0) guardMain(sv[1]);
    const int err = errno;
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    ::close(sv[1]);
    if (pid < 0) {
      ::close(sv[0]);
      throw HarnessError(std::string("fork (guard): ") + std::strerror(err));
    }
    fd_ = sv[0];  // never closed: its closing, at the process's end, is the signal
  }

  std::mutex mutex_;
  int fd_ = -1;
  bool warned_ = false;
};

// argv[0] as execvp would find it, resolved before the fork (the child may not allocate).
std::string resolveExecutable(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* env = std::getenv("PATH");
  std::string path = env != nullptr ? env : "/usr/local/bin:/usr/bin:/bin";
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  return "";
}

}  // namespace

pid_t spawnGuarded(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty()) throw HarnessError("spawn: empty argv");
  const std::string executable = resolveExecutable(argv[0]);
  if (executable.empty())
    throw HarnessError("spawn " + argv[0] + ": " + std::strerror(ENOENT) + " (PATH)");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int outFlags = O_WRONLY | O_CREAT | (options.truncate ? O_TRUNC : O_APPEND);
  const bool sharedOutput = options.stderrPath == options.stdoutPath;
  const pid_t parent = ::getpid();
  // See above: the death signal only from the main thread, whose end is the process's.
  const bool deathSignal = ::gettid() == parent;

  int errorPipe[2];
  if (::pipe2(errorPipe, O_CLOEXEC) != 0) throw HarnessError(errnoText("pipe2"));
  // No signal handler of ours may run in the child before exec.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The test process has other threads: only async-signal-safe calls from here on.
    const int report = errorPipe[1];
    if (::setpgid(0, 0) != 0) childFailed(report, errno);
    if (deathSignal) {
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) childFailed(report, errno);
      if (::getppid() != parent) ::_exit(127);  // the test died before the prctl
    }
    auto place = [&](const char* path, int flags, int target) {
      const int fd = ::open(path, flags, options.mode);
      if (fd < 0) childFailed(report, errno);
      if (fd != target) {
        if (::dup2(fd, target) < 0) childFailed(report, errno);
        ::close(fd);
      }
    };
    place("/dev/null", O_RDONLY, 0);
    place(options.stdoutPath.c_str(), outFlags, 1);
    if (sharedOutput) {
      if (::dup2(1, 2) < 0) childFailed(report, errno);
    } else {
      place(options.stderrPath.c_str(), outFlags, 2);
    }
    for (const auto& [fd, as] : options.dups)
      if (::dup2(fd, as) < 0) childFailed(report, errno);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int s : {SIGPIPE, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD})
      ::sigaction(s, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(executable.c_str(), args.data(), environ);
    childFailed(report, errno);
  }
  const int forkErr = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::close(errorPipe[1]);
  if (pid < 0) {
    ::close(errorPipe[0]);
    throw HarnessError("spawn " + argv[0] + ": fork: " + std::strerror(forkErr));
  }
  // EOF: the exec succeeded (the pipe closed on it); four bytes: the child's errno.
  int childErr = 0;
  ssize_t n;
  while ((n = ::read(errorPipe[0], &childErr, sizeof childErr)) < 0 && errno == EINTR) {
  }
  ::close(errorPipe[0]);
  if (n > 0) {
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    throw HarnessError("spawn " + argv[0] + ": " + std::strerror(childErr));
  }
  // The exec succeeded, or the test died before the prctl (then it does not matter).
  Guard::instance().watch(pid);
  return pid;
}

std::vector<pid_t> processGroupMembers(pid_t pgid) {
  std::vector<pid_t> members;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(),
                                     [](unsigned char c) { return std::isdigit(c) != 0; }))
      continue;
    // /proc/PID/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces and ')'.
    const std::string stat = readFile(entry.path().string() + "/stat");
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(stat.substr(paren + 1));
    char state = 0;
    long ppid = 0, group = 0;
    if (!(rest >> state >> ppid >> group)) continue;
    if (group == pgid && state != 'Z' && state != 'X') members.push_back(std::stoi(name));
  }
  std::sort(members.begin(), members.end());
  return members;
}

Process::Process(const std::vector<std::string>& argv, const std::string& stdoutPath,
                 const std::string& stderrPath) {
  SpawnOptions options;
  options.stdoutPath = stdoutPath;
  options.stderrPath = stderrPath;
  pid_ = spawnGuarded(argv, options);
}

Process::~Process() {
  if (pid_ > 0 && !status_) killGroup();
}

bool Process::running() {
  if (status_) return false;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = ExitStatus{st};
    return false;
  }
  return true;
}

void Process::signal(int sig) const {
  if (pid_ > 0 && !status_) ::kill(pid_, sig);
}

std::optional<ExitStatus> Process::wait(Millis timeout) {
  waitUntil([&] { return !running(); }, timeout, 5ms);
  return status_;
}

bool Process::groupAlive() const {
  if (pid_ <= 0) return false;
  return ::kill(-pid_, 0) == 0;
}

void Process::killGroup() {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGKILL);
  if (!status_) {
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    status_ = ExitStatus{st};
  }
}

bool processGone(pid_t pid) {
  if (::kill(pid, 0) != 0) return true;
  // A zombie is gone for our purposes; its parent has not reaped it yet.
  std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

CommandResult runCommand(const std::vector<std::string>& argv, Millis timeout) {
  TempDir dir;
  std::string out = dir.file("stdout"), err = dir.file("stderr");
  Process p(argv, out, err);
  auto status = p.wait(timeout);
  if (!status) {
    p.killGroup();
    throw HarnessError(argv[0] + " did not exit within the timeout");
  }
  return CommandResult{*status, readFile(out), readFile(err)};
}

// ---------------------------------------------------------------------------------------
// HTTP basics

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::optional<std::string> findHeader(const Headers& headers, std::string_view name) {
  for (const auto& [n, v] : headers)
    if (iequals(n, name)) return v;
  return std::nullopt;
}

size_t countHeader(const Headers& headers, std::string_view name) {
  return static_cast<size_t>(std::count_if(headers.begin(), headers.end(),
                                           [&](const auto& h) { return iequals(h.first, name); }));
}

std::vector<std::string> headerTokens(const Headers& headers, std::string_view name) {
  std::vector<std::string> tokens;
  for (const auto& [n, v] : headers) {
    if (!iequals(n, name)) continue;
    std::stringstream ss(v);
    std::string token;
    while (std::getline(ss, token, ',')) {
      token = lower(trim(token));
      if (!token.empty()) tokens.push_back(token);
    }
  }
  return tokens;
}

const char* toString(Framing framing) {
  switch (framing) {
    case Framing::kNone: return "none";
    case Framing::kContentLength: return "content-length";
    case Framing::kChunked: return "chunked";
    case Framing::kClose: return "close-delimited";
  }
  return "?";
}

std::string patternBody(size_t size, uint64_t seed) {
  std::string out(size, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  size_t i = 0;
  while (i < size) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    size_t n = std::min<size_t>(8, size - i);
    std::memcpy(out.data() + i, &x, n);
    i += n;
  }
  return out;
}

uint64_t checksum(std::string_view data, uint64_t state) {
  uint64_t h = state;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string chunkedEncode(std::string_view body, size_t chunkSize) {
  std::string out;
  out.reserve(body.size() + body.size() / chunkSize * 12 + 16);
  char line[32];
  for (size_t off = 0; off < body.size(); off += chunkSize) {
    size_t n = std::min(chunkSize, body.size() - off);
    std::snprintf(line, sizeof line, "%zx\r\n", n);
    out += line;
    out.append(body.substr(off, n));
    out += "\r\n";
  }
  out += "0\r\n\r\n";
  return out;
}

std::string serializeRequest(std::string_view method, std::string_view target,
                             const Headers& headers, std::string_view body, Framing framing,
                             std::string_view version) {
  std::string out;
  out.reserve(256 + body.size() + body.size() / 1000);
  out.append(method).append(" ").append(target).append(" ").append(version).append("\r\n");
  if (!findHeader(headers, "Host")) out += "Host: localhost\r\n";
  for (const auto& [n, v] : headers) out.append(n).append(": ").append(v).append("\r\n");
  switch (framing) {
    case Framing::kContentLength:
      out += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
      out.append(body);
      break;
    case Framing::kChunked:
      out += "Transfer-Encoding: chunked\r\n\r\n";
      out += chunkedEncode(body, 64 * 1024);
      break;
    case Framing::kNone:
    case Framing::kClose:
      if (!body.empty()) throw HarnessError("serializeRequest: a body needs a framing");
      out += "\r\n";
      break;
  }
  return out;
}

StartLineAndHeaders parseHead(const std::string& head) {
  StartLineAndHeaders out;
  size_t pos = head.find("\r\n");
  out.startLine = head.substr(0, pos);
  while (pos != std::string::npos) {
    size_t begin = pos + 2;
    size_t end = head.find("\r\n", begin);
    std::string line = head.substr(begin, end == std::string::npos ? end : end - begin);
    pos = end;
    if (line.empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos) throw HarnessError("header line without colon: " + line);
    out.headers.emplace_back(line.substr(0, colon), trim(std::string_view(line).substr(colon + 1)));
  }
  return out;
}

bool SocketReader::waitReadable(Millis timeout) {
  if (hasBuffered()) return true;
  return pollFor(fd_, POLLIN, timeout) != 0;
}

bool SocketReader::fill() {
  if (start_ > 0 && start_ >= buf_.size() / 2) {
    buf_.erase(0, start_);
    start_ = 0;
  }
  if (pollFor(fd_, POLLIN, timeout_) == 0)
    throw HarnessError("read timed out after " + std::to_string(timeout_.count()) + " ms");
  char tmp[64 * 1024];
  for (;;) {
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw HarnessError(errnoText("recv"));
    if (n == 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    bytesRead_ += static_cast<uint64_t>(n);
    if (tap_) tap_(std::string_view(tmp, static_cast<size_t>(n)));
    return true;
  }
}

std::optional<std::string> SocketReader::readHead(size_t maxBytes) {
  size_t searchFrom = start_;
  for (;;) {
    size_t end = buf_.find("\r\n\r\n", searchFrom);
    if (end != std::string::npos) {
      std::string head = buf_.substr(start_, end + 2 - start_);
      start_ = end + 4;
      return head;
    }
    if (buf_.size() - start_ > maxBytes) throw HarnessError("head too large");
    size_t consumedBefore = start_;
    searchFrom = buf_.size() >= 3 ? buf_.size() - 3 : 0;
    bool hadBytes = hasBuffered();
    if (!fill()) {
      if (!hadBytes) return std::nullopt;
      throw HarnessError("connection closed in the middle of a head");
    }
    // fill() may have compacted the buffer.
    if (start_ != consumedBefore) searchFrom = start_;
  }
}

std::string SocketReader::readLine() {
  for (;;) {
    size_t end = buf_.find("\r\n", start_);
    if (end != std::string::npos) {
      std::string line = buf_.substr(start_, end - start_);
      start_ = end + 2;
      return line;
    }
    if (buf_.size() - start_ > 64 * 1024) throw HarnessError("line too long");
    if (!fill()) throw HarnessError("connection closed in the middle of a line");
  }
}

std::string SocketReader::readExact(size_t n) {
  std::string out;
  out.reserve(n);
  readExact(n, [&](std::string_view piece) { out.append(piece); });
  return out;
}

void SocketReader::readExact(size_t n, const Sink& sink) {
  size_t done = 0;
  for (;;) {
    size_t take = std::min(n - done, buf_.size() - start_);
    if (take > 0) sink(std::string_view(buf_).substr(start_, take));
    start_ += take;
    done += take;
    if (done == n) return;
    if (!fill())
      throw HarnessError("connection closed after " + std::to_string(done) + " of " +
                         std::to_string(n) + " body bytes");
  }
}

std::string SocketReader::readChunked() {
  std::string body;
  readChunked([&](std::string_view piece) { body.append(piece); });
  return body;
}

void SocketReader::readChunked(const Sink& sink) {
  for (;;) {
    std::string line = readLine();
    std::string sizeText = line.substr(0, line.find(';'));
    char* end = nullptr;
    unsigned long long size = std::strtoull(sizeText.c_str(), &end, 16);
    if (sizeText.empty() || *end != '\0') throw HarnessError("bad chunk size line: " + line);
    if (size == 0) break;
    readExact(size, sink);
    if (!readLine().empty()) throw HarnessError("chunk not followed by CRLF");
  }
  while (!readLine().empty()) {
  }  // trailers
}

std::string SocketReader::readToEof() {
  while (fill()) {
  }
  std::string out = buf_.substr(start_);
  start_ = buf_.size();
  return out;
}

// ---------------------------------------------------------------------------------------
// HTTP client

bool HttpResponse::connectionClose() const {
  auto tokens = headerTokens(headers, "Connection");
  return std::find(tokens.begin(), tokens.end(), "close") != tokens.end();
}

long long HttpResponse::upstreamConnection() const {
  auto v = header("X-Connection");
  return v ? std::stoll(*v) : -1;
}

HttpClient::HttpClient(uint16_t port, Millis ioTimeout) : HttpClient("127.0.0.1", port, ioTimeout) {}

HttpClient::HttpClient(const std::string& host, uint16_t port, Millis ioTimeout,
                       const std::string& source)
    : timeout_(ioTimeout) {
  sockaddr_storage addr{};
  socklen_t len = numericAddress(host, port, &addr);
  fd_ = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw HarnessError(errnoText("socket"));
  setIoTimeouts(fd_, timeout_);
  if (!source.empty()) {
    sockaddr_storage local{};
    socklen_t localLen = numericAddress(source, 0, &local);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&local), localLen) != 0) {
      std::string why = errnoText("bind to " + source);
      ::close(fd_);
      fd_ = -1;
      throw HarnessError(why);
    }
  }
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    std::string why = errnoText("connect to " + host + " port " + std::to_string(port));
    ::close(fd_);
    fd_ = -1;
    throw HarnessError(why);
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  reader_ = std::make_unique<SocketReader>(fd_, timeout_);
}

HttpClient::~HttpClient() {
  if (fd_ >= 0) ::close(fd_);
}

HttpClient::HttpClient(HttpClient&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), timeout_(other.timeout_),
      reader_(std::move(other.reader_)) {}

HttpClient& HttpClient::operator=(HttpClient&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    timeout_ = other.timeout_;
    reader_ = std::move(other.reader_);
  }
  return *this;
}

void HttpClient::send(std::string_view bytes) {
  if (!sendAll(fd_, bytes)) throw HarnessError("send: connection closed by poolgate");
}

bool HttpClient::trySend(std::string_view bytes) { return sendAll(fd_, bytes); }

std::string HttpClient::readRaw(size_t n) { return reader_->readExact(n); }

HttpResponse HttpClient::read(std::string_view requestMethod, bool skipInterim) {
  for (;;) {
    auto head = reader_->readHead();
    if (!head) throw HarnessError("connection closed before a response");
    auto parsed = parseHead(*head);
    HttpResponse r;
    std::istringstream line(parsed.startLine);
    line >> r.version >> r.status;
    std::getline(line, r.reason);
    r.reason = trim(r.reason);
    if (r.version.rfind("HTTP/1.", 0) != 0 || r.status < 100 || r.status > 999)
      throw HarnessError("bad status line: " + parsed.startLine);
    r.headers = std::move(parsed.headers);
    if (skipInterim && r.status >= 100 && r.status < 200 && r.status != 101) continue;
    if (iequals(requestMethod, "HEAD") || bodylessStatus(r.status)) {
      r.framing = Framing::kNone;
      return r;
    }
    try {
      r.body = readBody(*reader_, r.headers, /*allowClose=*/true, &r.framing);
    } catch (const HarnessError& e) {
      throw HarnessError("reading the body of \"" + parsed.startLine + "\": " + e.what());
    }
    return r;
  }
}

HttpResponse HttpClient::get(std::string_view target, const Headers& headers) {
  return request("GET", target, headers);
}

HttpResponse HttpClient::request(std::string_view method, std::string_view target,
                                 const Headers& headers, std::string_view body,
                                 Framing framing) {
  send(serializeRequest(method, target, headers, body, framing));
  return read(method);
}

bool HttpClient::waitClosed(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    if (pollFor(fd_, POLLIN, left) == 0) return false;
    char tmp[4096];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n == 0) return true;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno == ECONNRESET || errno == EPIPE;
  }
}

void HttpClient::shutdownWrite() { ::shutdown(fd_, SHUT_WR); }

uint16_t HttpClient::localPort() const { return localPortOf(fd_); }

HttpResponse httpGet(uint16_t port, std::string_view target, const Headers& headers) {
  HttpClient client(port);
  Headers h = headers;
  h.emplace_back("Connection", "close");
  return client.get(target, h);
}

// ---------------------------------------------------------------------------------------
// Kernel view and ports

namespace {

// Every ESTABLISHED connection of /proc/net/tcp{,6} whose remote port is `port`:
// `matches` gets the remote address as the kernel prints it (hex, 32-bit words in
// host byte order: 8 digits for IPv4, 32 for IPv6).
size_t countEstablishedTo(uint16_t port, const std::function<bool(const std::string&)>& matches) {
  // The kernel lists the table in pieces, one read at a time; a socket that
  // moves in its hash chain between two reads can be listed twice. Each
  // socket is counted once, by its inode.
  std::set<unsigned long> inodes;
  for (const char* file : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(file);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream ss(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout;
      unsigned long inode = 0;
      ss >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
      size_t colon = remote.rfind(':');
      if (colon == std::string::npos || state != "01") continue;
      if (std::strtoul(remote.c_str() + colon + 1, nullptr, 16) != port) continue;
      if (matches(remote.substr(0, colon))) inodes.insert(inode);
    }
  }
  return inodes.size();
}

}  // namespace

size_t countEstablished(uint16_t port) {
  return countEstablishedTo(port, [](const std::string&) { return true; });
}

size_t countEstablished(const std::string& ip, uint16_t port) {
  in6_addr want{};  // IPv4 as IPv4-mapped IPv6, so that both tables compare alike
  in_addr want4{};
  if (::inet_pton(AF_INET, ip.c_str(), &want4) == 1) {
    want.s6_addr[10] = want.s6_addr[11] = 0xff;
    std::memcpy(&want.s6_addr[12], &want4, 4);
  } else if (::inet_pton(AF_INET6, ip.c_str(), &want) != 1) {
    throw HarnessError("countEstablished: not a numeric IP address: '" + ip + "'");
  }
  return countEstablishedTo(port, [&](const std::string& hex) {
    in6_addr got{};
    if (hex.size() == 8) {
      auto word = static_cast<uint32_t>(std::strtoul(hex.c_str(), nullptr, 16));
      got.s6_addr[10] = got.s6_addr[11] = 0xff;
      std::memcpy(&got.s6_addr[12], &word, 4);
    } else if (hex.size() == 32) {
      for (size_t i = 0; i < 4; ++i) {
        std::string part = hex.substr(i * 8, 8);
        auto word = static_cast<uint32_t>(std::strtoul(part.c_str(), nullptr, 16));
        std::memcpy(&got.s6_addr[i * 4], &word, 4);
      }
    } else {
      return false;
    }
    return std::memcmp(&got, &want, sizeof got) == 0;
  });
}

ReservedPort::ReservedPort() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = loopback(0);
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw HarnessError(errnoText("ReservedPort bind"));
  port_ = localPortOf(fd_);
}

ReservedPort::~ReservedPort() {
  if (fd_ >= 0) ::close(fd_);
}

// ---------------------------------------------------------------------------------------
// Test upstream

std::string UpstreamRequest::path() const { return target.substr(0, target.find('?')); }

std::string UpstreamConnection::headWithExtras(int status, const Headers& headers,
                                               std::optional<size_t> contentLength,
                                               bool chunked) {
  std::string head = "HTTP/1.1 " + std::to_string(status) + " " + reasonPhrase(status) + "\r\n";
  for (const auto& [n, v] : headers) head += n + ": " + v + "\r\n";
  head += "X-Connection: " + std::to_string(id_) + "\r\n";
  if (contentLength) head += "Content-Length: " + std::to_string(*contentLength) + "\r\n";
  if (chunked) head += "Transfer-Encoding: chunked\r\n";
  head += "\r\n";
  auto tokens = headerTokens(headers, "Connection");
  if (std::find(tokens.begin(), tokens.end(), "close") != tokens.end()) close_ = true;
  return head;
}

void UpstreamConnection::respond(int status, std::string_view body, Headers headers) {
  bool head = current_ && current_->method == "HEAD";
  bool noBody = bodylessStatus(status);
  std::optional<size_t> length;
  if (!noBody) length = body.size();
  std::string out = headWithExtras(status, headers, length, false);
  if (!head && !noBody) out.append(body);
  sendRaw(out);
}

void UpstreamConnection::respondChunked(int status, std::string_view body, Headers headers,
                                        size_t chunkSize) {
  std::string out = headWithExtras(status, headers, std::nullopt, true);
  if (!current_ || current_->method != "HEAD") out += chunkedEncode(body, chunkSize);
  sendRaw(out);
}

void UpstreamConnection::respondCloseDelimited(int status, std::string_view body,
                                               Headers headers) {
  headers.emplace_back("Connection", "close");
  std::string out = headWithExtras(status, headers, std::nullopt, false);
  out.append(body);
  sendRaw(out);
}

void UpstreamConnection::sendRaw(std::string_view bytes) {
  responded_ = true;
  if (!sendAll(fd_, bytes)) throw HarnessError("upstream send: poolgate closed the connection");
}

std::string UpstreamConnection::readRaw(size_t n) { return reader_.readExact(n); }

void UpstreamConnection::reset() {
  responded_ = true;
  reset_ = true;
  linger lg{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::shutdown(fd_, SHUT_RD);  // the socket is closed by the serving thread
}

bool UpstreamConnection::pause(Millis duration) {
  std::unique_lock lock(server_.mutex_);
  return !server_.changed_.wait_for(lock, duration, [&] { return server_.stopping(); });
}

UpstreamHandler TestUpstream::holdingHandler(std::shared_ptr<std::atomic<bool>> release,
                                             std::shared_ptr<std::atomic<bool>> holding) {
  return [standard = standardHandler(), release, holding](const UpstreamRequest& req, UpstreamConnection& conn) {
    if (req.path() != "/hold") return standard(req, conn);
    *holding = true;
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (!*release && Clock::now() < deadline)
      if (!conn.pause(std::chrono::milliseconds(10))) return;
    conn.respond(200, "released");
  };
}

UpstreamHandler TestUpstream::standardHandler() {
  return [](const UpstreamRequest& req, UpstreamConnection& conn) {
    std::string path = req.path();
    auto numberAfter = [&](std::string_view prefix) -> std::optional<size_t> {
      if (path.rfind(prefix, 0) != 0) return std::nullopt;
      return static_cast<size_t>(std::stoull(path.substr(prefix.size())));
    };
    if (auto n = numberAfter("/size/")) {
      conn.respond(200, patternBody(*n, *n), {{"Content-Type", "application/octet-stream"}});
      return;
    }
    if (auto n = numberAfter("/chunked/")) {
      conn.respondChunked(200, patternBody(*n, *n),
                          {{"Content-Type", "application/octet-stream"}});
      return;
    }
    if (auto ms = numberAfter("/delay/")) {
      if (!conn.pause(Millis(*ms))) return;
    }
    Json headers = Json::object();
    for (const auto& [n, v] : req.headers) {
      std::string key = lower(n);
      headers[key] = headers.contains(key) ? headers[key].get<std::string>() + ", " + v : v;
    }
    Json body = {{"method", req.method},
                 {"target", req.target},
                 {"conn", conn.id()},
                 {"body_length", req.bodyLength},
                 {"body_checksum", req.bodyChecksum},
                 {"headers", headers}};
    Headers extra{{"Content-Type", "application/json"}};
    if (path == "/close") extra.emplace_back("Connection", "close");
    conn.respond(200, body.dump(), extra);
  };
}

TestUpstream::TestUpstream(UpstreamHandler handler, std::string bindAddress, uint16_t port)
    : bindAddress_(std::move(bindAddress)), handler_(std::move(handler)) {
  sockaddr_storage addr{};
  socklen_t len = numericAddress(bindAddress_, port, &addr);
  listenFd_ = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listenFd_ < 0) throw HarnessError(errnoText("socket"));
  int one = 1;
  ::setsockopt(listenFd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (addr.ss_family == AF_INET6)
    ::setsockopt(listenFd_, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (::bind(listenFd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      ::listen(listenFd_, 512) != 0) {
    std::string why = errnoText("TestUpstream bind/listen " + bindAddress_ + " port " +
                                std::to_string(port));
    ::close(listenFd_);
    throw HarnessError(why);
  }
  sockaddr_storage bound{};
  socklen_t boundLen = sizeof bound;
  if (::getsockname(listenFd_, reinterpret_cast<sockaddr*>(&bound), &boundLen) != 0) {
    std::string why = errnoText("getsockname");
    ::close(listenFd_);
    throw HarnessError(why);
  }
  port_ = portOf(bound);
  acceptThread_ = std::thread([this] { acceptLoop(); });
}

TestUpstream::~TestUpstream() { stop(); }

void TestUpstream::stop() {
  if (stopping_.exchange(true)) return;
  {
    std::lock_guard lock(mutex_);
    changed_.notify_all();
  }
  ::shutdown(listenFd_, SHUT_RDWR);
  if (acceptThread_.joinable()) acceptThread_.join();
  ::close(listenFd_);
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, c] : connections_)
      if (c.open) ::shutdown(c.fd, SHUT_RDWR);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
}

void TestUpstream::acceptLoop() {
  while (!stopping()) {
    if (pollFor(listenFd_, POLLIN, 200ms) == 0) continue;
    int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping()) return;
      continue;
    }
    std::lock_guard lock(mutex_);
    if (stopping()) {
      ::close(fd);
      return;
    }
    uint64_t id = nextId_++;
    connections_[id].fd = fd;
    threads_.emplace_back([this, fd, id] { serve(fd, id); });
    changed_.notify_all();
  }
}

bool TestUpstream::awaitNextRequest(SocketReader& reader, UpstreamConnection& conn) {
  Millis idle;
  bool idleReset;
  {
    std::lock_guard lock(mutex_);
    idle = idleClose_;
    idleReset = idleReset_;
  }
  auto idleStart = Clock::now();
  while (!stopping()) {
    Millis slice = 100ms;  // to notice stop()
    if (idle.count() > 0) {
      auto left = idle - std::chrono::duration_cast<Millis>(Clock::now() - idleStart);
      if (left.count() <= 0) {
        if (idleReset) conn.reset();
        return false;
      }
      slice = std::min(slice, left);
    }
    if (reader.waitReadable(slice)) return true;
  }
  return false;
}

// Bodies up to this size are kept in UpstreamRequest::body; larger ones are only counted
// and hashed.
constexpr size_t kKeptBody = 64 * 1024;

std::optional<UpstreamRequest> TestUpstream::readRequest(SocketReader& reader, int fd,
                                                         uint64_t id, size_t index, bool withBody) {
  auto head = reader.readHead();
  if (!head) return std::nullopt;
  auto parsed = parseHead(*head);
  UpstreamRequest req;
  req.connection = id;
  req.indexOnConnection = index;
  std::istringstream line(parsed.startLine);
  line >> req.method >> req.target >> req.version;
  req.headers = std::move(parsed.headers);
  auto expect = req.header("Expect");
  if (expect && iequals(*expect, "100-continue") &&
      (req.header("Content-Length") || req.header("Transfer-Encoding")))
    sendAll(fd, "HTTP/1.1 100 Continue\r\n\r\n");
  req.bodyChecksum = checksum({});
  if (withBody) {
    Framing framing = readBody(reader, req.headers, /*allowClose=*/false, [&](std::string_view piece) {
      req.bodyLength += piece.size();
      req.bodyChecksum = checksum(piece, req.bodyChecksum);
      if (req.bodyLength <= kKeptBody) req.body.append(piece);
      else req.body.clear();
    });
    req.chunked = framing == Framing::kChunked;
  } else {
    req.chunked = !headerTokens(req.headers, "Transfer-Encoding").empty();
  }
  return req;
}

void TestUpstream::serve(int fd, uint64_t id) {
  setIoTimeouts(fd, 30s);
  SocketReader reader(fd, kIoTimeout, [this, id](std::string_view bytes) {
    std::lock_guard lock(mutex_);
    bytesReceived_ += bytes.size();
    constexpr size_t kRawCap = 4 << 20;
    std::string& raw = connections_[id].raw;
    if (raw.size() < kRawCap) raw.append(bytes.substr(0, kRawCap - raw.size()));
  });
  UpstreamConnection conn(*this, fd, id, reader);
  bool byPeer = false;
  try {
    for (size_t index = 0; awaitNextRequest(reader, conn); ++index) {
      bool early = false;
      {
        std::lock_guard lock(mutex_);
        early = answerBeforeBody_;
      }
      std::optional<UpstreamRequest> req = readRequest(reader, fd, id, index, !early);
      if (!req) {
        byPeer = true;  // clean EOF between requests
        break;
      }
      record(*req);
      UpstreamHandler handler;
      {
        std::lock_guard lock(mutex_);
        handler = handler_;
      }
      conn.current_ = &*req;
      conn.responded_ = false;
      handler(*req, conn);
      if (!conn.responded_ && !stopping()) conn.respond(200, "ok\n");
      if (early && !conn.close_ && !conn.reset_)
        readBody(reader, req->headers, /*allowClose=*/false, [](std::string_view) {});  // dropped
      conn.current_ = nullptr;
      if (conn.close_ || conn.reset_ || stopping()) break;
    }
  } catch (const std::exception& e) {
    if (!stopping()) {
      // Mid-message: worth reporting, even when it is the peer that went away.
      std::string what = e.what();
      byPeer = what.find("closed") != std::string::npos || what.find("reset") != std::string::npos;
      recordError("connection " + std::to_string(id) + ": " + what);
    }
  }
  finishConnection(id, byPeer);
}

void TestUpstream::finishConnection(uint64_t id, bool byPeer) {
  std::lock_guard lock(mutex_);
  auto& c = connections_[id];
  ::close(c.fd);
  c.open = false;
  c.closedByPeer = byPeer;
  changed_.notify_all();
}

void TestUpstream::record(const UpstreamRequest& request) {
  std::lock_guard lock(mutex_);
  requests_.push_back(request);
  changed_.notify_all();
}

void TestUpstream::recordError(const std::string& what) {
  std::lock_guard lock(mutex_);
  errors_.push_back(what);
}

void TestUpstream::setHandler(UpstreamHandler handler) {
  std::lock_guard lock(mutex_);
  handler_ = std::move(handler);
}

void TestUpstream::answerBeforeBody(bool on) {
  std::lock_guard lock(mutex_);
  answerBeforeBody_ = on;
}

void TestUpstream::closeIdleAfter(Millis idle, bool withReset) {
  std::lock_guard lock(mutex_);
  idleClose_ = idle;
  idleReset_ = withReset;
}

std::vector<UpstreamRequest> TestUpstream::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

size_t TestUpstream::requestCount() const {
  std::lock_guard lock(mutex_);
  return requests_.size();
}

size_t TestUpstream::connectionCount() const {
  std::lock_guard lock(mutex_);
  return connections_.size();
}

uint64_t TestUpstream::bytesReceived() const {
  std::lock_guard lock(mutex_);
  return bytesReceived_;
}

std::string TestUpstream::rawReceived() const {
  std::lock_guard lock(mutex_);
  std::string all;
  for (const auto& [id, c] : connections_) all += c.raw;
  return all;
}

std::vector<std::string> TestUpstream::errors() const {
  std::lock_guard lock(mutex_);
  return errors_;
}

bool TestUpstream::waitForRequests(size_t n, Millis timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
}

bool TestUpstream::waitClosedByPeer(uint64_t id, Millis timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] {
    auto it = connections_.find(id);
    return it != connections_.end() && !it->second.open && it->second.closedByPeer;
  });
}

// ---------------------------------------------------------------------------------------
// DNS

namespace {

void putU16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xff));
}

uint16_t getU16(const std::string& in, size_t pos) {
  if (pos + 2 > in.size()) throw HarnessError("DNS answer truncated");
  return static_cast<uint16_t>((static_cast<uint8_t>(in[pos]) << 8) |
                               static_cast<uint8_t>(in[pos + 1]));
}

uint32_t getU32(const std::string& in, size_t pos) {
  return (static_cast<uint32_t>(getU16(in, pos)) << 16) | getU16(in, pos + 2);
}

// Skips a (possibly compressed) name; returns the position after it.
size_t skipName(const std::string& in, size_t pos) {
  for (;;) {
    if (pos >= in.size()) throw HarnessError("DNS answer truncated in a name");
    auto len = static_cast<uint8_t>(in[pos]);
    if (len == 0) return pos + 1;
    if ((len & 0xc0) == 0xc0) return pos + 2;  // a pointer ends the name
    if ((len & 0xc0) != 0) throw HarnessError("DNS answer: bad label");
    pos += 1 + len;
  }
}

}  // namespace

DnsAnswer dnsQuery(uint16_t port, const std::string& name, bool aaaa, Millis timeout) {
  static std::atomic<uint16_t> nextId{0x5a00};
  const uint16_t id = nextId++;
  const uint16_t type = aaaa ? 28 : 1;
  std::string query;
  putU16(query, id);
  putU16(query, 0x0100);  // standard query, recursion desired
  putU16(query, 1);       // one question
  putU16(query, 0);
  putU16(query, 0);
  putU16(query, 0);
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    size_t len = dot - start;
    if (len == 0 && dot == name.size()) break;  // trailing dot
    if (len == 0 || len > 63) throw HarnessError("dnsQuery: bad name '" + name + "'");
    query.push_back(static_cast<char>(len));
    query.append(name, start, len);
    start = dot + 1;
  }
  query.push_back('\0');
  putU16(query, type);
  putU16(query, 1);  // class IN

  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw HarnessError(errnoText("socket"));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  sockaddr_in addr = loopback(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw HarnessError(errnoText("dnsQuery connect"));
  if (::send(fd, query.data(), query.size(), 0) != static_cast<ssize_t>(query.size()))
    throw HarnessError(errnoText("dnsQuery send"));

  const auto deadline = Clock::now() + timeout;
  std::string in(4096, '\0');
  for (;;) {
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    if (left.count() <= 0 || pollFor(fd, POLLIN, left) == 0)
      throw HarnessError("dnsQuery " + name + ": no answer from 127.0.0.1:" +
                         std::to_string(port) + " within " + std::to_string(timeout.count()) +
                         " ms");
    ssize_t n = ::recv(fd, in.data(), in.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw HarnessError(errnoText("dnsQuery recv from 127.0.0.1:" + std::to_string(port)));
    }
    std::string msg = in.substr(0, static_cast<size_t>(n));
    if (msg.size() < 12 || getU16(msg, 0) != id || (getU16(msg, 2) & 0x8000) == 0) continue;

    DnsAnswer answer;
    answer.rcode = getU16(msg, 2) & 0x000f;
    size_t questions = getU16(msg, 4), answers = getU16(msg, 6);
    size_t pos = 12;
    for (size_t i = 0; i < questions; ++i) pos = skipName(msg, pos) + 4;
    bool first = true;
    for (size_t i = 0; i < answers; ++i) {
      pos = skipName(msg, pos);
      uint16_t rrType = getU16(msg, pos), rrClass = getU16(msg, pos + 2);
      uint32_t ttl = getU32(msg, pos + 4);
      uint16_t rdLength = getU16(msg, pos + 8);
      pos += 10;
      if (pos + rdLength > msg.size()) throw HarnessError("DNS answer truncated in a record");
      if (rrClass == 1 && rrType == type && rdLength == (aaaa ? 16 : 4)) {
        char text[INET6_ADDRSTRLEN] = {};
        ::inet_ntop(aaaa ? AF_INET6 : AF_INET, msg.data() + pos, text, sizeof text);
        answer.addresses.emplace_back(text);
        answer.ttl = first ? ttl : std::min(answer.ttl, ttl);
        first = false;
      }
      pos += rdLength;
    }
    std::sort(answer.addresses.begin(), answer.addresses.end());
    return answer;
  }
}

std::string Dnsmasq::binary() {
  std::vector<std::string> candidates;
  if (const char* path = std::getenv("PATH")) {
    std::istringstream dirs(path);
    std::string dir;
    while (std::getline(dirs, dir, ':'))
      if (!dir.empty()) candidates.push_back(dir + "/dnsmasq");
  }
  candidates.insert(candidates.end(), {"/usr/sbin/dnsmasq", "/sbin/dnsmasq"});
  for (const auto& c : candidates)
    if (::access(c.c_str(), X_OK) == 0) return c;
  return {};
}

Dnsmasq::Dnsmasq(const Records& records, int ttlSeconds)
    : hostsPath_(dir_.file("hosts")), logPath_(dir_.file("dnsmasq.log")), ttl_(ttlSeconds),
      records_(records) {
  const std::string exe = binary();
  if (exe.empty())
    throw HarnessError("dnsmasq is not installed (Debian package dnsmasq-base; "
                       "tools/install-deps installs it)");
  writeHosts(records_);

  // A port free for both UDP and TCP on 127.0.0.1. Another process may take it before
  // dnsmasq binds it: then dnsmasq exits at once, and we try another.
  auto pickPort = []() -> uint16_t {
    for (int attempt = 0; attempt < 20; ++attempt) {
      int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr = loopback(0);
      if (udp < 0 || ::bind(udp, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        if (udp >= 0) ::close(udp);
        throw HarnessError(errnoText("Dnsmasq: bind UDP"));
      }
      uint16_t port = localPortOf(udp);
      int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      addr = loopback(port);
      bool ok = tcp >= 0 && ::bind(tcp, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
      if (tcp >= 0) ::close(tcp);
      ::close(udp);
      if (ok) return port;
    }
    throw HarnessError("Dnsmasq: found no port free for both UDP and TCP");
  };

  std::string lastFailure;
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = pickPort();
    std::vector<std::string> argv = {
        exe,
        "--keep-in-foreground",
        "--conf-file=/dev/null",  // no system configuration
        "--no-resolv",            // no upstream servers from /etc/resolv.conf...
        "--no-poll",
        "--no-hosts",             // ...and no /etc/hosts
        "--local=/#/",            // every name not in the hosts file: NXDOMAIN, not REFUSED
        "--no-negcache",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--port=" + std::to_string(port_),
        "--addn-hosts=" + hostsPath_,
        "--local-ttl=" + std::to_string(ttl_),
        "--pid-file=" + dir_.file("dnsmasq.pid"),
        "--log-facility=-",  // stderr, i.e. the log file
        "--log-queries",
    };
    // As root dnsmasq would drop to `nobody`, which cannot read our private temp dir.
    if (::geteuid() == 0) argv.push_back("--user=root");
    process_ = std::make_unique<Process>(argv, logPath_, logPath_);
    bool ready = waitUntil(
        [&] {
          if (!process_->running()) return true;
          return dnsQuery(port_, "ready.invalid", false, 200ms).rcode >= 0;
        },
        5s, 20ms);
    if (ready && process_->running()) return;
    lastFailure = process_->running() ? "no answer within 5 s"
                                      : "exited (" + process_->wait(0ms)->describe() + ")";
    process_->killGroup();
  }
  throw HarnessError("dnsmasq did not start on 127.0.0.1 (" + lastFailure +
                     ")\n---- dnsmasq log ----\n" + tailLines(log(), 30));
}

Dnsmasq::~Dnsmasq() {
  if (::testing::Test::HasFailure())
    std::cerr << "---- dnsmasq log tail (port " << port_ << ") ----\n"
              << tailLines(log(), 30) << "\n----\n";
  stop();
}

void Dnsmasq::stop() {
  if (process_ && process_->running()) process_->killGroup();
}

void Dnsmasq::writeHosts(const Records& records) const {
  std::string text = "# written by the poolgate test harness\n";
  for (const auto& [name, addresses] : records)
    for (const auto& address : addresses) text += address + " " + name + "\n";
  // Written aside and renamed, so that dnsmasq never reads half a file.
  std::string tmp = dir_.write("hosts.new", text);
  if (::rename(tmp.c_str(), hostsPath_.c_str()) != 0)
    throw HarnessError(errnoText("rename " + tmp));
}

bool Dnsmasq::answers(const Records& want, const Records& gone) const {
  for (const auto& [name, addresses] : want) {
    std::vector<std::string> v4, v6;
    for (const auto& a : addresses) (a.find(':') == std::string::npos ? v4 : v6).push_back(a);
    std::sort(v4.begin(), v4.end());
    std::sort(v6.begin(), v6.end());
    DnsAnswer a = dnsQuery(port_, name, false, 500ms);
    DnsAnswer aaaa = dnsQuery(port_, name, true, 500ms);
    bool known = !addresses.empty();
    if (known && (a.rcode != 0 || aaaa.rcode != 0)) return false;
    if (!known && a.rcode != 3) return false;
    if (a.addresses != v4 || aaaa.addresses != v6) return false;
  }
  for (const auto& [name, addresses] : gone)
    if (!want.contains(name) && dnsQuery(port_, name, false, 500ms).rcode != 3) return false;
  return true;
}

void Dnsmasq::setRecords(const Records& records) {
  if (!running()) throw HarnessError("Dnsmasq::setRecords: dnsmasq is not running");
  Records previous = std::exchange(records_, records);
  writeHosts(records_);
  process_->signal(SIGHUP);  // re-reads the addn-hosts file and clears the cache
  if (!waitUntil([&] { return answers(records_, previous); }, 5s, 20ms)) {
    std::string got;
    for (const auto& [name, addresses] : records_) {
      try {
        DnsAnswer a = dnsQuery(port_, name, false, 500ms);
        got += " " + name + ": rcode " + std::to_string(a.rcode) + " [";
        for (const auto& x : a.addresses) got += " " + x;
        got += " ]";
      } catch (const std::exception& e) {
        got += " " + name + ": " + e.what();
      }
    }
    throw HarnessError("dnsmasq did not answer the new records within 5 s after SIGHUP:" + got +
                       "\n---- dnsmasq log ----\n" + tailLines(log(), 30));
  }
}

// ---------------------------------------------------------------------------------------
// The demo upstream

DemoUpstream::DemoUpstream(int workers) {
  const std::string out = dir_.file("demo.log");
  process_ = std::make_unique<Process>(
      std::vector<std::string>{DEMO_UPSTREAM_BINARY, "--listen", "127.0.0.1:0", "--workers",
                               std::to_string(workers)},
      out, out);
  static const std::regex kListening(R"(demo-upstream listening on ([0-9.]+):(\d+))");
  const bool ready = waitUntil(
      [&] {
        const std::string text = readFile(out);
        std::smatch m;
        if (!std::regex_search(text, m, kListening)) return false;
        address_ = m[1].str() + ":" + m[2].str();
        port_ = static_cast<uint16_t>(std::stoul(m[2].str()));
        return true;
      },
      kStartTimeout);
  if (!ready) throw HarnessError("demo-upstream did not report its port; output:\n" + readFile(out));
}

DemoUpstream::~DemoUpstream() {
  process_->signal(SIGTERM);
  if (!process_->wait(5s)) process_->killGroup();
  process_->killGroup();  // reaps; also ends any worker left behind
}

// ---------------------------------------------------------------------------------------
// Certificates

void makeSelfSignedCertificate(const std::string& commonName, const std::string& altNames,
                               const std::string& keyPath, const std::string& certPath) {
  CommandResult r = runCommand({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                "-nodes", "-days", "2", "-subj", "/CN=" + commonName, "-addext",
                                "subjectAltName=" + altNames, "-keyout", keyPath, "-out", certPath},
                               30s);
  if (r.status.code() != 0) throw HarnessError("openssl req -x509 failed: " + r.err);
}

// ---------------------------------------------------------------------------------------
// poolgate

std::string proxyConfig(const std::string& upstreamAddress, int workers,
                        std::string_view upstreamExtra, std::string_view topExtra) {
  std::string c;
  c += "workers = " + std::to_string(workers) + ";\n";
  c += "listen = ( { address = \"127.0.0.1:0\"; } );\n";
  c += "admin = { address = \"127.0.0.1:0\"; };\n";
  c += std::string(topExtra) + "\n";
  c += "upstreams = ( {\n  name = \"app\";\n  servers = ( { address = \"" + upstreamAddress +
       "\"; } );\n  " + std::string(upstreamExtra) + "\n} );\n";
  return c;
}

std::string substitute(std::string text, const std::map<std::string, std::string>& vars) {
  size_t pos = 0;
  while ((pos = text.find("${", pos)) != std::string::npos) {
    size_t end = text.find('}', pos);
    if (end == std::string::npos) throw HarnessError("unterminated ${ in config template");
    std::string name = text.substr(pos + 2, end - pos - 2);
    auto it = vars.find(name);
    if (it == vars.end()) throw HarnessError("config template: unknown ${" + name + "}");
    text.replace(pos, end + 1 - pos, it->second);
    pos += it->second.size();
  }
  return text;
}

Poolgate::Poolgate(const std::string& configTemplate,
                   const std::map<std::string, std::string>& vars) {
  std::map<std::string, std::string> all = vars;
  all.emplace("DIR", dir_.path());
  std::string config = substitute(configTemplate, all);
  configPath_ = dir_.write("poolgate.conf", config);
  logPath_ = dir_.file("poolgate.log");
  std::smatch m;
  static const std::regex kWorkers(R"((^|\n)\s*workers\s*=\s*(\d+)\s*;)");
  if (std::regex_search(config, m, kWorkers) && std::stoul(m[2]) > 0)
    expectedWorkers_ = std::stoul(m[2]);
  else
    expectedWorkers_ = std::max(1u, std::thread::hardware_concurrency());
}

Poolgate::~Poolgate() {
  if (running()) {
    auto status = stop(SIGTERM);
    EXPECT_TRUE(status.exited() && status.code() == 0)
        << "poolgate stopped with " << status.describe();
  }
  // The master replaces a crashed worker, and clients of the other workers
  // may never notice: a crash fails the test whatever else it checked. (A
  // worker a test kills on purpose dies of SIGKILL or SIGTERM, not of these.)
  const std::string text = log();
  for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL}) {
    const std::string line = "killed by signal " + std::to_string(sig) + "\n";
    EXPECT_EQ(text.find(line), std::string::npos) << "poolgate crashed: " << line;
  }
  for (const char* report : {"ERROR: AddressSanitizer", "runtime error:"}) {
    EXPECT_EQ(text.find(report), std::string::npos) << "poolgate crashed: a sanitizer report in its log";
  }
  if (::testing::Test::HasFailure()) {
    std::cerr << "---- poolgate log tail (" << logPath_ << ") ----\n"
              << logTail() << "\n---- config (" << configPath_ << ") ----\n"
              << readFile(configPath_) << "----\n";
  }
}

void Poolgate::start(const std::vector<std::string>& launcher) {
  startListening(launcher);
  auto fail = [&](const std::string& why) {
    throw HarnessError("poolgate start: " + why + "\n---- log tail ----\n" + logTail());
  };
  if (!waitUntil([&] { return admin("/health").status == 200; }, kStartTimeout))
    fail("/health did not answer 200");
  if (!waitForRunningWorkers(expectedWorkers_))
    fail("/stats did not list " + std::to_string(expectedWorkers_) + " running workers");
}

void Poolgate::startListening(const std::vector<std::string>& launcher) {
  std::vector<std::string> argv = launcher;
  argv.insert(argv.end(), {POOLGATE_BINARY, "-c", configPath_});
  process_ = std::make_unique<Process>(argv, logPath_, logPath_);
  auto fail = [&](const std::string& why) {
    throw HarnessError("poolgate start: " + why + "\n---- log tail ----\n" + logTail());
  };

  // "(proxy)", or e.g. "(proxy, tls)" for a TLS listener.
  static const std::regex kProxy(R"(listening on 127\.0\.0\.1:(\d+) \(proxy[^)]*\))");
  static const std::regex kAdmin(R"(listening on 127\.0\.0\.1:(\d+) \(admin\))");
  bool logged = waitUntil(
      [&] {
        if (!process_->running()) return true;
        std::string text = log();
        std::smatch p, a;
        if (!std::regex_search(text, p, kProxy) || !std::regex_search(text, a, kAdmin))
          return false;
        proxyPort_ = static_cast<uint16_t>(std::stoul(p[1]));
        adminPort_ = static_cast<uint16_t>(std::stoul(a[1]));
        return true;
      },
      kStartTimeout);
  if (!process_->running())
    fail("exited early (" + process_->wait(0ms)->describe() + ")");
  if (!logged) fail("no 'listening on ... (proxy)' and '(admin)' lines in the log");
}

HttpResponse Poolgate::admin(std::string_view path) const { return httpGet(adminPort_, path); }

Json Poolgate::stats() const {
  HttpResponse r = admin("/stats");
  if (r.status != 200) throw HarnessError("/stats answered " + std::to_string(r.status));
  return Json::parse(r.body);
}

std::vector<pid_t> Poolgate::runningWorkerPids() const {
  std::vector<pid_t> pids;
  const Json s = stats();  // not `stats().at(...)` in the loop: the temporary would dangle
  for (const auto& w : s.at("workers"))
    if (w.at("state") == "running") pids.push_back(w.at("pid").get<pid_t>());
  return pids;
}

bool Poolgate::waitForRunningWorkers(size_t n, Millis timeout) const {
  return waitUntil(
      [&] {
        Json s = stats();
        size_t running = 0;
        for (const auto& w : s.at("workers")) {
          if (w.at("state") != "running") return false;
          ++running;
        }
        return running == n;
      },
      timeout, 20ms);
}

void Poolgate::signal(int sig) const {
  if (process_) process_->signal(sig);
}

bool Poolgate::running() const { return process_ && process_->running(); }

std::optional<ExitStatus> Poolgate::waitExit(Millis timeout) {
  if (!process_) return std::nullopt;
  return process_->wait(timeout);
}

ExitStatus Poolgate::stop(int sig, Millis timeout) {
  if (!process_) throw HarnessError("poolgate was not started");
  process_->signal(sig);
  auto status = process_->wait(timeout);
  if (!status) {
    ADD_FAILURE() << "poolgate did not exit within " << timeout.count() << " ms after signal "
                  << sig << "; killing its process group";
    process_->killGroup();
    return *process_->wait(0ms);
  }
  // Workers must not outlive the master.
  if (!waitUntil([&] { return !process_->groupAlive(); }, 2s)) {
    ADD_FAILURE() << "worker processes still alive 2 s after the master exited";
    process_->killGroup();
  }
  return *status;
}

void expectProxyError(const HttpResponse& r, int status) {
  EXPECT_EQ(r.status, status) << r.body.substr(0, 200);
  auto type = r.header("Content-Type");
  EXPECT_TRUE(type && type->rfind("text/plain", 0) == 0)
      << "Content-Type: " << type.value_or("(none)");
  EXPECT_FALSE(r.body.empty()) << "error response without a body";
}

uint64_t sumOverWorkers(const Json& stats, const std::string& pointer) {
  uint64_t sum = 0;
  Json::json_pointer p(pointer);
  for (const auto& w : stats.at("workers")) sum += w.at(p).get<uint64_t>();
  return sum;
}

double metricSum(const std::string& text, const std::string& name) {
  const std::regex sample("^" + name + "(\\{[^}]*\\})? ([0-9.e+-]+)$", std::regex::multiline);
  double sum = 0;
  bool found = false;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), sample); it != std::sregex_iterator(); ++it) {
    sum += std::stod((*it)[2].str());
    found = true;
  }
  if (!found) ADD_FAILURE() << "no sample of " << name;
  return sum;
}

std::vector<std::string> runConcurrently(size_t n, const std::function<void(size_t)>& body) {
  std::mutex m;
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (size_t i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      try {
        body(i);
      } catch (const std::exception& e) {
        std::lock_guard lock(m);
        errors.push_back("thread " + std::to_string(i) + ": " + e.what());
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

// ---------------------------------------------------------------------------------------
// Fixture

void ProxyTest::TearDown() {
  if (!HasFailure()) return;
  std::cerr << "---- test upstream: " << upstream_.connectionCount() << " connection(s), "
            << upstream_.requestCount() << " request(s) ----\n";
  for (const auto& r : upstream_.requests())
    std::cerr << "  conn " << r.connection << " #" << r.indexOnConnection << ": " << r.method
              << " " << r.target << " body " << r.bodyLength << (r.chunked ? " chunked" : "")
              << "\n";
  for (const auto& e : upstream_.errors()) std::cerr << "  error: " << e << "\n";
  std::string raw = upstream_.rawReceived().substr(0, 600);
  for (char& ch : raw)
    if (ch != '\n' && !std::isprint(static_cast<unsigned char>(ch))) ch = '.';
  std::cerr << "  first bytes received:\n" << raw << "\n";
}

void ProxyTest::expectNothingForwardedBefore(std::string_view marker) {
  HttpClient barrier = connect();
  ASSERT_EQ(barrier.get("/barrier").status, 200);
  auto requests = upstream_.requests();
  ASSERT_EQ(requests.size(), 1u) << "the upstream received more than the barrier request";
  EXPECT_EQ(requests[0].target, "/barrier");
  EXPECT_EQ(upstream_.rawReceived().find(marker), std::string::npos)
      << "part of the refused request reached the upstream";
}

void ProxyTest::startProxy(int workers, std::string_view upstreamExtra,
                           std::string_view topExtra) {
  proxy_ = std::make_unique<Poolgate>(
      proxyConfig(upstream_.address(), workers, upstreamExtra, topExtra));
  proxy_->start();
}

void ProxyTest::startProxyWithConfig(const std::string& configTemplate,
                                     const std::map<std::string, std::string>& vars) {
  proxy_ = std::make_unique<Poolgate>(configTemplate, vars);
  proxy_->start();
}

}  // namespace pgtest
