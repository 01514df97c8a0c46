#include "sys/process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace cove::sys {
namespace {

TEST(ProcessTest, ParsesStartTimeWithHostileComm) {
  // comm with spaces and parentheses must not shift the fields.
  std::string line =
      "1234 (a) b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 "
      "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  auto r = ParseStartTimeTicks(line);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(*r, 987654u);
  EXPECT_FALSE(ParseStartTimeTicks("1 (x) S 1 2").ok());
  EXPECT_FALSE(ParseStartTimeTicks("garbage").ok());
}

TEST(ProcessTest, StartTimeOfSelfIsStable) {
  auto a = ReadStartTimeTicks(getpid());
  auto b = ReadStartTimeTicks(getpid());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
}

TEST(ProcessTest, PidfdWaitAndReap) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    pause();
    _exit(0);
  }
  auto fd = PidfdOpen(pid);
  ASSERT_TRUE(fd.ok());
  auto w = PidfdWaitExit(fd->get(), std::chrono::milliseconds(10));
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(*w);
  EXPECT_EQ(PidfdTryReap(fd->get()).error().code, ErrorCode::kFailedPrecondition);
  ASSERT_TRUE(PidfdSignal(fd->get(), SIGKILL).ok());
  w = PidfdWaitExit(fd->get(), std::chrono::milliseconds(5000));
  ASSERT_TRUE(w.ok() && *w);
  auto st = PidfdTryReap(fd->get());
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(WIFSIGNALED(*st));
  EXPECT_EQ(WTERMSIG(*st), SIGKILL);
}

}  // namespace
}  // namespace cove::sys
