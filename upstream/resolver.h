// Resolver: asynchronous name resolution with c-ares on our event loop.
//
// The channel's sockets are registered with the loop (c-ares tells us which
// through its socket-state callback) and its retransmission timeouts run on
// one loop timer, so a lookup never blocks. A and AAAA are asked together
// (ares_getaddrinfo with AF_UNSPEC); the answer carries each record's TTL.
#pragma once

#include <ares.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/event_loop.h"
#include "core/socket.h"
#include "core/timer.h"

namespace poolgate {

struct ResolvedAddress {
  SocketAddress address;  // with the port asked for
  uint32_t ttl_seconds = 0;
};

class Resolver {
 public:
  // `ok` false: *why says why (nothing else is set).
  using Done = std::function<void(bool ok, const std::string& why, std::vector<ResolvedAddress> addresses)>;

  // `servers`: "ip:port" or "[ip6]:port" texts; empty = the system's resolv.conf.
  // `timeout_ms`: per try (c-ares makes up to 2 tries per server).
  Resolver(EventLoop& loop, const std::vector<std::string>& servers, uint64_t timeout_ms);
  ~Resolver();  // pending lookups are called back with ok = false
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  bool valid() const { return channel_ != nullptr; }
  const std::string& error() const { return error_; }

  // Looks up `host`; `done` runs later, from the loop (never from inside resolve()).
  void resolve(const std::string& host, uint16_t port, Done done);

 private:
  class Socket;
  struct Lookup;
  static void onSocketState(void* data, ares_socket_t fd, int readable, int writable);
  static void onAddrInfo(void* arg, int status, int timeouts, ares_addrinfo* result);
  void process(ares_socket_t read_fd, ares_socket_t write_fd);
  void armTimer();

  EventLoop& loop_;
  ares_channel channel_ = nullptr;
  std::string error_;
  std::map<ares_socket_t, std::unique_ptr<Socket>> sockets_;
  Timer timer_;
  bool destroying_ = false;
};

}  // namespace poolgate
