// Loop devices: attach a regular file to a free /dev/loopN.
#pragma once

#include <string>

#include "base/error.h"
#include "sys/unique_fd.h"

namespace cove::sys {

struct LoopDevice {
  std::string path;  // /dev/loopN
  UniqueFd fd;       // open on the device; the binding lives at least as long as this fd
};

// Binds `file` to a free loop device with LO_FLAGS_AUTOCLEAR (the kernel
// unbinds it once the last fd is closed and nothing has it mounted), so a
// mounted loop file system needs no separate detach and cannot leak a device.
Result<LoopDevice> AttachLoopDevice(const std::string& file, bool read_only);

}  // namespace cove::sys
