// Hand-over transport: idle upstream sockets moving between workers, through
// the master (see pool/handover.h for when a connection moves).
//
// Each worker has one SOCK_SEQPACKET socket pair to the master. A worker
// sends a socket (SCM_RIGHTS) with a HandOverNote naming the worker slot it
// is meant for; the master passes it on over that worker's pair. Through the
// master rather than a mesh of pairs between workers: workers come and go
// (reload, recycling, a crash), the master is the one process that sees them
// all, and it is the one place that can count what was lost in flight. A
// worker that dies with sockets queued to it takes them down with its end of
// the pair; the master knows how many it sent and how many the worker took
// (WorkerSlot::handover_taken), and gives their places under pool.max_conns
// back. Cost per hand-over: two sendmsg/recvmsg pairs and a wake-up of the
// master, against a TCP handshake on both sides and a TIME_WAIT for the close
// and reopen it replaces.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>

#include "core/event_loop.h"
#include "core/fd.h"
#include "core/log_throttle.h"
#include "pool/handover.h"
#include "shm/stats_segment.h"

namespace poolgate {

// One message on a pair: the note; the socket rides along as SCM_RIGHTS.
// Returns false (and closes nothing) when it cannot be sent now.
bool sendHandOver(int channel, int fd, const HandOverNote& note);
// Reads one message. Returns 1 and fills `fd` and `note`, 0 when nothing is
// queued, -1 when the peer is gone; a malformed message is skipped (its
// descriptor, if any, closed).
int receiveHandOver(int channel, Fd* fd, HandOverNote* note);

// The master's side: one pair per worker slot.
class HandOverRelay {
 public:
  HandOverRelay(EventLoop& loop, StatsSegment& segment);
  ~HandOverRelay();
  HandOverRelay(const HandOverRelay&) = delete;
  HandOverRelay& operator=(const HandOverRelay&) = delete;

  // Before forking the worker of `slot`: a new pair. Returns the worker's
  // end (the master keeps its own), or an empty Fd.
  Fd open(size_t slot);
  // The worker of `slot` is gone (reaped): what it sent is passed on, what
  // was sent to it and never taken frees its place under max_conns.
  void close(size_t slot);
  // In a freshly forked worker: the master's ends are not its to hold.
  void dropAfterFork();

 private:
  struct Channel final : IoHandler, Deletable {
    HandOverRelay* relay = nullptr;
    size_t slot = 0;
    Fd fd;
    uint64_t sent = 0;  // sequence of the last message sent to this worker
    // Messages sent and maybe not yet taken: (sequence, server), oldest first.
    std::deque<std::pair<uint64_t, int32_t>> unconfirmed;
    void onIoEvent(uint32_t events) noexcept override;
  };
  void drain(Channel& channel);  // every message waiting (a worker reaped)
  bool passOne(Channel& channel);  // the next message, if one waits
  void forward(Fd fd, HandOverNote note);
  void dropConnection(int32_t server);  // its place under max_conns is free again

  EventLoop& loop_;
  StatsSegment& segment_;
  std::array<std::unique_ptr<Channel>, kMaxWorkerSlots> channels_;
  LogThrottle log_;
};

// What a worker does with a socket that arrives.
class HandOverSink {
 public:
  virtual void onHandedOver(Fd fd, const HandOverNote& note) noexcept = 0;

 protected:
  ~HandOverSink() = default;
};

// A worker's side: its courier for the pools, and the receiver of what the
// master passes on.
class HandOverPort final : public PoolCourier, private IoHandler {
 public:
  // `taken`: the worker's WorkerSlot::handover_taken.
  HandOverPort(EventLoop& loop, Fd channel, std::atomic<uint64_t>& taken, HandOverSink& sink);
  ~HandOverPort();
  HandOverPort(const HandOverPort&) = delete;
  HandOverPort& operator=(const HandOverPort&) = delete;

  bool send(int fd, const HandOverNote& note) noexcept override;

 private:
  void onIoEvent(uint32_t events) noexcept override;

  EventLoop& loop_;
  Fd channel_;
  std::atomic<uint64_t>& taken_;
  HandOverSink& sink_;
};

}  // namespace poolgate
