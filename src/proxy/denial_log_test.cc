// DenialLog: it keeps the newest denials of a bounded number of sandboxes,
// and a sandbox denied in a loop does not flood coved's log.
#include "proxy/denial_log.h"

#include <unistd.h>

#include <cstdio>

#include <gtest/gtest.h>

namespace cove::proxy {
namespace {

TEST(DenialLog, KeepsTheNewestPerSandboxAndBoundsSandboxes) {
  DenialLog log(/*per_sandbox=*/2, /*max_sandboxes=*/2);
  for (int i = 0; i < 3; ++i) log.Record(Denial{"a", "h" + std::to_string(i) + ":80", "", "r"});
  uint64_t total = 0;
  auto a = log.Recent("a", &total);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(total, 3u);
  EXPECT_EQ(a.back().denial.destination, "h2:80");
  log.Record(Denial{"b", "x:80", "", "r"});
  log.Record(Denial{"c", "y:80", "", "r"});  // a third sandbox: the one with the oldest denial goes
  EXPECT_EQ(log.Recent("c", &total).size(), 1u);
  EXPECT_EQ(log.Recent("b", &total).size() + log.Recent("a", &total).size(), 1u);
  log.Forget("c");
  EXPECT_TRUE(log.Recent("c", &total).empty());
  EXPECT_EQ(total, 0u);
}

// Reads what the process writes to stderr (where coved logs) meanwhile.
class CapturedStderr {
 public:
  CapturedStderr() {
    std::fflush(stderr);
    saved_ = dup(STDERR_FILENO);
    file_ = std::tmpfile();
    dup2(fileno(file_), STDERR_FILENO);
  }
  ~CapturedStderr() {
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    std::fclose(file_);
  }
  std::string Text() {
    std::string out;
    std::rewind(file_);
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, file_)) > 0;) out.append(buf, n);
    return out;
  }

 private:
  int saved_ = -1;
  FILE* file_ = nullptr;
};

TEST(DenialLog, ASandboxDeniedInALoopDoesNotFloodTheLog) {
  DenialLog log;
  CapturedStderr captured;
  for (int i = 0; i < 1000; ++i) log.Record(Denial{"loop", "evil.test:443", "", "too many connections"});
  log.Record(Denial{"other", "evil.test:443", "", "denied"});
  std::string text = captured.Text();
  size_t loop_lines = 0, other_lines = 0;
  for (size_t at = 0; (at = text.find("sandbox loop:", at)) != std::string::npos; ++at) ++loop_lines;
  for (size_t at = 0; (at = text.find("sandbox other:", at)) != std::string::npos; ++at) ++other_lines;
  EXPECT_GE(loop_lines, 1u);
  EXPECT_LT(loop_lines, 10u) << "one line per 10 s, not one per denial";
  EXPECT_EQ(other_lines, 1u) << "another sandbox's denial is not held back";
  uint64_t total = 0;
  log.Recent("loop", &total);
  EXPECT_EQ(total, 1000u) << "the API still sees every denial";
}

}  // namespace
}  // namespace cove::proxy
