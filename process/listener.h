// Listener: a listening socket inside a worker; accepts clients.
#pragma once

#include <cstdint>

#include "core/event_loop.h"
#include "process/worker.h"

namespace poolgate {

class Listener final : private IoHandler {
 public:
  // `exclusive`: EPOLLEXCLUSIVE, so one waiting worker wakes per connection.
  Listener(Worker& worker, const ListenSocket& socket, bool exclusive);
  ~Listener();

  // Start / stop taking new connections (worker_connections, draining).
  void resume();
  void pause();
  void stop();  // for good: close this worker's copy of the socket
  // Graceful form of stop(): first takes the connections already waiting in
  // the accept queue (or the hand-off channel), which closing the last copy of
  // the socket would otherwise reset, then closes.
  void drainAndStop();
  ListenerKind kind() const { return socket_.kind; }

 private:
  void onIoEvent(uint32_t events) noexcept override;
  // Accepts up to `limit` connections; returns how many. `final`: also while paused.
  int acceptSome(int limit, bool final);
  int receiveHandedOff(uint8_t* tag);

  Worker& worker_;
  ListenSocket socket_;
  uint32_t events_;
  bool registered_ = false;
};

}  // namespace poolgate
