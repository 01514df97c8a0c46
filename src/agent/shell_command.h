// How a command string reaches a new `bash -c` / `sh -c` process.
//
// Short commands go in argv. Longer ones would hit Linux's cap on one argument
// (MAX_ARG_STRLEN, 128 KiB), so they are staged in a memfd (memory, not the
// sandbox's disk: a full disk quota does not stop commands) handed to the
// child as fd kScriptFd; the shell reads it whole and closes that fd before it
// runs the command, so the command and its children never see it.
#pragma once

#include <string>

#include "agent/proc.h"
#include "base/error.h"
#include "sys/unique_fd.h"

namespace cove::agent {

inline constexpr int kScriptFd = 9;
// Commands longer than this are staged (sessions use the same threshold for
// their script files).
inline constexpr size_t kInlineCommandMax = 8 << 10;

// Sets spec->argv to run `command` with the shell at spec->path (bash when
// `bash`, else a POSIX sh). When staged, adds (script fd, kScriptFd) to
// spec->fds and returns the memfd in *script: keep it open until Spawn
// returns. Errors are the memfd's (ENOMEM, EMFILE...).
Status PrepareShellCommand(const std::string& command, bool bash, SpawnSpec* spec, UniqueFd* script);

}  // namespace cove::agent
