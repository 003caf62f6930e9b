#include "process/worker.h"

#include <dirent.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>

#include "admin/admin.h"
#include "core/clock.h"
#include "core/log.h"
#include "process/listener.h"
#include "proxy/client_connection.h"
#include "proxy/routing.h"

namespace poolgate {

namespace {

// How long accepting stays off after accept() ran out of descriptors, or
// between two looks at the descriptor budget while it is spent.
constexpr uint64_t kAcceptRetryMs = 100;

size_t countOpenDescriptors() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  size_t count = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count > 0 ? count - 1 : 0;  // not the directory's own descriptor
}

void copyName(char (&dest)[kNameBytes], const std::string& name) {
  snprintf(dest, sizeof dest, "%s", name.c_str());
}

}  // namespace

Worker::Worker(const Config& config, StatsSegment& segment, size_t slot_index, uint32_t worker_number,
               uint64_t generation, std::vector<ListenSocket> sockets, Fd handover)
    : config_(config),
      segment_(segment),
      slot_(segment.workers[slot_index]),
      slot_index_(static_cast<uint32_t>(slot_index)),
      pid_(getpid()),
      drain_deadline_(loop_.timers(), [this] {
        LOG_WARN("shutdown_timeout reached with %zu client(s) left; exiting", clients_.size());
        loop_.stop();
      }),
      names_timer_(loop_.timers(), [this] {
        syncNames();
        names_timer_.arm(kNamePollMs);
      }),
      accept_retry_(loop_.timers(), [this] { endAcceptBackoff(); }),
      accept_log_(loop_.timers(), LogLevel::kError, "accept", "failures"),
      buffer_log_(loop_.timers(), LogLevel::kError, "response buffering", "failures") {
  slot_.pid.store(getpid(), std::memory_order_relaxed);
  slot_.slot.store(worker_number, std::memory_order_relaxed);
  slot_.generation.store(generation, std::memory_order_relaxed);
  slot_.started_ms.store(realtimeMs(), std::memory_order_relaxed);
  spool_limits_.memory = config.buffering.memory;
  spool_limits_.file = config.buffering.max_temp_file;
  spool_limits_.directory = config.buffering.temp_path;
  spool_budget_.cap = config.buffering.worker_memory;
  if (handover) handover_ = std::make_unique<HandOverPort>(loop_, std::move(handover), slot_.handover_taken,
                                                           static_cast<HandOverSink&>(*this));

  // Describe our upstreams in the slot and build the groups: IP addresses
  // at once, names with the addresses the master's resolver has published
  // (and again whenever it publishes new ones).
  size_t upstream_count = std::min(config.upstreams.size(), kMaxUpstreams);
  for (size_t u = 0; u < upstream_count; ++u) {
    const UpstreamConfig& upstream = config.upstreams[u];
    copyName(slot_.upstreams[u].name, upstream.name);
    slot_.upstreams[u].max_idle = upstream.pool.max_idle;
    upstreams_.push_back(std::make_unique<UpstreamGroup>(upstream, loop_.timers()));
    for (size_t i = 0; i < upstream.servers.size(); ++i) {
      const ServerConfig& server = upstream.servers[i];
      if (server.address.numeric) {
        SocketAddress address;
        if (makeSocketAddress(server.address.host, server.address.port, &address)) {
          addServer(u, server.address.text, address, "", server.weight);
        }
      } else {
        names_.push_back({u, i, findSharedName(segment, upstream.name, server.address.text)});
      }
    }
  }
  slot_.upstream_count.store(static_cast<uint32_t>(upstream_count), std::memory_order_relaxed);
  syncNames();
  if (!names_.empty()) names_timer_.arm(kNamePollMs);

  if (config.max_requests_per_worker != 0) {
    // Up to 10% more, so that workers started together do not recycle together.
    uint64_t n = config.max_requests_per_worker;
    uint64_t seed = static_cast<uint64_t>(getpid()) * 0x9E3779B97F4A7C15ull ^ realtimeMs();
    recycle_after_ = n + (n >= 10 ? (seed >> 17) % (n / 10 + 1) : 0);
  }
  if (!config.log.access.empty()) access_log_ = std::make_unique<AccessLog>(loop_, config.log);
  const bool exclusive = config.accept_mode == AcceptMode::kExclusive;
  for (const ListenSocket& socket : sockets) {
    if (socket.kind == ListenerKind::kAdmin) dashboardHeaders();  // hashed now, not on a request
    listeners_.push_back(std::make_unique<Listener>(*this, socket, exclusive && socket.kind == ListenerKind::kProxy));
  }
  if (config.accept_mode == AcceptMode::kMutex) loop_.setObserver(this);
  setupSignals();
}

