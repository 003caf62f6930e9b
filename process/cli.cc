#include "process/cli.h"

#include <ares.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <libconfig.h++>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/log.h"
#include "http/parser.h"
#include "process/master.h"
#include "proxy/tls_server.h"
#include "version.h"

namespace poolgate {

namespace {

constexpr const char* kUsage =
    "usage: poolgate [-c FILE] [-t] [-s reload|stop|quit|reopen] [-p PREFIX] [-V] [-h]\n"
    "  -c FILE    configuration file (libconfig syntax); default: built-in\n"
    "  -t         check the configuration and exit\n"
    "  -s SIGNAL  send SIGNAL to the running master (found through pid_file)\n"
    "  -p PREFIX  change to directory PREFIX first (relative paths start there)\n"
    "  -V         print versions and exit\n"
    "  -h         this help\n";

int usageError(const char* message) {
  fprintf(stderr, "poolgate: %s\n%s", message, kUsage);
  return 2;
}

void printVersions() {
  printf("poolgate %s\n", POOLGATE_VERSION);
  printf("llhttp %s\n", llhttpVersion());
  printf("c-ares %s\n", ares_version(nullptr));
  printf("OpenSSL %s\n", OpenSSL_version_num() ? OpenSSL_version(OPENSSL_VERSION) + 8 : "?");
  printf("libconfig %d.%d.%d\n", LIBCONFIGXX_VER_MAJOR, LIBCONFIGXX_VER_MINOR, LIBCONFIGXX_VER_REVISION);
}

int sendSignal(const Config& config, const std::string& name) {
  int sig = 0;
  if (name == "reload") sig = SIGHUP;
  else if (name == "stop") sig = SIGTERM;
  else if (name == "quit") sig = SIGQUIT;
  else if (name == "reopen") sig = SIGUSR1;
  else return usageError(("unknown signal \"" + name + "\"").c_str());
  if (config.pid_file.empty()) {
    fprintf(stderr, "poolgate: -s %s: no pid_file in the configuration\n", name.c_str());
    return 1;
  }
  FILE* file = fopen(config.pid_file.c_str(), "r");
  if (file == nullptr) {
    fprintf(stderr, "poolgate: %s: %s\n", config.pid_file.c_str(), strerror(errno));
    return 1;
  }
  long pid = 0;
  bool read_ok = fscanf(file, "%ld", &pid) == 1 && pid > 0;
  fclose(file);
  if (!read_ok) {
    fprintf(stderr, "poolgate: %s: no pid in it\n", config.pid_file.c_str());
    return 1;
  }
  if (kill(static_cast<pid_t>(pid), sig) != 0) {
    fprintf(stderr, "poolgate: kill %ld: %s\n", pid, strerror(errno));
    return 1;
  }
  return 0;
}

}  // namespace

int runCli(int argc, char** argv) {
  std::string config_path, signal_name, prefix;
  bool test_only = false, versions = false;
  opterr = 0;
  int option;
  while ((option = getopt(argc, argv, ":c:ts:p:Vh")) != -1) {
    switch (option) {
      case 'c': config_path = optarg; break;
      case 't': test_only = true; break;
      case 's': signal_name = optarg; break;
      case 'p': prefix = optarg; break;
      case 'V': versions = true; break;
      case 'h': fputs(kUsage, stdout); return 0;
      case ':': return usageError((std::string("option -") + static_cast<char>(optopt) + " needs a value").c_str());
      default: return usageError((std::string("unknown option -") + static_cast<char>(optopt)).c_str());
    }
  }
  if (optind < argc) return usageError((std::string("unexpected argument \"") + argv[optind] + "\"").c_str());
  if (versions) {
    printVersions();
    return 0;
  }
  char start_dir[4096];
  std::string cwd = getcwd(start_dir, sizeof start_dir) != nullptr ? start_dir : "";
  if (!prefix.empty() && chdir(prefix.c_str()) != 0) {
    fprintf(stderr, "poolgate: -p %s: %s\n", prefix.c_str(), strerror(errno));
    return 1;
  }

  Config config;
  try {
    config = config_path.empty() ? defaultConfig() : loadConfigFile(config_path);
  } catch (const ConfigError& error) {
    for (const std::string& message : error.messages()) fprintf(stderr, "%s\n", message.c_str());
    if (test_only) fprintf(stderr, "configuration has errors\n");
    return 1;
  }
  if (test_only) {
    // Files named by the configuration: certificates, keys, CA files.
    std::vector<std::string> errors = checkTlsFiles(config);
    if (!errors.empty()) {
      for (const std::string& message : errors) fprintf(stderr, "%s\n", message.c_str());
      fprintf(stderr, "configuration has errors\n");
      return 1;
    }
    for (const std::string& warning : configWarnings(config)) fprintf(stderr, "warning: %s\n", warning.c_str());
    printf("configuration ok\n");
    return 0;
  }
  if (!signal_name.empty()) return sendSignal(config, signal_name);

  std::string why;
  if (!Log::open(config.log.error, config.log.level, &why)) {
    fprintf(stderr, "poolgate: log.error: %s\n", why.c_str());
    return 1;
  }
  Master master(std::move(config), config_path);
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  std::string executable = n > 0 ? std::string(exe, static_cast<size_t>(n)) : "";
  // After the binary was replaced on disk, the link names the old, deleted file.
  const std::string deleted = " (deleted)";
  if (executable.size() > deleted.size() && executable.ends_with(deleted)) {
    executable.resize(executable.size() - deleted.size());
  }
  master.setInvocation(executable, std::vector<std::string>(argv, argv + argc), cwd);
  return master.run();
}

}  // namespace poolgate
