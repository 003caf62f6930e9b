#include "upstream/health.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "upstream/upstream_tls.h"

namespace poolgate {

namespace {
constexpr size_t kMaxStatusBytes = 1024;  // a status line longer than this is no status line
}

void SharedHealth::reset() {
  down_until_ms.store(0, std::memory_order_relaxed);
  window_start_ms.store(0, std::memory_order_relaxed);
  fails.store(0, std::memory_order_relaxed);
  check.store(static_cast<uint32_t>(CheckState::kNone), std::memory_order_relaxed);
  checks_total.store(0, std::memory_order_relaxed);
  check_failures_total.store(0, std::memory_order_relaxed);
}

bool SharedHealth::noteFailure(uint64_t now_ms, uint32_t max_fails, uint64_t fail_timeout_ms) {
  if (max_fails == 0) return false;
  // Two workers failing at once may both open a new window; a failure or two
  // counted in the wrong window is the only effect.
  uint64_t start = window_start_ms.load(std::memory_order_relaxed);
  if (fails.load(std::memory_order_relaxed) == 0 || now_ms - start > fail_timeout_ms) {
    window_start_ms.store(now_ms, std::memory_order_relaxed);
    fails.store(0, std::memory_order_relaxed);
  }
  if (fails.fetch_add(1, std::memory_order_relaxed) + 1 < max_fails) return false;
  fails.store(0, std::memory_order_relaxed);
  return down_until_ms.exchange(now_ms + fail_timeout_ms, std::memory_order_relaxed) <= now_ms;
}

int parseStatusLine(const std::string& bytes) {
  size_t end = bytes.find("\r\n");
  if (end == std::string::npos) return bytes.size() > kMaxStatusBytes ? -1 : 0;
  // HTTP/1.x SP 3DIGIT (SP reason)
  if (end < 12 || bytes.compare(0, 7, "HTTP/1.") != 0 || bytes[8] != ' ') return -1;
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (bytes[i] < '0' || bytes[i] > '9') return -1;
    status = status * 10 + (bytes[i] - '0');
  }
  if (end > 12 && bytes[12] != ' ') return -1;
  return status >= 100 && status <= 599 ? status : -1;
}

HealthProbe::HealthProbe(EventLoop& loop, const SocketAddress& address, std::string host_header,
                         std::string path, const UpstreamTls* tls, std::string tls_host)
    : loop_(loop),
      address_(address),
      request_("GET " + path + " HTTP/1.1\r\nHost: " + host_header +
               "\r\nUser-Agent: poolgate-health-check\r\nConnection: close\r\n\r\n"),
      tls_config_(tls),
      tls_host_(std::move(tls_host)),
      deadline_(loop.timers(), [this] { finish(false, "timed out"); }) {}

HealthProbe::~HealthProbe() { cancel(); }

void HealthProbe::cancel() {
  deadline_.cancel();
  done_ = nullptr;
  closeSocket();
}

void HealthProbe::closeSocket() {
  if (transport_) loop_.remove(transport_.fd());
  transport_.close();
}

void HealthProbe::start(uint64_t timeout_ms, Done done) {
  if (running()) return;
  done_ = std::move(done);
  sent_ = 0;
  received_.clear();
  connected_ = false;
  int error = 0;
  transport_.adopt(startConnect(address_, &error));
  if (!transport_) {
    finish(false, std::string("connect: ") + strerror(error));
    return;
  }
  if (!loop_.add(transport_.fd(), EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, this)) {
    transport_.close();
    finish(false, "epoll_ctl failed");
    return;
  }
  deadline_.arm(timeout_ms);
}

void HealthProbe::onIoEvent(uint32_t events) noexcept {
  if (!transport_) return;
  if (!connected_) {
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
    if (int error = socketError(transport_.fd()); error != 0) {
      finish(false, std::string("connect: ") + strerror(error));
      return;
    }
    connected_ = true;
    if (tls_config_ != nullptr &&
        (!transport_.startTls(tls_config_->context(), /*server=*/false) ||
         !tls_config_->prepare(transport_.tls(), tls_host_, nullptr, nullptr))) {
      finish(false, "TLS: " + transport_.tls().failure());
      return;
    }
  }
  if (transport_.secure() && !transport_.tls().established() && !handshake()) return;
  if (sent_ < request_.size() && !sendRequest()) return;
  readStatus();
}

bool HealthProbe::handshake() {
  switch (transport_.tls().handshake()) {
    case TlsResult::kDone:
      return true;
    case TlsResult::kWantRead:
    case TlsResult::kWantWrite:
      return false;  // the next event goes on
    case TlsResult::kFailed:
      break;
  }
  finish(false, "TLS handshake: " + transport_.tls().failure());
  return false;
}

bool HealthProbe::sendRequest() {
  while (sent_ < request_.size()) {
    ssize_t n = transport_.transmit(request_.data() + sent_, request_.size() - sent_);
    if (n > 0) {
      sent_ += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return false;  // the next EPOLLOUT continues
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      finish(false, std::string("send: ") + strerror(errno));
      return false;
    }
  }
  return true;
}

void HealthProbe::readStatus() {
  char chunk[512];
  for (;;) {
    ssize_t n = transport_.receive(chunk, sizeof chunk);
    if (n == 0) {
      finish(false, "connection closed before a status line");
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) finish(false, std::string("recv: ") + strerror(errno));
      return;
    }
    received_.append(chunk, static_cast<size_t>(n));
    int status = parseStatusLine(received_);
    // Interim responses (100, 103) come before the final one: skip their heads.
    while (status >= 100 && status < 200) {
      size_t head_end = received_.find("\r\n\r\n");
      if (head_end == std::string::npos) break;
      received_.erase(0, head_end + 4);
      status = parseStatusLine(received_);
    }
    if (status < 0) {
      finish(false, "not an HTTP response");
      return;
    }
    if (status >= 200) {
      finish(status < 400, "status " + std::to_string(status));
      return;
    }
  }
}

void HealthProbe::finish(bool passed, const std::string& why) {
  deadline_.cancel();
  closeSocket();
  if (Done done = std::move(done_)) {
    done_ = nullptr;
    done(passed, why);
  }
}

}  // namespace poolgate