Worker::~Worker() {
  // Clients first: they may hold upstream connections that count into pools.
  while (!clients_.empty()) clients_.back()->close();
  for (auto& group : upstreams_) group->closeIdle();
  listeners_.clear();
  loop_.runDeferred();
  access_log_.reset();  // flushes  // while the buffer pool and the servers they use still exist
}

void Worker::addServer(size_t group_index, const std::string& address_text, const SocketAddress& address,
                       const std::string& name, uint32_t weight) {
  UpstreamGroup& group = *upstreams_[group_index];
  const size_t count = slot_.server_count.load(std::memory_order_relaxed);
  const bool own_entry = count < kMaxServers;
  if (!own_entry) {
    LOG_WARN("more than %zu upstream addresses: %s counts into the last stats entry", kMaxServers,
             address_text.c_str());
  }
  const size_t index = own_entry ? count : kMaxServers - 1;
  int shared_index = findSharedServer(segment_, group.name(), address_text);
  ServerSlot& entry = slot_.servers[index];
  SharedServer* shared = shared_index >= 0 ? &segment_.shared[shared_index] : nullptr;
  if (own_entry) {  // filled in before the count that makes it visible
    copyName(entry.address, address_text);
    copyName(entry.name, name);
    entry.upstream = static_cast<uint32_t>(group_index);
    entry.shared_index = shared_index;
    slot_.server_count.store(static_cast<uint32_t>(index + 1), std::memory_order_release);
  }
  ServerStorage storage;
  storage.counters = &entry.counters;
  storage.health = shared != nullptr ? &shared->health : nullptr;
  if (shared != nullptr) {
    storage.pool.conns = &shared->conns;
    storage.pool.waiters = &shared->waiters;
    storage.pool.tickets = &shared->tickets;
    storage.pool.slot = slot_index_;
    storage.pool.server = shared_index;
    // A TLS connection's session lives in this process: it cannot move.
    if (!config_.upstreams[group_index].tls.enabled) storage.pool.courier = handover_.get();
  }
  if (own_entry) storage.in_service = &entry.in_service;
  group.addServer(address_text, address, weight, storage, name);
}

void Worker::onHandedOver(Fd fd, const HandOverNote& note) noexcept {
  Server* server = nullptr;
  for (auto& group : upstreams_) {
    for (size_t i = 0; i < group->size() && server == nullptr; ++i) {
      if (group->server(i).pool().sharedKey() == note.server) server = &group->server(i);
    }
  }
  if (fd && server != nullptr && server->inService() &&
      UpstreamConnection::adopt(loop_, buffers_, &headers_, *server, config_.timeouts, std::move(fd), note) != nullptr) {
    return;
  }
  // Lost on the way (our table was full), or no longer ours to use (a reload
  // removed the server, DNS retired it): closed, and then its place is free.
  fd.reset();
  segment_.shared[note.server].conns.fetch_sub(1, std::memory_order_relaxed);
}

void Worker::syncNames() {
  std::vector<std::string> addresses;
  for (NameWatch& watch : names_) {
    if (watch.shared_name < 0) {  // registered by the master after we started (a reload is on its way)
      const UpstreamConfig& upstream = config_.upstreams[watch.group];
      watch.shared_name = findSharedName(segment_, upstream.name, upstream.servers[watch.server].address.text);
      if (watch.shared_name < 0) continue;
    }
    const SharedName& shared = segment_.names[watch.shared_name];
    if (shared.version.load(std::memory_order_acquire) == watch.version) continue;
    watch.version = readAddresses(shared, &addresses);
    applyAddresses(watch, addresses);
  }
}

