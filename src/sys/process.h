// Process handles: pidfd wrappers and the start-time identity of a pid.
//
// A pid alone can be reused after its process dies; (pid, start_time_ticks) or
// a pidfd identifies one process for its whole life.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string_view>

#include "base/error.h"
#include "sys/unique_fd.h"

namespace cove::sys {

// pidfd_open(2); the fd is close-on-exec.
Result<UniqueFd> PidfdOpen(pid_t pid);
// pidfd_send_signal(2). ESRCH (already gone) is reported as kNotFound.
Status PidfdSignal(int pidfd, int sig);
// Waits until the process behind pidfd has exited (pidfd readable) or the
// timeout passes. Returns true if it exited. Does not reap.
Result<bool> PidfdWaitExit(int pidfd, std::chrono::milliseconds timeout);
// Reaps the process behind pidfd if it is our child and has exited.
// Returns its wait(2)-style status; kFailedPrecondition if still running,
// kNotFound (ECHILD) if it is not our child.
Result<int> PidfdTryReap(int pidfd);

}  // namespace cove::sys
