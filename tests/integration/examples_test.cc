// The shipped example configurations (examples/*.conf) pass `poolgate -t`.
//
// Every example is copied into a temporary folder, where the self-signed certificate
// and key that the TLS example names (certs/example.crt, certs/example.key) are
// generated with openssl: no private key is kept in the repository.
#include <algorithm>
#include <filesystem>

#include "tests/integration/harness.h"

namespace pgtest {
namespace {

namespace fs = std::filesystem;

// tests/integration/examples_test.cc -> the repository root.
fs::path repoRoot() { return fs::path(__FILE__).parent_path().parent_path().parent_path(); }

std::vector<fs::path> exampleFiles() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(repoRoot() / "examples")) {
    if (entry.is_regular_file() && entry.path().extension() == ".conf") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

CommandResult check(const std::string& path) { return runCommand({POOLGATE_BINARY, "-t", "-c", path}); }

class Examples : public ::testing::Test {
 protected:
  // Copies every example into dir_; with `certs`, also writes certs/example.{crt,key}.
  void copyExamples(bool certs) {
    for (const fs::path& file : exampleFiles()) {
      fs::copy_file(file, fs::path(dir_.path()) / file.filename(), fs::copy_options::overwrite_existing);
    }
    if (!certs) return;
    fs::create_directories(dir_.file("certs"));
    makeSelfSignedCertificate("www.example.com", "DNS:www.example.com,DNS:example.com", dir_.file("certs/example.key"),
                              dir_.file("certs/example.crt"));
  }
  TempDir dir_;
};

TEST_F(Examples, TheDocumentedOnesAreThere) {
  std::vector<std::string> names;
  for (const fs::path& file : exampleFiles()) names.push_back(file.filename().string());
  for (const char* expected : {"minimal.conf", "prefork-app-tls.conf", "routes.conf"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
  }
  EXPECT_TRUE(fs::exists(repoRoot() / "examples" / "README.md"));
  // No private key shipped with them.
  for (const auto& entry : fs::recursive_directory_iterator(repoRoot() / "examples")) {
    EXPECT_NE(entry.path().extension(), ".key") << entry.path();
    if (entry.is_regular_file()) {
      EXPECT_EQ(readFile(entry.path().string()).find("PRIVATE KEY-----"), std::string::npos) << entry.path();
    }
  }
}

TEST_F(Examples, EveryExamplePassesCheck) {
  copyExamples(/*certs=*/true);
  for (const fs::path& file : exampleFiles()) {
    const std::string copy = dir_.file(file.filename().string());
    CommandResult r = check(copy);
    EXPECT_EQ(r.status.code(), 0) << file.filename() << ":\n" << r.out << r.err;
    EXPECT_NE(r.out.find("configuration ok"), std::string::npos) << file.filename() << ": " << r.out;
    // An example shows good practice: nothing -t would warn about.
    EXPECT_EQ(r.err.find("warning"), std::string::npos) << file.filename() << ":\n" << r.err;
  }
}

// The TLS example really reads its certificate: without the files, -t says which.
TEST_F(Examples, TlsExampleNeedsItsCertificateFiles) {
  copyExamples(/*certs=*/false);
  CommandResult r = check(dir_.file("prefork-app-tls.conf"));
  EXPECT_EQ(r.status.code(), 1) << r.out << r.err;
  EXPECT_NE(r.err.find("listen[0].tls.certificates[0].cert"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(dir_.file("certs/example.crt")), std::string::npos) << r.err;
}

}  // namespace
}  // namespace pgtest
