// Leveled logging: one line per message, written with a single write(2) so that
// lines from several processes sharing the file never interleave.
#pragma once

#include <string>

#include "core/log_level.h"

namespace poolgate {

class Log {
 public:
  // path: "stderr" or a file opened in append mode. Returns false and fills
  // *why when the file cannot be opened (the previous target stays).
  static bool open(const std::string& path, LogLevel level, std::string* why);
  // Reopens the current file (SIGUSR1, after log rotation).
  static void reopen();
  static void setLevel(LogLevel level);
  static bool enabled(LogLevel level);
  // Tag shown after the pid, e.g. "master" or "worker 3".
  static void setRole(const char* role);

  static void write(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
};

}  // namespace poolgate

#define PG_LOG(level, ...)                                                  \
  do {                                                                      \
    if (::poolgate::Log::enabled(level)) ::poolgate::Log::write(level, __VA_ARGS__); \
  } while (0)
#define LOG_ERROR(...) PG_LOG(::poolgate::LogLevel::kError, __VA_ARGS__)
#define LOG_WARN(...) PG_LOG(::poolgate::LogLevel::kWarn, __VA_ARGS__)
#define LOG_INFO(...) PG_LOG(::poolgate::LogLevel::kInfo, __VA_ARGS__)
#define LOG_DEBUG(...) PG_LOG(::poolgate::LogLevel::kDebug, __VA_ARGS__)
