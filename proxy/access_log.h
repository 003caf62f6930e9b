// The access log: one line per finished exchange, in nginx's "combined"
// format (plus the upstream's address, time and whether the connection was
// pooled) or as one JSON object per line.
//
// Lines go into a per-worker buffer; it is written out when it passes 32 KiB
// or 200 ms after its first line, so a slow disk costs the event loop one
// buffered write now and then, not one write per request.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.h"
#include "core/event_loop.h"
#include "core/fd.h"

namespace poolgate {

// What one exchange leaves for the log. Strings are copied at the request's
// head (the read buffer moves on); their capacity is reused across requests.
// The text of a request kept for its log line. Allocated once per client
// connection, and only when the access log is on: an idle connection of a
// worker without one does not carry 128 bytes of empty strings.
struct AccessText {
  std::string method;
  std::string target;
  std::string referer;
  std::string user_agent;
};

struct AccessRecord {
  // "HTTP/2.0", "HTTP/1.1" or "HTTP/1.0".
  std::string_view protocol() const {
    return http_major == 2 ? "HTTP/2.0" : http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
  }

  std::unique_ptr<AccessText> text;  // set while the access log is on
  uint8_t http_major = 1;  // 2: the request came over HTTP/2
  uint8_t http_minor = 1;
  int status = 0;
  uint64_t bytes_sent = 0;
  uint64_t started_ms = 0;            // first byte of the request (monotonic)
  std::string_view upstream;          // server address ("" = answered by poolgate)
  uint64_t upstream_started_ms = 0;   // request handed to the upstream connection
  uint64_t upstream_done_ms = 0;      // response complete (or failed)
  bool upstream_reused = false;
  const char* error = nullptr;        // stable name when the exchange failed
};

class AccessLog {
 public:
  AccessLog(EventLoop& loop, const LogConfig& config);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  bool opened() const { return static_cast<bool>(fd_); }
  void write(const AccessRecord& record, const char* client_ip);
  void flush();
  void reopen();  // SIGUSR1: after rotation, write to a new file of the same name

 private:
  void open();
  void appendCombined(const AccessRecord& record, const char* client_ip);
  void appendJson(const AccessRecord& record, const char* client_ip);
  std::string_view localTime();

  EventLoop& loop_;
  const LogConfig& config_;
  Fd fd_;
  bool is_stdout_ = false;
  std::string buffer_;
  Timer flush_timer_;
  int64_t cached_second_ = -1;
  char time_text_[40] = {};
  char iso_text_[40] = {};
};

}  // namespace poolgate
