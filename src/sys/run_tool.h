// Runs a host tool (mkfs.ext4 and the like) to completion.
#pragma once

#include <string>
#include <vector>

#include "base/error.h"

namespace cove::sys {

// Spawns argv (argv[0] looked up in PATH) with stdin from /dev/null and
// stdout+stderr captured (first 64 KiB). kInternal with the output if it
// exits non-zero or is killed. Safe in multi-threaded processes (posix_spawn).
Result<std::string> RunTool(const std::vector<std::string>& argv);

}  // namespace cove::sys
