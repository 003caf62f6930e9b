// Command line: -t, -V, -h, usage errors and start-up errors.
#include <algorithm>
#include <cctype>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

std::string lowerCase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

CommandResult poolgate(std::vector<std::string> args) {
  args.insert(args.begin(), POOLGATE_BINARY);
  return runCommand(args);
}

class Cli : public ::testing::Test {
 protected:
  TempDir dir_;
};

TEST_F(Cli, CheckGoodConfig) {
  std::string path = dir_.write("good.conf", proxyConfig("127.0.0.1:5000", 2));
  CommandResult r = poolgate({"-t", "-c", path});
  EXPECT_EQ(r.status.code(), 0) << r.status.describe() << "\n" << r.err;
  EXPECT_NE((r.out + r.err).find("configuration ok"), std::string::npos) << r.out << r.err;
}

TEST_F(Cli, CheckConfigWithUnknownKeyNamesFileLineAndKey) {
  std::string config = proxyConfig("127.0.0.1:5000", 2);
  // Line 3 becomes the typo.
  size_t secondLineEnd = config.find('\n', config.find('\n') + 1);
  config.insert(secondLineEnd + 1, "wrokers = 2;\n");
  std::string path = dir_.write("typo.conf", config);
  CommandResult r = poolgate({"-t", "-c", path});
  EXPECT_EQ(r.status.code(), 1) << r.status.describe();
  EXPECT_NE(r.err.find("typo.conf:3:"), std::string::npos) << "stderr: " << r.err;
  EXPECT_NE(r.err.find("wrokers"), std::string::npos) << "stderr: " << r.err;
}

TEST_F(Cli, CheckConfigWithSyntaxErrorNamesFileAndLine) {
  std::string path = dir_.write("syntax.conf", "workers = 2;\nlisten = ( { address = ;\n");
  CommandResult r = poolgate({"-t", "-c", path});
  EXPECT_EQ(r.status.code(), 1) << r.status.describe();
  EXPECT_NE(r.err.find("syntax.conf:2"), std::string::npos) << "stderr: " << r.err;
}

TEST_F(Cli, StartWithBadConfigExits1) {
  std::string path = dir_.write("bad.conf", "workers = \"many\";\n");
  CommandResult r = poolgate({"-c", path});
  EXPECT_EQ(r.status.code(), 1) << r.status.describe();
  EXPECT_NE(r.err.find("bad.conf:1:"), std::string::npos) << "stderr: " << r.err;
}

TEST_F(Cli, StartWithListenAddressInUseExits1) {
  ReservedPort taken;
  std::string config = proxyConfig("127.0.0.1:5000", 1);
  config.replace(config.find("127.0.0.1:0"), 11, taken.address());
  std::string path = dir_.write("busy.conf", config);
  CommandResult r = poolgate({"-c", path});
  EXPECT_EQ(r.status.code(), 1) << r.status.describe() << "\n" << r.err;
}

TEST_F(Cli, UnknownFlagIsUsageError) {
  CommandResult r = poolgate({"-Z"});
  EXPECT_EQ(r.status.code(), 2) << r.status.describe();
}

TEST_F(Cli, MissingFlagArgumentIsUsageError) {
  CommandResult r = poolgate({"-c"});
  EXPECT_EQ(r.status.code(), 2) << r.status.describe();
}

TEST_F(Cli, VersionNamesLibraries) {
  CommandResult r = poolgate({"-V"});
  EXPECT_EQ(r.status.code(), 0) << r.status.describe();
  std::string text = lowerCase(r.out + r.err);
  for (const char* name : {"poolgate", "0.1.0", "llhttp", "c-ares", "openssl", "libconfig"})
    EXPECT_NE(text.find(name), std::string::npos) << name << " missing in: " << r.out << r.err;
}

TEST_F(Cli, HelpShowsUsage) {
  CommandResult r = poolgate({"-h"});
  EXPECT_EQ(r.status.code(), 0) << r.status.describe();
  std::string text = r.out + r.err;
  for (const char* flag : {"-c", "-t", "-s", "-V"})
    EXPECT_NE(text.find(flag), std::string::npos) << flag << " missing in: " << text;
}

}  // namespace
}  // namespace pgtest
