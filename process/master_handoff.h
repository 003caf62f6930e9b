// accept_mode handoff, the master's side: it accepts on the proxy listeners
// and passes each connection to the worker with the fewest active clients
// (SCM_RIGHTS over the worker's socket pair; see Master::handOff()).
#pragma once

#include <cstdint>
#include <functional>

#include "core/event_loop.h"
#include "core/log_throttle.h"
#include "core/timer.h"

namespace poolgate {

// One proxy listening socket the master accepts on.
class HandoffAcceptor final : public IoHandler {
 public:
  // `accept`: takes a batch of connections from the socket; returns 0, or
  // the errno that should stop accepting for a while (EMFILE...).
  HandoffAcceptor(EventLoop& loop, int fd, std::function<int()> accept);
  ~HandoffAcceptor();
  HandoffAcceptor(const HandoffAcceptor&) = delete;
  HandoffAcceptor& operator=(const HandoffAcceptor&) = delete;

  void onIoEvent(uint32_t events) noexcept override;

 private:
  static constexpr int kRetryMs = 100;
  EventLoop& loop_;
  int fd_;  // owned by the master's listeners
  std::function<int()> accept_;
  Timer retry_;
  LogThrottle log_;
};

}  // namespace poolgate
