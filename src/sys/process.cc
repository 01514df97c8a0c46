#include "sys/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "sys/io.h"

namespace cove::sys {

Result<UniqueFd> PidfdOpen(pid_t pid) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return SysError("pidfd_open " + std::to_string(pid));
  return UniqueFd(fd);
}

Status PidfdSignal(int pidfd, int sig) {
  if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) != 0) {
    int err = errno;
    if (err == ESRCH) return Error{ErrorCode::kNotFound, err, "process gone", {}};
    return SysError("pidfd_send_signal", err);
  }
  return OkStatus();
}

Result<bool> PidfdWaitExit(int pidfd, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    pollfd p{pidfd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysError("poll pidfd");
    }
    if (n > 0) return true;
    if (left.count() == 0) return false;
  }
}

Result<int> PidfdTryReap(int pidfd) {
  siginfo_t si{};
  for (;;) {
    int r = ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &si, WEXITED | WNOHANG);
    if (r == 0) break;
    if (errno == EINTR) continue;
    if (errno == ECHILD) return Error{ErrorCode::kNotFound, ECHILD, "not our child", {}};
    return SysError("waitid pidfd");
  }
  if (si.si_pid == 0) return MakeError(ErrorCode::kFailedPrecondition, "still running");
  // Rebuild a wait(2)-style status.
  if (si.si_code == CLD_EXITED) return (si.si_status & 0xff) << 8;
  return si.si_status & 0x7f;
}

}  // namespace cove::sys
