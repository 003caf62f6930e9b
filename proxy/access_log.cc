#include "proxy/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>

#include "core/log.h"

namespace poolgate {

namespace {

constexpr size_t kFlushBytes = 32 * 1024;
constexpr uint64_t kFlushDelayMs = 200;

void appendUint(std::string& out, uint64_t value) {
  char digits[24];
  auto result = std::to_chars(digits, digits + sizeof digits, value);
  out.append(digits, static_cast<size_t>(result.ptr - digits));
}

// Milliseconds as seconds with three decimals: "0.004".
void appendSeconds(std::string& out, uint64_t ms) {
  appendUint(out, ms / 1000);
  char frac[5] = {'.', static_cast<char>('0' + ms % 1000 / 100), static_cast<char>('0' + ms % 100 / 10),
                  static_cast<char>('0' + ms % 10), 0};
  out.append(frac, 4);
}

// Quoted-string content for the combined format: quotes, backslashes and
// control bytes escaped as nginx does (\xHH).
void appendEscaped(std::string& out, std::string_view text) {
  for (unsigned char c : text) {
    if (c == '"' || c == '\\' || c < 0x20 || c >= 0x7f) {
      char hex[5];
      snprintf(hex, sizeof hex, "\\x%02X", c);
      out.append(hex, 4);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
}

void appendJsonString(std::string& out, std::string_view text) {
  out.push_back('"');
  for (unsigned char c : text) {
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          char hex[7];
          snprintf(hex, sizeof hex, "\\u%04x", c);
          out.append(hex, 6);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

uint64_t upstreamMs(const AccessRecord& r) {
  return r.upstream_done_ms >= r.upstream_started_ms ? r.upstream_done_ms - r.upstream_started_ms : 0;
}

}  // namespace

AccessLog::AccessLog(EventLoop& loop, const LogConfig& config)
    : loop_(loop), config_(config), flush_timer_(loop.timers(), [this] { flush(); }) {
  buffer_.reserve(kFlushBytes * 2);
  open();
}

AccessLog::~AccessLog() { flush(); }

void AccessLog::open() {
  if (config_.access.empty()) return;
  if (config_.access == "stdout") {
    is_stdout_ = true;
    fd_.reset(::dup(STDOUT_FILENO));
    return;
  }
  fd_.reset(::open(config_.access.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
  if (!fd_) LOG_ERROR("access log %s: %s", config_.access.c_str(), strerror(errno));
}

void AccessLog::reopen() {
  if (is_stdout_ || config_.access.empty()) return;
  flush();
  open();
}

std::string_view AccessLog::localTime() {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  if (now.tv_sec != cached_second_) {
    cached_second_ = now.tv_sec;
    tm parts;
    localtime_r(&now.tv_sec, &parts);
    strftime(time_text_, sizeof time_text_, "%d/%b/%Y:%H:%M:%S %z", &parts);
    strftime(iso_text_, sizeof iso_text_, "%Y-%m-%dT%H:%M:%S%z", &parts);
  }
  return config_.access_format == AccessFormat::kJson ? iso_text_ : time_text_;
}

void AccessLog::write(const AccessRecord& record, const char* client_ip) {
  if (!fd_ || !record.text) return;
  if (config_.access_format == AccessFormat::kJson) {
    appendJson(record, client_ip);
  } else {
    appendCombined(record, client_ip);
  }
  if (buffer_.size() >= kFlushBytes) {
    flush();
  } else if (!flush_timer_.armed()) {
    flush_timer_.arm(kFlushDelayMs);
  }
}

void AccessLog::appendCombined(const AccessRecord& r, const char* client_ip) {
  std::string& out = buffer_;
  out.append(client_ip);
  out.append(" - - [");
  out.append(localTime());
  out.append("] \"");
  appendEscaped(out, r.text->method);
  out.push_back(' ');
  appendEscaped(out, r.text->target);
  out.push_back(' ');
  out.append(r.protocol());
  out.append("\" ");
  appendUint(out, static_cast<uint64_t>(r.status));
  out.push_back(' ');
  appendUint(out, r.bytes_sent);
  out.append(" \"");
  appendEscaped(out, r.text->referer.empty() ? std::string_view("-") : std::string_view(r.text->referer));
  out.append("\" \"");
  appendEscaped(out, r.text->user_agent.empty() ? std::string_view("-") : std::string_view(r.text->user_agent));
  out.append("\" rt=");
  appendSeconds(out, loop_.now() - r.started_ms);
  out.append(" upstream=");
  out.append(r.upstream.empty() ? std::string_view("-") : r.upstream);
  out.append(" ut=");
  if (r.upstream.empty()) {
    out.push_back('-');
  } else {
    appendSeconds(out, upstreamMs(r));
  }
  out.append(r.upstream.empty() ? " conn=-" : r.upstream_reused ? " conn=reused" : " conn=new");
  if (r.error != nullptr) {
    out.append(" error=");
    out.append(r.error);
  }
  out.push_back('\n');
}

void AccessLog::appendJson(const AccessRecord& r, const char* client_ip) {
  std::string& out = buffer_;
  out.append("{\"time\":\"");
  out.append(localTime());
  out.append("\",\"client\":");
  appendJsonString(out, client_ip);
  out.append(",\"method\":");
  appendJsonString(out, r.text->method);
  out.append(",\"target\":");
  appendJsonString(out, r.text->target);
  out.append(",\"protocol\":\"");
  out.append(r.protocol());
  out.append("\",\"status\":");
  appendUint(out, static_cast<uint64_t>(r.status));
  out.append(",\"bytes\":");
  appendUint(out, r.bytes_sent);
  out.append(",\"request_time\":");
  appendSeconds(out, loop_.now() - r.started_ms);
  out.append(",\"referer\":");
  appendJsonString(out, r.text->referer);
  out.append(",\"user_agent\":");
  appendJsonString(out, r.text->user_agent);
  if (r.upstream.empty()) {
    out.append(",\"upstream\":null,\"upstream_time\":null,\"upstream_connection\":null");
  } else {
    out.append(",\"upstream\":");
    appendJsonString(out, r.upstream);
    out.append(",\"upstream_time\":");
    appendSeconds(out, upstreamMs(r));
    out.append(r.upstream_reused ? ",\"upstream_connection\":\"reused\"" : ",\"upstream_connection\":\"new\"");
  }
  out.append(",\"error\":");
  if (r.error != nullptr) {
    appendJsonString(out, r.error);
  } else {
    out.append("null");
  }
  out.append("}\n");
}

void AccessLog::flush() {
  flush_timer_.cancel();
  size_t written = 0;
  while (fd_ && written < buffer_.size()) {
    ssize_t n = ::write(fd_.get(), buffer_.data() + written, buffer_.size() - written);
    if (n > 0) {
      written += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      LOG_ERROR("access log %s: %s", config_.access.c_str(), n < 0 ? strerror(errno) : "short write");
      break;  // drop what cannot be written rather than grow without bound
    }
  }
  buffer_.clear();
}

}  // namespace poolgate
