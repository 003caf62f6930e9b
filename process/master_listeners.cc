// The master's listening sockets: opened before the workers are forked,
// taken over (never re-bound) across reloads and binary upgrades.
#include "process/master.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include <cmath>

#include "core/log.h"
#include "core/socket.h"

namespace poolgate {

// One listen address: at least a socket per worker number. Sockets that
// `current` already has for the same address and kind are all taken over
// (duplicated, never re-bound, never dropped): closing one would reset the
// connections waiting in its queue. A larger worker count adds sockets to the
// same port; with fewer workers than sockets, a worker serves several
// (see runWorker).
bool Master::openListener(const ListenConfig& listen, ListenerKind kind, uint32_t count,
                          const std::vector<ListenerSockets>& current, std::vector<ListenerSockets>* out) {
  const std::string& address_text = listen.address.text;
  const bool tls = listen.tls.has_value();
  SocketAddress socket_address;
  if (!makeSocketAddress(listen.address.host, listen.address.port, &socket_address)) {
    LOG_ERROR("listen %s: not a numeric address", address_text.c_str());
    return false;
  }
  ListenerSockets sockets{address_text, kind, tls, listen.nodelay, listen.http2, {}, nullptr};
  if (tls) {
    // Certificates and keys are (re-)read here, at start and on every reload.
    std::vector<std::string> errors;
    sockets.tls_server = TlsServer::create(*listen.tls, &ticket_keys_, &errors);
    for (const std::string& error : errors) LOG_ERROR("%s", error.c_str());
    if (!sockets.tls_server) return false;
    sockets.tls_server->offerHttp2(listen.http2);
  }
  for (const ListenerSockets& existing : current) {
    if (existing.address != address_text || existing.kind != kind || existing.tls != tls) continue;
    for (size_t i = 0; i < existing.fds.size(); ++i) {
      sockets.fds.emplace_back(fcntl(existing.fds[i].get(), F_DUPFD_CLOEXEC, 0));
      if (!sockets.fds.back()) {
        LOG_ERROR("listen %s: dup: %s", address_text.c_str(), strerror(errno));
        return false;
      }
    }
    if (!existing.fds.empty()) {
      SocketAddress bound;
      localAddress(existing.fds[0].get(), &bound);
      socket_address.setPort(bound.port());
    }
    break;
  }
  bool reused = !sockets.fds.empty();
  while (sockets.fds.size() < count) {  // all sockets set SO_REUSEPORT, so more can join later
    std::string why;
    Fd fd = poolgate::openListener(socket_address, listen.backlog, /*reuseport=*/true, &why);
    if (!fd) {
      LOG_ERROR("%s", why.c_str());
      return false;
    }
    if (socket_address.port() == 0) {
      // Port 0: the kernel picked one for the first socket; the others join it.
      SocketAddress bound;
      localAddress(fd.get(), &bound);
      socket_address.setPort(bound.port());
    }
    sockets.fds.push_back(std::move(fd));
  }
  // Applied to kept sockets too, so that a reload changes them in place.
  const ListenOptions options{listen.backlog, static_cast<int>(std::ceil(listen.defer_accept))};
  for (const Fd& fd : sockets.fds) {
    std::string why;
    if (!setListenOptions(fd.get(), options, &why)) {
      LOG_ERROR("listen %s: %s", address_text.c_str(), why.c_str());
      return false;
    }
  }
  if (!reused) {
    LOG_INFO("listening on %s (%s)", socket_address.toString().c_str(),
             kind == ListenerKind::kAdmin ? "admin" : tls ? "proxy, tls" : "proxy");
  }
  out->push_back(std::move(sockets));
  return true;
}

bool Master::openListeners(const Config& config, const std::vector<ListenerSockets>& current,
                           std::vector<ListenerSockets>* out) {
  // reuseport: a socket per worker; the other modes share one socket.
  const uint32_t count = perWorkerSockets(config) ? config.effectiveWorkers() : 1;
  for (const ListenConfig& listen : config.listen) {
    if (!openListener(listen, ListenerKind::kProxy, count, current, out)) return false;
  }
  if (config.admin) {
    ListenConfig admin;
    admin.address = config.admin->address;
    return openListener(admin, ListenerKind::kAdmin, count, current, out);
  }
  return true;
}

}  // namespace poolgate
