// The capabilities a sandbox's root keeps: Docker's default set minus
// NET_RAW. Everything else is dropped from the bounding set before exec.
#pragma once

#include <linux/capability.h>

#include <cstdint>

namespace cove::isolation {

inline constexpr int kSandboxCaps[] = {
    CAP_CHOWN,      CAP_DAC_OVERRIDE,     CAP_FOWNER,     CAP_FSETID, CAP_KILL,
    CAP_SETGID,     CAP_SETUID,           CAP_SETPCAP,    CAP_NET_BIND_SERVICE,
    CAP_SYS_CHROOT, CAP_MKNOD,            CAP_AUDIT_WRITE, CAP_SETFCAP,
};

constexpr uint64_t SandboxCapMask() {
  uint64_t m = 0;
  for (int c : kSandboxCaps) m |= uint64_t{1} << c;
  return m;
}

}  // namespace cove::isolation
