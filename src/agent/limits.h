// Limits of the coved <-> agent protocol that both sides enforce: coved
// refuses a request over a limit before it reaches the agent (400
// VALIDATION_FAILED), and the agent refuses it again (it does not trust that
// coved checked).
#pragma once

#include <cstddef>
#include <string>

namespace cove::agent {

// Largest command (exec, process.start) in bytes. Every way the agent runs a
// command can take one this long (none passes it in argv, where Linux caps one
// argument at 128 KiB), so the limit is the same for all of them.
inline constexpr size_t kMaxCommandBytes = 1 << 20;

// "" when a command of `size` bytes is within the limit, else the message.
inline std::string CommandSizeProblem(size_t size) {
  if (size <= kMaxCommandBytes) return "";
  return "command is " + std::to_string(size) + " bytes; the limit is " + std::to_string(kMaxCommandBytes) + " bytes";
}

}  // namespace cove::agent
