#include "process/handover.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "core/log.h"
#include "core/socket.h"

namespace poolgate {

bool sendHandOver(int channel, int fd, const HandOverNote& note) {
  return sendWithDescriptor(channel, &note, sizeof note, fd);
}

int receiveHandOver(int channel, Fd* fd, HandOverNote* note) {
  for (;;) {
    bool lost = false;
    const ssize_t n = receiveWithDescriptor(channel, note, sizeof *note, fd, &lost);
    if (n == 0) return -1;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EBADMSG) {
        LOG_ERROR("hand-over: oversized message skipped");
        continue;
      }
      return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
    const bool well_formed = n == static_cast<ssize_t>(sizeof *note) && note->server >= 0 &&
                             static_cast<size_t>(note->server) < kMaxSharedServers && note->target < kMaxPoolSlots;
    if (!well_formed) {
      LOG_ERROR("hand-over: malformed message of %zd bytes skipped", n);
      continue;  // (its descriptor, if any, closes with *fd)
    }
    // Without a descriptor (lost: the receiver's table was full) the kernel
    // has closed the socket: the message still counts, as a loss.
    return 1;
  }
}

// ---- master ---------------------------------------------------------------

HandOverRelay::HandOverRelay(EventLoop& loop, StatsSegment& segment)
    : loop_(loop), segment_(segment), log_(loop.timers(), LogLevel::kWarn, "hand-over", "connections closed") {}

HandOverRelay::~HandOverRelay() {
  for (auto& channel : channels_) {
    if (channel && channel->fd) loop_.remove(channel->fd.get());
  }
}

Fd HandOverRelay::open(size_t slot) {
  if (slot >= channels_.size()) return Fd();
  close(slot);
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) {
    LOG_ERROR("hand-over: socketpair for worker slot %zu: %s", slot, strerror(errno));
    return Fd();
  }
  auto channel = std::make_unique<Channel>();
  channel->relay = this;
  channel->slot = slot;
  channel->fd.reset(pair[0]);
  if (!loop_.add(channel->fd.get(), EPOLLIN, channel.get())) {
    ::close(pair[1]);
    return Fd();
  }
  channels_[slot] = std::move(channel);
  return Fd(pair[1]);
}

void HandOverRelay::close(size_t slot) {
  if (slot >= channels_.size() || !channels_[slot]) return;
  Channel& channel = *channels_[slot];
  drain(channel);  // what it sent before it died still goes where it was meant
  const uint64_t taken = segment_.workers[slot].handover_taken.load(std::memory_order_acquire);
  for (const auto& [sequence, server] : channel.unconfirmed) {
    if (sequence > taken) dropConnection(server);  // closed with the worker's end of the pair
  }
  loop_.remove(channel.fd.get());
  channel.fd.reset();
  loop_.deferDelete(std::move(channels_[slot]));  // an event of this batch may still name it
}

void HandOverRelay::dropAfterFork() {
  for (auto& channel : channels_) {
    if (channel) channel->fd.reset();
    channel.reset();
  }
}

// One message per readiness, here and in HandOverPort: the channels are
// level-triggered, so a second message waiting brings the loop back at once,
// where reading on until EAGAIN cost a failed recvmsg on each side of nearly
// every hand-over (they come one at a time).
void HandOverRelay::Channel::onIoEvent(uint32_t) noexcept { relay->passOne(*this); }

void HandOverRelay::drain(Channel& channel) {
  while (passOne(channel)) {
  }
}

bool HandOverRelay::passOne(Channel& channel) {
  Fd fd;
  HandOverNote note;
  if (!channel.fd || receiveHandOver(channel.fd.get(), &fd, &note) != 1) return false;
  forward(std::move(fd), note);
  return true;
}

void HandOverRelay::forward(Fd fd, HandOverNote note) {
  if (!fd) {  // lost on the way in (our descriptor table was full)
    dropConnection(note.server);
    return;
  }
  Channel* target = note.target < channels_.size() ? channels_[note.target].get() : nullptr;
  if (target != nullptr) {
    note.sequence = target->sent + 1;
    if (sendHandOver(target->fd.get(), fd.get(), note)) {
      target->sent = note.sequence;
      // What the worker has confirmed is forgotten; the rest stays until it does.
      const uint64_t taken = segment_.workers[note.target].handover_taken.load(std::memory_order_acquire);
      while (!target->unconfirmed.empty() && target->unconfirmed.front().first <= taken) {
        target->unconfirmed.pop_front();
      }
      target->unconfirmed.emplace_back(note.sequence, note.server);
      return;
    }
  }
  // Its worker is gone, or its pair is full: the connection closes here.
  if (log_.admit("no worker to take it")) {
    LOG_WARN("hand-over: worker slot %u cannot take an upstream connection; closed", note.target);
  }
  fd.reset();  // closed before its place is given back: the cap holds at every moment
  dropConnection(note.server);
}

void HandOverRelay::dropConnection(int32_t server) {
  segment_.shared[server].conns.fetch_sub(1, std::memory_order_relaxed);
}

// ---- worker ---------------------------------------------------------------

HandOverPort::HandOverPort(EventLoop& loop, Fd channel, std::atomic<uint64_t>& taken, HandOverSink& sink)
    : loop_(loop), channel_(std::move(channel)), taken_(taken), sink_(sink) {
  if (channel_ && !loop_.add(channel_.get(), EPOLLIN, this)) channel_.reset();
}

HandOverPort::~HandOverPort() {
  if (channel_) loop_.remove(channel_.get());
}

bool HandOverPort::send(int fd, const HandOverNote& note) noexcept {
  const bool sent = channel_ && sendHandOver(channel_.get(), fd, note);
  ::close(fd);  // in flight, the kernel holds its own reference
  return sent;
}

void HandOverPort::onIoEvent(uint32_t) noexcept {
  Fd fd;
  HandOverNote note;
  const int result = receiveHandOver(channel_.get(), &fd, &note);
  if (result == 1) {
    sink_.onHandedOver(std::move(fd), note);
    taken_.store(note.sequence, std::memory_order_release);
  }
  if (result < 0) {  // the master is gone (we are about to be killed with it)
    loop_.remove(channel_.get());
    channel_.reset();
  }
}

}  // namespace poolgate
