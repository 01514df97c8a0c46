// The sandbox's seccomp program: default-allow with a deny list modelled on
// Docker's default profile (kernel modules, kexec, bpf, perf, keyrings, every
// mount API, reboot, swap, raw I/O ports, clock setting, userfaultfd,
// namespace creation/joining, handle-based opens, syslog, io_uring, ...), EPERM
// for denied calls, and SIGSYS-kill for any other architecture (i386, x32).
//
// Compiled once per process, then installed by the sandbox's child process
// with raw seccomp(2) calls (no allocation after clone).
#pragma once

#include <linux/filter.h>

#include "base/error.h"

namespace cove::isolation {

// Installed in this order; both stay valid for the life of the process.
struct SeccompPrograms {
  const sock_fprog* main = nullptr;         // libseccomp-generated deny list + arch check
  const sock_fprog* personality = nullptr;  // hand-written personality(2) value check
};
// Thread-safe; compiled on first use.
Result<const SeccompPrograms*> SandboxSeccompPrograms();

}  // namespace cove::isolation
