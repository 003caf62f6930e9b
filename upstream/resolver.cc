#include "upstream/resolver.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include <algorithm>

#include "core/log.h"

namespace poolgate {

// One c-ares socket registered with the loop.
class Resolver::Socket final : public IoHandler, public Deletable {
 public:
  Socket(Resolver& resolver, ares_socket_t fd) : resolver_(&resolver), fd_(fd) {}
  void onIoEvent(uint32_t events) noexcept override {
    if (resolver_ == nullptr) return;  // closed; an event of the same batch arrives late
    bool readable = (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0;
    bool writable = (events & EPOLLOUT) != 0;
    resolver_->process(readable ? fd_ : ARES_SOCKET_BAD, writable ? fd_ : ARES_SOCKET_BAD);
  }
  void detach() { resolver_ = nullptr; }

 private:
  Resolver* resolver_;
  ares_socket_t fd_;
};

struct Resolver::Lookup {
  Resolver* resolver;
  uint16_t port;
  Done done;
};

Resolver::Resolver(EventLoop& loop, const std::vector<std::string>& servers, uint64_t timeout_ms)
    : loop_(loop), timer_(loop.timers(), [this] { process(ARES_SOCKET_BAD, ARES_SOCKET_BAD); }) {
  static const int library = ares_library_init(ARES_LIB_INIT_ALL);
  if (library != ARES_SUCCESS) {
    error_ = std::string("ares_library_init: ") + ares_strerror(library);
    return;
  }
  ares_options options{};
  options.sock_state_cb = &Resolver::onSocketState;
  options.sock_state_cb_data = this;
  options.timeout = static_cast<int>(std::clamp<uint64_t>(timeout_ms, 1, 60'000));
  options.tries = 2;
  int status = ares_init_options(&channel_, &options, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
  if (status != ARES_SUCCESS) {
    error_ = std::string("ares_init_options: ") + ares_strerror(status);
    channel_ = nullptr;
    return;
  }
  if (!servers.empty()) {
    std::string csv;
    for (const std::string& server : servers) csv += (csv.empty() ? "" : ",") + server;
    status = ares_set_servers_ports_csv(channel_, csv.c_str());
    if (status != ARES_SUCCESS) {
      error_ = "resolver.servers \"" + csv + "\": " + ares_strerror(status);
      ares_destroy(channel_);
      channel_ = nullptr;
    }
  }
}

Resolver::~Resolver() {
  destroying_ = true;
  timer_.cancel();
  if (channel_ != nullptr) ares_destroy(channel_);  // calls pending lookups back (ARES_EDESTRUCTION)
  channel_ = nullptr;
  for (auto& [fd, socket] : sockets_) {  // any c-ares did not report closed
    loop_.remove(fd);
    socket->detach();
    loop_.deferDelete(std::move(socket));
  }
}

void Resolver::resolve(const std::string& host, uint16_t port, Done done) {
  if (channel_ == nullptr) return;  // callers check valid(); nothing would ever call back
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = ARES_AI_NOSORT;  // the order does not matter: every address becomes a server
  auto* lookup = new Lookup{this, port, std::move(done)};
  ares_getaddrinfo(channel_, host.c_str(), nullptr, &hints, &Resolver::onAddrInfo, lookup);
  armTimer();
}

void Resolver::onAddrInfo(void* arg, int status, int, ares_addrinfo* result) {
  std::unique_ptr<Lookup> lookup(static_cast<Lookup*>(arg));
  std::vector<ResolvedAddress> addresses;
  if (status == ARES_SUCCESS && result != nullptr) {
    for (ares_addrinfo_node* node = result->nodes; node != nullptr; node = node->ai_next) {
      ResolvedAddress entry;
      if (node->ai_family == AF_INET && node->ai_addrlen >= sizeof(sockaddr_in)) {
        memcpy(&entry.address.storage, node->ai_addr, sizeof(sockaddr_in));
        entry.address.length = sizeof(sockaddr_in);
      } else if (node->ai_family == AF_INET6 && node->ai_addrlen >= sizeof(sockaddr_in6)) {
        memcpy(&entry.address.storage, node->ai_addr, sizeof(sockaddr_in6));
        entry.address.length = sizeof(sockaddr_in6);
      } else {
        continue;
      }
      entry.address.setPort(lookup->port);
      entry.ttl_seconds = node->ai_ttl > 0 ? static_cast<uint32_t>(node->ai_ttl) : 0;
      addresses.push_back(entry);
    }
  }
  if (result != nullptr) ares_freeaddrinfo(result);
  if (status == ARES_EDESTRUCTION || lookup->resolver->destroying_) return;  // nobody is listening
  // From inside ares_process_fd: the caller may start the next lookup right away.
  if (status != ARES_SUCCESS) {
    lookup->done(false, ares_strerror(status), {});
  } else if (addresses.empty()) {
    lookup->done(false, "no address records", {});
  } else {
    lookup->done(true, {}, std::move(addresses));
  }
}

void Resolver::onSocketState(void* data, ares_socket_t fd, int readable, int writable) {
  auto* self = static_cast<Resolver*>(data);
  auto it = self->sockets_.find(fd);
  if (!readable && !writable) {
    if (it != self->sockets_.end()) {
      self->loop_.remove(fd);
      // An event of the current batch may still point at it.
      it->second->detach();
      self->loop_.deferDelete(std::move(it->second));
      self->sockets_.erase(it);
    }
    return;
  }
  // Level-triggered: c-ares reads until it has what it wants, not to EAGAIN.
  uint32_t events = (readable ? EPOLLIN : 0u) | (writable ? EPOLLOUT : 0u);
  if (it == self->sockets_.end()) {
    auto socket = std::make_unique<Socket>(*self, fd);
    if (self->loop_.add(fd, events, socket.get())) self->sockets_.emplace(fd, std::move(socket));
  } else {
    self->loop_.modify(fd, events, it->second.get());
  }
}

void Resolver::process(ares_socket_t read_fd, ares_socket_t write_fd) {
  if (channel_ == nullptr) return;
  ares_process_fd(channel_, read_fd, write_fd);
  armTimer();
}

void Resolver::armTimer() {
  if (channel_ == nullptr) return;
  timeval max{5, 0};
  timeval next{};
  timeval* wait = ares_timeout(channel_, &max, &next);
  uint64_t ms = static_cast<uint64_t>(wait->tv_sec) * 1000 + static_cast<uint64_t>(wait->tv_usec + 999) / 1000;
  timer_.arm(ms == 0 ? 1 : ms);
}

}  // namespace poolgate
