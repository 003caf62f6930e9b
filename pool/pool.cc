#include "pool/pool.h"

#include <algorithm>

#include "core/clock.h"

namespace poolgate {

NoReuse reuseVerdict(const ReuseFacts& facts, const PoolConfig& config) {
  if (facts.error) return NoReuse::kError;
  if (!facts.response_complete || !facts.length_delimited) return NoReuse::kResponseNotDone;
  if (!facts.upstream_keep_alive) return NoReuse::kUpstreamClose;
  if (!facts.request_sent) return NoReuse::kRequestNotSent;
  if (facts.unread_bytes) return NoReuse::kUnreadBytes;
  if (facts.exiting) return NoReuse::kExiting;
  if (facts.retired) return NoReuse::kRetired;
  if (facts.upstream_max_reached) return NoReuse::kUpstreamMax;
  if (config.max_requests != 0 && facts.requests_served >= config.max_requests) {
    return NoReuse::kMaxRequests;
  }
  if (config.max_lifetime > 0 && facts.age_ms >= secondsToMs(config.max_lifetime)) {
    return NoReuse::kMaxLifetime;
  }
  return NoReuse::kReusable;
}

namespace {
constexpr uint64_t kWaiterRecheckMs = 20;  // places freed by other workers are seen this fast
// At max_conns, a worker gives up a connection it still has requests for at
// most this often: shares shift by one connection per spacing, instead of a
// close and a reopen on every small swing of the queues.
constexpr uint64_t kYieldSpacingMs = 50;
}

Pool::Pool(TimerQueue& timers, const PoolConfig& config, ServerCounters& counters, const PoolShared& shared)
    : config_(config),
      counters_(counters),
      timers_(timers),
      idle_timer_(timers, [this] { onIdleTimer(); }),
      shared_conns_(config.max_conns != 0 ? shared.conns : nullptr),
      shared_waiters_(config.max_conns != 0 ? shared.waiters : nullptr),
      wake_timer_(timers, [this] { onWakeTimer(); }),
      deadline_timer_(timers, [this] { onDeadlineTimer(); }),
      yield_timer_(timers, [this] { onYieldTimer(); }),
      tickets_(shared_waiters_ != nullptr && shared.slot < kMaxPoolSlots ? shared.tickets : nullptr),
      slot_(shared.slot),
      shared_key_(shared.server),
      courier_(tickets_ != nullptr && shared.server >= 0 ? shared.courier : nullptr) {}

Pool::~Pool() { closeIdle(); }

PoolMember* Pool::checkout() {
  while (head_ != nullptr) {
    PoolMember& member = *head_;
    unlink(member);
    ServerCounters::sub(counters_.idle);
    noteActive();
    bool too_old = config_.max_lifetime > 0 &&
                   timers_.now() - member.created_ms_ >= secondsToMs(config_.max_lifetime);
    if (!too_old && member.probeIdle(timers_.now() - member.idle_since_ms_)) return &member;
    ServerCounters::add(counters_.closed_idle_total);
    member.evictFromPool();  // calls noteClosed(): active--
  }
  return nullptr;
}

bool Pool::reserve() {
  if (shared_conns_ == nullptr) return true;
  if (courier_ != nullptr) {
    // A free place belongs to the oldest request waiting for one: a new
    // request, or a waiter of ours that came later, queues behind it.
    if (olderWaiterElsewhere(serving_ticket_ != 0 ? serving_ticket_ : UINT64_MAX)) return false;
  } else if (timers_.now() < yielded_until_ms_ && shared_waiters_ != nullptr &&
             shared_waiters_->load(std::memory_order_relaxed) > static_cast<int32_t>(waiter_count_)) {
    // A place this worker has just given up is meant for other workers'
    // waiters: leave it to them for two of their looks (kWaiterRecheckMs), or
    // our own queue would take it straight back and theirs would starve.
    return false;
  }
  int32_t current = shared_conns_->load(std::memory_order_relaxed);
  do {
    if (current >= static_cast<int32_t>(config_.max_conns)) return false;
  } while (!shared_conns_->compare_exchange_weak(current, current + 1, std::memory_order_relaxed));
  return true;
}

void Pool::unreserve() {
  if (shared_conns_ != nullptr) shared_conns_->fetch_sub(1, std::memory_order_relaxed);
  if (first_waiter_ != nullptr) scheduleWake(0);
}

bool Pool::atCap() const {
  return shared_conns_ != nullptr &&
         shared_conns_->load(std::memory_order_relaxed) >= static_cast<int32_t>(config_.max_conns);
}

void Pool::enqueue(PoolWaiter& waiter, bool at_front) {
  if (waiter.queued_) return;
  waiter.queued_ = true;
  if (!at_front || waiter.ticket_ == 0) {  // a waiter put back keeps its place in the order
    waiter.ticket_ = tickets_ != nullptr ? tickets_->next.fetch_add(1, std::memory_order_relaxed) : ++local_tickets_;
  }
  if (!at_front || waiter.deadline_ms_ == 0) waiter.deadline_ms_ = timers_.now() + secondsToMs(config_.queue_timeout);
  if (!deadline_timer_.armed() || waiter.deadline_ms_ < deadline_timer_.deadline()) {
    deadline_timer_.armAt(waiter.deadline_ms_);
  }
  if (at_front) {
    waiter.prev_ = nullptr;
    waiter.next_ = first_waiter_;
    if (first_waiter_ != nullptr) first_waiter_->prev_ = &waiter; else last_waiter_ = &waiter;
    first_waiter_ = &waiter;
  } else {
    waiter.prev_ = last_waiter_;
    waiter.next_ = nullptr;
    if (last_waiter_ != nullptr) last_waiter_->next_ = &waiter; else first_waiter_ = &waiter;
    last_waiter_ = &waiter;
  }
  ServerCounters::add(counters_.queued);
  ++waiter_count_;
  if (shared_waiters_ != nullptr) shared_waiters_->fetch_add(1, std::memory_order_relaxed);
  if (first_waiter_ == &waiter) publishFirstTicket();
  scheduleWake(kWaiterRecheckMs);
}

void Pool::dequeue(PoolWaiter& waiter) {
  if (!waiter.queued_) return;
  const bool was_first = first_waiter_ == &waiter;
  if (waiter.prev_ != nullptr) waiter.prev_->next_ = waiter.next_; else first_waiter_ = waiter.next_;
  if (waiter.next_ != nullptr) waiter.next_->prev_ = waiter.prev_; else last_waiter_ = waiter.prev_;
  waiter.prev_ = waiter.next_ = nullptr;
  waiter.queued_ = false;
  ServerCounters::sub(counters_.queued);
  --waiter_count_;
  if (shared_waiters_ != nullptr) shared_waiters_->fetch_sub(1, std::memory_order_relaxed);
  if (was_first) publishFirstTicket();
}

void Pool::publishFirstTicket() {
  if (tickets_ != nullptr) {
    tickets_->first[slot_].store(first_waiter_ != nullptr ? first_waiter_->ticket_ : 0, std::memory_order_relaxed);
  }
  claim_seen_ms_ = 0;
}

// Our first waiter was claimed by a worker sending it a connection, and no
// connection came: it was lost on the way (the master could not pass it on),
// or a new request of ours took it before the waiter's turn. After a while
// the waiter shows again, or no other worker would ever send it one.
void Pool::renewStaleClaim() {
  if (tickets_ == nullptr || first_waiter_ == nullptr) return;
  if (tickets_->first[slot_].load(std::memory_order_relaxed) != 0) {
    claim_seen_ms_ = 0;
  } else if (claim_seen_ms_ == 0) {
    claim_seen_ms_ = timers_.now();
  } else if (timers_.now() - claim_seen_ms_ >= kWaiterRecheckMs) {
    publishFirstTicket();
  }
}

void Pool::noteQueueTimeout() { ServerCounters::add(counters_.queue_timeouts_total); }

// The waiters whose deadline has come are told, one at a time (what one of
// them does may take others off the queue); the timer then goes to the
// earliest deadline left. Deadlines follow the queue's order except for
// waiters put back at the front, so the whole queue is looked at: once per
// firing, and it fires about once per queue_timeout while requests wait.
void Pool::onDeadlineTimer() {
  const uint64_t now = timers_.now();
  for (;;) {
    PoolWaiter* due = first_waiter_;
    while (due != nullptr && due->deadline_ms_ > now) due = due->next_;
    if (due == nullptr) break;
    dequeue(*due);
    noteQueueTimeout();
    due->onQueueTimeout();
  }
  uint64_t earliest = UINT64_MAX;
  for (PoolWaiter* w = first_waiter_; w != nullptr; w = w->next_) earliest = std::min(earliest, w->deadline_ms_);
  if (earliest != UINT64_MAX) deadline_timer_.armAt(earliest);
}

void Pool::scheduleWake(uint64_t delay_ms) {
  if (!wake_timer_.armed() || timers_.now() + delay_ms < wake_timer_.deadline()) wake_timer_.arm(delay_ms);
}

void Pool::onWakeTimer() {
  // One waiter per usable connection or free place, in arrival order.
  while (first_waiter_ != nullptr && (idle_count_ > 0 || !atCap())) {
    PoolWaiter& waiter = *first_waiter_;
    dequeue(waiter);
    serving_ticket_ = waiter.ticket_;
    waiter.onPoolAvailable();  // takes a connection, or queues again at the front
    serving_ticket_ = 0;
    if (waiter.queued_) break;  // it could not (another worker was faster, or came first): later
  }
  renewStaleClaim();
  if (first_waiter_ != nullptr) scheduleWake(kWaiterRecheckMs);
}

// Requests of other workers wait for a place under max_conns while none of
// ours does: an idle connection here would only keep them waiting.
bool Pool::othersWait() const {
  return shared_waiters_ != nullptr && waiter_count_ == 0 &&
         shared_waiters_->load(std::memory_order_relaxed) > 0;
}

void Pool::armYieldTimer() {
  if (shared_waiters_ != nullptr && idle_count_ > 0 && !yield_timer_.armed()) yield_timer_.arm(kWaiterRecheckMs);
}

void Pool::onYieldTimer() {
  uint32_t slot = 0;
  if (courier_ != nullptr) {
    // Idle here while requests wait elsewhere (they came in while our own
    // queue was empty): the coldest goes to the oldest of them.
    if (tail_ != nullptr && claimOlderWaiter(&slot)) {
      PoolMember& member = *tail_;
      unlink(member);
      ServerCounters::sub(counters_.idle);
      handOver(member, slot, timers_.now() - member.idle_since_ms_);
    }
  } else if (othersWait() && tail_ != nullptr) {
    ServerCounters::add(counters_.no_reuse_total[static_cast<int>(NoReuse::kYielded)]);
    tail_->evictFromPool();  // the coldest goes; its place is free for the others
  }
  armYieldTimer();
}

// Is a request of another worker waiting since before `ticket`?
bool Pool::olderWaiterElsewhere(uint64_t ticket) const {
  if (tickets_ == nullptr) return false;
  if (shared_waiters_->load(std::memory_order_relaxed) <= static_cast<int32_t>(waiter_count_)) return false;
  for (uint32_t i = 0; i < kMaxPoolSlots; ++i) {
    if (i == slot_) continue;
    const uint64_t first = tickets_->first[i].load(std::memory_order_relaxed);
    if (first != 0 && first < ticket) return true;
  }
  return false;
}

bool Pool::claimOlderWaiter(uint32_t* slot) {
  if (tickets_ == nullptr) return false;
  // Cheap first: the scan runs only while some other worker has requests queued.
  if (shared_waiters_->load(std::memory_order_relaxed) <= static_cast<int32_t>(waiter_count_)) return false;
  const uint64_t own = first_waiter_ != nullptr ? first_waiter_->ticket_ : UINT64_MAX;
  for (int attempt = 0; attempt < 4; ++attempt) {
    uint64_t oldest = own;
    uint32_t oldest_slot = kMaxPoolSlots;
    for (uint32_t i = 0; i < kMaxPoolSlots; ++i) {
      if (i == slot_) continue;
      const uint64_t first = tickets_->first[i].load(std::memory_order_relaxed);
      if (first != 0 && first < oldest) {
        oldest = first;
        oldest_slot = i;
      }
    }
    if (oldest_slot == kMaxPoolSlots) return false;
    // Claimed: no other worker sends that request a second connection; its
    // worker publishes its next waiter once this one is served (or gone).
    if (tickets_->first[oldest_slot].compare_exchange_strong(oldest, 0, std::memory_order_relaxed)) {
      *slot = oldest_slot;
      return true;
    }
  }
  return false;
}

// `member` is already out of the lists and the idle/active counts. Its place
// under max_conns travels with it: the receiver holds it from now on.
void Pool::handOver(PoolMember& member, uint32_t slot, uint64_t idle_ms) {
  HandOverNote note;
  note.server = shared_key_;
  note.target = slot;
  note.idle_ms = idle_ms;
  const int fd = member.detachSocket(note);
  if (courier_->send(fd, note)) {
    ServerCounters::add(counters_.handed_total);
  } else {
    ServerCounters::add(counters_.no_reuse_total[static_cast<int>(NoReuse::kYielded)]);
    unreserve();  // closed: its place is free
  }
}

void Pool::adopt(PoolMember& member) {
  ServerCounters::add(counters_.received_total);
  ServerCounters::add(counters_.idle);
  pushIdle(member);
  publishFirstTicket();  // the claim is answered: whatever happens to it now, our queue shows again
  if (first_waiter_ != nullptr) scheduleWake(0);
  armYieldTimer();
}

// At max_conns with requests waiting in several workers: keep connections in
// proportion to our share of the waiting requests, give the rest up. (A worker
// that kept every connection for its own queue would starve the others.) The
// shares are rebalanced one connection per kYieldSpacingMs at most: the queues
// swing by a request or two all the time, and following every swing would
// close and reopen a connection per request.
bool Pool::shouldYield() const {
  if (shared_waiters_ == nullptr) return false;
  if (last_yield_ms_ != 0 && timers_.now() < last_yield_ms_ + kYieldSpacingMs) return false;
  const int64_t total = shared_waiters_->load(std::memory_order_relaxed);
  if (total <= static_cast<int64_t>(waiter_count_)) return false;  // nobody else waits
  const uint64_t own = ServerCounters::get(counters_.idle) + ServerCounters::get(counters_.active);
  return own * static_cast<uint64_t>(total) > uint64_t{config_.max_conns} * waiter_count_;
}

Checkin Pool::checkin(PoolMember& member, NoReuse verdict) {
  // Surplus idle connections are trimmed later (onIdleTimer), not refused
  // here; only max_idle = 0 means "never pool".
  if (verdict == NoReuse::kReusable && config_.max_idle == 0) verdict = NoReuse::kPoolFull;
  uint32_t slot = 0;
  if (verdict == NoReuse::kReusable && courier_ != nullptr && claimOlderWaiter(&slot)) {
    ServerCounters::sub(counters_.active);
    handOver(member, slot, 0);
    return Checkin::kHandedOver;
  }
  if (verdict == NoReuse::kReusable && courier_ == nullptr && shouldYield()) {
    verdict = NoReuse::kYielded;
    last_yield_ms_ = timers_.now();
    yielded_until_ms_ = last_yield_ms_ + 2 * kWaiterRecheckMs;
  }
  if (verdict != NoReuse::kReusable) {
    ServerCounters::add(counters_.no_reuse_total[static_cast<int>(verdict)]);
    return Checkin::kRefused;
  }
  ServerCounters::sub(counters_.active);
  ServerCounters::add(counters_.idle);
  pushIdle(member);
  if (first_waiter_ != nullptr) {  // it is the first waiter's, as soon as the loop comes round
    ServerCounters::add(counters_.direct_total);
    scheduleWake(0);
  }
  armYieldTimer();
  return Checkin::kPooled;
}

void Pool::noteConnecting() { noteActive(); }

void Pool::noteActive() {
  ServerCounters::add(counters_.active);
  const uint64_t active = ServerCounters::get(counters_.active);
  const uint64_t now = timers_.now();
  const uint64_t start = ServerCounters::get(counters_.demand_window_ms);
  if (now >= start + kDemandWindowMs) {  // a new window (rolled lazily: no timer)
    const bool adjacent = now < start + 2 * kDemandWindowMs;
    ServerCounters::set(counters_.demand_previous, adjacent ? ServerCounters::get(counters_.demand_current) : 0);
    ServerCounters::set(counters_.demand_current, 0);
    ServerCounters::set(counters_.demand_window_ms, now);
  }
  if (active > ServerCounters::get(counters_.demand_current)) ServerCounters::set(counters_.demand_current, active);
}

void Pool::noteConnected() { ServerCounters::add(counters_.opened_total); }

void Pool::noteFailed() { ServerCounters::add(counters_.failed_total); }

void Pool::noteReused() { ServerCounters::add(counters_.reused_total); }

void Pool::noteClosed(PoolMember& member) {
  if (member.idle_) {
    unlink(member);
    ServerCounters::sub(counters_.idle);
  } else {
    ServerCounters::sub(counters_.active);
  }
  unreserve();
}

void Pool::closeIdle() {
  while (tail_ != nullptr) tail_->evictFromPool();
  idle_timer_.cancel();
  yield_timer_.cancel();
}

void Pool::pushIdle(PoolMember& member) {
  member.idle_ = true;
  member.idle_since_ms_ = timers_.now();
  member.prev_ = nullptr;
  member.next_ = head_;
  if (head_ != nullptr) head_->prev_ = &member;
  head_ = &member;
  if (tail_ == nullptr) tail_ = &member;
  ++idle_count_;
  // Past max_idle the coldest may be due sooner (trim_after): look again.
  if (!idle_timer_.armed() || idle_count_ == config_.max_idle + 1) armIdleTimer();
}

void Pool::unlink(PoolMember& member) {
  if (member.prev_ != nullptr) member.prev_->next_ = member.next_; else head_ = member.next_;
  if (member.next_ != nullptr) member.next_->prev_ = member.prev_; else tail_ = member.prev_;
  member.prev_ = member.next_ = nullptr;
  member.idle_ = false;
  --idle_count_;
}

// The next time the coldest idle connection must go: at idle_timeout, or
// sooner at trim_after while the pool holds more than max_idle.
void Pool::armIdleTimer() {
  if (tail_ == nullptr) return;
  uint64_t deadline = UINT64_MAX;
  if (config_.idle_timeout > 0) deadline = tail_->idle_since_ms_ + secondsToMs(config_.idle_timeout);
  if (idle_count_ > config_.max_idle) {
    deadline = std::min(deadline, tail_->idle_since_ms_ + secondsToMs(config_.trim_after));
  }
  if (deadline != UINT64_MAX) idle_timer_.armAt(deadline);
}

void Pool::onIdleTimer() {
  const uint64_t now = timers_.now();
  const uint64_t timeout = config_.idle_timeout > 0 ? secondsToMs(config_.idle_timeout) : UINT64_MAX;
  const uint64_t trim_after = secondsToMs(config_.trim_after);
  while (tail_ != nullptr) {
    const uint64_t idle = now - tail_->idle_since_ms_;
    if (idle >= timeout) {
      ServerCounters::add(counters_.closed_idle_total);
    } else if (idle_count_ > config_.max_idle && idle >= trim_after) {
      ServerCounters::add(counters_.trimmed_total);
    } else {
      break;
    }
    tail_->evictFromPool();
  }
  armIdleTimer();
}

}  // namespace poolgate
