// Binary upgrade (SIGUSR2): a new master is started from the binary on
// disk; it inherits the listening sockets and the TLS ticket secret.
#include "process/master.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include <cstdio>
#include <cstdlib>

#include "core/log.h"

namespace poolgate {

namespace {

// A binary upgrade hands the TLS ticket secret over through a pipe whose
// read end the new master inherits (never through the environment itself).
constexpr const char* kTicketSecretVariable = "POOLGATE_TICKET_SECRET_FD";

}  // namespace

void Master::setInvocation(std::string executable, std::vector<std::string> argv, std::string cwd) {
  executable_ = std::move(executable);
  argv_ = std::move(argv);
  cwd_ = std::move(cwd);
}

std::vector<Master::ListenerSockets> Master::inheritedListeners() {
  std::vector<ListenerSockets> inherited;
  const char* value = getenv(kInheritVariable);
  if (value == nullptr) return inherited;
  std::string_view rest = value;
  while (!rest.empty()) {
    size_t end = rest.find(';');
    std::string_view entry = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    size_t bar1 = entry.find('|'), bar2 = entry.find('|', bar1 + 1);
    if (bar1 == std::string_view::npos || bar2 == std::string_view::npos) continue;
    ListenerSockets sockets;
    sockets.kind = entry.substr(0, bar1) == "admin" ? ListenerKind::kAdmin : ListenerKind::kProxy;
    sockets.tls = entry.substr(0, bar1) == "tls";
    sockets.address = std::string(entry.substr(bar1 + 1, bar2 - bar1 - 1));
    std::string_view fds = entry.substr(bar2 + 1);
    while (!fds.empty()) {
      size_t comma = fds.find(',');
      int fd = atoi(std::string(fds.substr(0, comma)).c_str());
      if (fd > 2 && fcntl(fd, F_GETFD) >= 0) sockets.fds.emplace_back(fd);
      fds = comma == std::string_view::npos ? std::string_view() : fds.substr(comma + 1);
    }
    LOG_INFO("took over %zu inherited socket(s) for %s", sockets.fds.size(), sockets.address.c_str());
    inherited.push_back(std::move(sockets));
  }
  return inherited;
}

void Master::upgradeBinary() {
  if (stopping_) return;
  if (upgrade_pid_ != 0) {
    LOG_WARN("SIGUSR2: a binary upgrade is already running (new master pid %d)", static_cast<int>(upgrade_pid_));
    return;
  }
  if (executable_.empty()) {
    LOG_ERROR("SIGUSR2: the path of the binary is unknown; no upgrade");
    return;
  }
  std::string listeners;
  for (const ListenerSockets& sockets : listeners_) {
    if (!listeners.empty()) listeners += ';';
    listeners += sockets.kind == ListenerKind::kAdmin ? "admin|" : sockets.tls ? "tls|" : "proxy|";
    listeners += sockets.address + '|';
    for (size_t i = 0; i < sockets.fds.size(); ++i) {
      if (i > 0) listeners += ',';
      listeners += std::to_string(sockets.fds[i].get());
    }
  }
  // The new master writes pid_file; ours moves aside, as nginx does.
  if (pid_file_written_) {
    std::string oldbin = config_.pid_file + ".oldbin";
    if (rename(pid_file_path_.c_str(), oldbin.c_str()) == 0) {
      pid_file_path_ = oldbin;
    } else {
      LOG_ERROR("rename %s: %s", pid_file_path_.c_str(), strerror(errno));
    }
  }
  pid_t pid = fork();
  if (pid < 0) {
    LOG_ERROR("SIGUSR2: fork: %s", strerror(errno));
    return;
  }
  if (pid == 0) execNewMaster(listeners);
  upgrade_pid_ = pid;
  LOG_INFO("SIGUSR2: started new master %s (pid %d); send this master SIGQUIT once it serves",
           executable_.c_str(), static_cast<int>(pid));
}

void Master::execNewMaster(const std::string& listeners) {
  // The listening sockets must survive exec; nothing else of ours should.
  for (const ListenerSockets& sockets : listeners_) {
    for (const Fd& fd : sockets.fds) fcntl(fd.get(), F_SETFD, 0);
  }
  setenv(kInheritVariable, listeners.c_str(), 1);
  // The ticket secret, in a pipe (32 bytes: they fit its buffer, no reader needed yet).
  int secret_pipe[2];
  if (ticket_keys_.ready() && pipe(secret_pipe) == 0) {
    if (write(secret_pipe[1], ticket_keys_.secret(), TicketKeys::kSecretBytes) ==
        static_cast<ssize_t>(TicketKeys::kSecretBytes)) {
      setenv(kTicketSecretVariable, std::to_string(secret_pipe[0]).c_str(), 1);
    } else {
      ::close(secret_pipe[0]);
    }
    ::close(secret_pipe[1]);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);
  if (!cwd_.empty() && chdir(cwd_.c_str()) != 0) _exit(126);
  std::vector<char*> argv;
  for (std::string& arg : argv_) argv.push_back(arg.data());
  argv.push_back(nullptr);
  execv(executable_.c_str(), argv.data());
  LOG_ERROR("exec %s: %s", executable_.c_str(), strerror(errno));
  _exit(127);
}

bool Master::adoptTicketSecret() {
  const char* value = getenv(kTicketSecretVariable);
  if (value == nullptr) return false;
  const int fd = atoi(value);
  unsetenv(kTicketSecretVariable);
  if (fd <= 2) return false;
  unsigned char secret[TicketKeys::kSecretBytes];
  const bool ok = read(fd, secret, sizeof secret) == static_cast<ssize_t>(sizeof secret);
  ::close(fd);
  if (!ok) return false;
  ticket_keys_.adopt(secret);
  OPENSSL_cleanse(secret, sizeof secret);
  LOG_INFO("took over the TLS ticket secret of the previous master");
  return true;
}

}  // namespace poolgate
