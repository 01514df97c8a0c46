// Small blocking I/O helpers over borrowed fds, retrying EINTR and short I/O.
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"

namespace cove::sys {

Status WriteAll(int fd, std::string_view data);
// Reads until EOF or max_bytes; a file larger than max_bytes is an error.
Result<std::string> ReadAll(int fd, size_t max_bytes);
Result<std::string> ReadFile(const std::string& path, size_t max_bytes = 1 << 20);
// Writes path atomically (temp file + fsync-less rename) with the given mode.
Status WriteFileAtomic(const std::string& path, std::string_view data, unsigned mode = 0644);

}  // namespace cove::sys
