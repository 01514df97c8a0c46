#include "sys/process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace cove::sys {
namespace {

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
