// Internal to the launcher: system calls that never touch errno or any other
// libc state. The sandbox's first process shares its address space (and TLS)
// with the launching thread until exec (CLONE_VM), so it must not write errno.
// Returns the result, or -errno on failure.
#pragma once

#include <sys/syscall.h>

namespace cove::isolation::internal {

#if defined(__x86_64__)
inline long RawSyscall(long nr, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0, long a6 = 0) {
  long ret;
  register long r10 __asm__("r10") = a4;
  register long r8 __asm__("r8") = a5;
  register long r9 __asm__("r9") = a6;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}
#else
#error "RawSyscall: add this architecture (the seccomp filter is x86_64-only too)"
#endif

template <typename... A>
inline long Sys(long nr, A... args) {
  return RawSyscall(nr, (long)(args)...);
}

}  // namespace cove::isolation::internal