// Brings the group in line with a name's current addresses: new ones are
// added, those that dropped out retire (idle connections closed now, busy
// ones when their exchange ends), those that came back are reinstated.
void Worker::applyAddresses(NameWatch& watch, const std::vector<std::string>& addresses) {
  UpstreamGroup& group = *upstreams_[watch.group];
  const ServerConfig& server = config_.upstreams[watch.group].servers[watch.server];
  for (size_t index : watch.servers) {
    const std::string& name = group.server(index).name();
    const bool listed = std::find(addresses.begin(), addresses.end(), name) != addresses.end();
    if (group.server(index).inService() == listed) continue;
    group.setInService(index, listed);
    LOG_DEBUG("upstream %s: %s (%s) %s", group.name().c_str(), name.c_str(), server.address.text.c_str(),
              listed ? "is back in the DNS answer" : "left the DNS answer; retired");
  }
  for (const std::string& text : addresses) {
    if (group.find(text) >= 0) continue;  // ours already, or the same address configured another way
    std::string why;
    std::optional<HostPort> parsed = parseHostPort(text, &why);
    SocketAddress address;
    if (!parsed || !makeSocketAddress(parsed->host, parsed->port, &address)) continue;
    addServer(watch.group, text, address, server.address.text, server.weight);
    watch.servers.push_back(group.size() - 1);
    LOG_DEBUG("upstream %s: %s resolved to %s", group.name().c_str(), server.address.text.c_str(), text.c_str());
  }
}

void Worker::setupSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2}) sigaddset(&set, sig);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  signal_fd_.reset(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (signal_fd_) loop_.add(signal_fd_.get(), EPOLLIN, this);
}

int Worker::run() {
  rlimit limit{};
  fd_limit_ = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY ? limit.rlim_cur : SIZE_MAX;
  fd_reserve_ = config_.fd_reserve != 0 ? config_.fd_reserve : std::max<size_t>(16, fd_limit_ / 8);
  fd_baseline_ = countOpenDescriptors();
  for (auto& listener : listeners_) {
    // With the mutex, proxy listeners wait for the lock (beforePoll()).
    if (config_.accept_mode != AcceptMode::kMutex || listener->kind() != ListenerKind::kProxy) listener->resume();
  }
  proxy_listening_ = config_.accept_mode != AcceptMode::kMutex;
  slot_.state.store(static_cast<uint32_t>(SlotState::kRunning), std::memory_order_release);
  LOG_DEBUG("worker %u running", slot_.slot.load(std::memory_order_relaxed));
  loop_.run();
  return exit_code_;
}

