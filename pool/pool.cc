#include "pool/pool.h"

#include "core/clock.h"

namespace poolgate {

NoReuse reuseVerdict(const ReuseFacts& facts, const PoolConfig& config) {
  if (facts.error) return NoReuse::kError;
  if (!facts.response_complete || !facts.length_delimited) return NoReuse::kResponseNotDone;
  if (!facts.upstream_keep_alive) return NoReuse::kUpstreamClose;
  if (!facts.request_sent) return NoReuse::kRequestNotSent;
  if (facts.unread_bytes) return NoReuse::kUnreadBytes;
  if (facts.exiting) return NoReuse::kExiting;
  if (config.max_requests != 0 && facts.requests_served >= config.max_requests) {
    return NoReuse::kMaxRequests;
  }
  if (config.max_lifetime > 0 && facts.age_ms >= secondsToMs(config.max_lifetime)) {
    return NoReuse::kMaxLifetime;
  }
  return NoReuse::kReusable;
}

Pool::Pool(TimerQueue& timers, const PoolConfig& config, ServerCounters& counters)
    : config_(config), counters_(counters), timers_(timers), idle_timer_(timers, [this] { onIdleTimer(); }) {}

Pool::~Pool() { closeIdle(); }

PoolMember* Pool::checkout() {
  while (head_ != nullptr) {
    PoolMember& member = *head_;
    unlink(member);
    ServerCounters::sub(counters_.idle);
    ServerCounters::add(counters_.active);
    bool too_old = config_.max_lifetime > 0 &&
                   timers_.now() - member.created_ms_ >= secondsToMs(config_.max_lifetime);
    if (!too_old && member.probeIdle()) return &member;
    ServerCounters::add(counters_.closed_idle_total);
    member.evictFromPool();  // calls noteClosed(): active--, open--
  }
  return nullptr;
}

bool Pool::checkin(PoolMember& member, NoReuse verdict) {
  if (verdict == NoReuse::kReusable && idle_count_ >= config_.max_idle) verdict = NoReuse::kPoolFull;
  if (verdict != NoReuse::kReusable) {
    ServerCounters::add(counters_.no_reuse_total[static_cast<int>(verdict)]);
    return false;
  }
  ServerCounters::sub(counters_.active);
  ServerCounters::add(counters_.idle);
  pushIdle(member);
  return true;
}

void Pool::noteConnecting() {
  ServerCounters::add(counters_.open);
  ServerCounters::add(counters_.active);
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
  ServerCounters::sub(counters_.open);
}

void Pool::closeIdle() {
  while (tail_ != nullptr) tail_->evictFromPool();
  idle_timer_.cancel();
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
  if (!idle_timer_.armed()) armIdleTimer();
}

void Pool::unlink(PoolMember& member) {
  if (member.prev_ != nullptr) member.prev_->next_ = member.next_; else head_ = member.next_;
  if (member.next_ != nullptr) member.next_->prev_ = member.prev_; else tail_ = member.prev_;
  member.prev_ = member.next_ = nullptr;
  member.idle_ = false;
  --idle_count_;
}

void Pool::armIdleTimer() {
  if (tail_ == nullptr || config_.idle_timeout <= 0) return;
  idle_timer_.armAt(tail_->idle_since_ms_ + secondsToMs(config_.idle_timeout));
}

void Pool::onIdleTimer() {
  uint64_t timeout = secondsToMs(config_.idle_timeout);
  while (tail_ != nullptr && tail_->idle_since_ms_ + timeout <= timers_.now()) {
    ServerCounters::add(counters_.closed_idle_total);
    tail_->evictFromPool();
  }
  armIdleTimer();
}

}  // namespace poolgate
