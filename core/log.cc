#include "core/log.h"

#include <fcntl.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>

namespace poolgate {
namespace {

const char* const kLevelNames[] = {"error", "warn", "info", "debug"};

struct LogState {
  int fd = STDERR_FILENO;
  std::string path = "stderr";
  LogLevel level = LogLevel::kInfo;
  char role[32] = "main";
};

LogState& state() {
  static LogState s;
  return s;
}

int openFile(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

}  // namespace

bool Log::open(const std::string& path, LogLevel level, std::string* why) {
  LogState& s = state();
  s.level = level;
  if (path == s.path) return true;
  int fd = STDERR_FILENO;
  if (path != "stderr") {
    fd = openFile(path);
    if (fd < 0) {
      if (why) *why = path + ": " + strerror(errno);
      return false;
    }
  }
  if (s.fd != STDERR_FILENO) ::close(s.fd);
  s.fd = fd;
  s.path = path;
  return true;
}

void Log::reopen() {
  LogState& s = state();
  if (s.path == "stderr") return;
  int fd = openFile(s.path);
  if (fd < 0) return;  // keep writing to the old file rather than nowhere
  ::dup2(fd, s.fd);
  ::close(fd);
}

void Log::setLevel(LogLevel level) { state().level = level; }

bool Log::enabled(LogLevel level) { return level <= state().level; }

void Log::setRole(const char* role) {
  snprintf(state().role, sizeof state().role, "%s", role);
}

void Log::write(LogLevel level, const char* fmt, ...) {
  char line[2048];
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm parts;
  localtime_r(&tv.tv_sec, &parts);
  int n = static_cast<int>(strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &parts));
  n += snprintf(line + n, sizeof line - n, ".%03ld [%s] %d %s: ", static_cast<long>(tv.tv_usec / 1000),
                kLevelNames[static_cast<int>(level)], static_cast<int>(getpid()), state().role);
  va_list args;
  va_start(args, fmt);
  int body = vsnprintf(line + n, sizeof line - n - 1, fmt, args);
  va_end(args);
  if (body < 0) body = 0;
  n += body;
  if (n > static_cast<int>(sizeof line) - 2) n = sizeof line - 2;
  line[n++] = '\n';
  ssize_t ignored = ::write(state().fd, line, n);
  (void)ignored;
}

}  // namespace poolgate