void Worker::onIoEvent(uint32_t) noexcept {
  signalfd_siginfo info;
  while (::read(signal_fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    switch (info.ssi_signo) {
      case SIGTERM:
      case SIGINT:
        loop_.stop();
        break;
      case SIGQUIT:
        beginDrain();
        break;
      case SIGUSR1:
        Log::reopen();
        if (access_log_) access_log_->reopen();
        break;
      default:
        break;  // SIGHUP, SIGUSR2: the master's business
    }
  }
}

const RouteConfig* Worker::route(std::string_view host, std::string_view path) const {
  return findRoute(config_.routes, host, path);
}

AdminAnswer Worker::answerAdmin(std::string_view path) { return poolgate::answerAdmin(segment_, path); }

int64_t Worker::beforePoll() noexcept {
  constexpr int64_t kRetryMs = 50;  // how soon a worker without the lock tries again
  std::atomic<int32_t>& lock = segment_.header.accept_lock;
  int32_t expected = 0;
  bool held = !draining_ && !accept_retry_.armed() && roomForClient() &&
              (lock.load(std::memory_order_acquire) == pid_ ||
               lock.compare_exchange_strong(expected, pid_, std::memory_order_acq_rel));
  setProxyListening(held);
  return held || draining_ ? -1 : kRetryMs;
}

void Worker::afterDispatch() noexcept {
  int32_t mine = pid_;
  segment_.header.accept_lock.compare_exchange_strong(mine, 0, std::memory_order_acq_rel);
}

void Worker::setProxyListening(bool on) {
  proxy_listening_ = on;
  for (auto& listener : listeners_) {
    if (listener->kind() != ListenerKind::kProxy) continue;
    if (on) {
      listener->resume();
    } else {
      listener->pause();
    }
  }
}

void Worker::onClientOpened(ClientConnection& client) {
  client.worker_index = static_cast<uint32_t>(clients_.size());
  clients_.push_back(&client);
  updateAccepting();
}

void Worker::onClientClosed(ClientConnection& client) {
  size_t index = client.worker_index;
  if (index < clients_.size() && clients_[index] == &client) {
    clients_[index] = clients_.back();
    clients_[index]->worker_index = static_cast<uint32_t>(index);
    clients_.pop_back();
  }
  if (draining_) {
    checkDrained();
    return;
  }
  endAcceptBackoff();  // a descriptor is free again: no need to wait out the back-off
}

void Worker::endAcceptBackoff() {
  accept_retry_.cancel();
  if (draining_) return;
  for (auto& listener : listeners_) {
    if (listener->kind() != ListenerKind::kProxy) listener->resume();
  }
  updateAccepting();
}

size_t Worker::descriptorsInUse() const {
  size_t upstream = 0;
  const size_t servers = std::min<size_t>(slot_.server_count.load(std::memory_order_relaxed), kMaxServers);
  for (size_t i = 0; i < servers; ++i) {
    const ServerCounters& counters = slot_.servers[i].counters;
    upstream += ServerCounters::get(counters.idle) + ServerCounters::get(counters.active);
  }
  return fd_baseline_ + clients_.size() + upstream;
}

bool Worker::roomForClient() {
  if (clients_.size() >= config_.worker_connections) return false;
  const size_t in_use = descriptorsInUse();
  const bool short_now = in_use + fd_reserve_ >= fd_limit_;
  if (short_now && !fd_short_ && accept_log_.admit("descriptor reserve reached")) {
    LOG_WARN("%zu of %zu descriptors in use (%zu kept for upstream connections): not accepting new clients "
             "until some close; raise `ulimit -n`",
             in_use, fd_limit_, fd_reserve_);
  }
  fd_short_ = short_now;
  if (short_now && !accept_retry_.armed()) accept_retry_.arm(kAcceptRetryMs);  // upstream closes are not told
  return !short_now;
}

void Worker::updateAccepting() {
  if (draining_ || config_.accept_mode == AcceptMode::kMutex) return;
  const bool want = roomForClient() && !accept_retry_.armed();
  if (want != proxy_listening_) setProxyListening(want);
}

void Worker::onAcceptFailed(int error) {
  if (accept_log_.admit(strerror(error))) {
    LOG_ERROR("accept: %s (%zu clients, about %zu of %zu descriptors in use); not accepting for %llu ms",
              strerror(error), clients_.size(), descriptorsInUse(), fd_limit_,
              static_cast<unsigned long long>(kAcceptRetryMs));
  }
  accept_retry_.arm(kAcceptRetryMs);
  for (auto& listener : listeners_) listener->pause();  // the admin listener too: it would spin as well
  proxy_listening_ = false;
}

void Worker::onRequestDone() {
  ServerCounters::add(slot_.requests);
  if (recycle_after_ != 0 && ++served_ == recycle_after_) {
    // MaxRequestsPerChild: ask the master for a replacement, then drain.
    LOG_INFO("served %llu requests: recycling", static_cast<unsigned long long>(served_));
    kill(getppid(), recycleSignal());
    beginDrain();
  }
}

void Worker::beginDrain() {
  if (draining_) return;
  draining_ = true;
  slot_.state.store(static_cast<uint32_t>(SlotState::kDraining), std::memory_order_relaxed);
  LOG_INFO("draining: %zu client(s) open", clients_.size());
  for (auto& listener : listeners_) listener->drainAndStop();
  // Close idle keep-alive clients now; busy ones close after their response.
  for (size_t i = clients_.size(); i-- > 0;) {
    if (i < clients_.size()) clients_[i]->drain();
  }
  drain_deadline_.arm(secondsToMs(config_.shutdown_timeout));
  checkDrained();
}

void Worker::checkDrained() {
  if (draining_ && clients_.empty()) loop_.stop();
}

}  // namespace poolgate
