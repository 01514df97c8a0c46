// AgentConfig: cove-agent's settings (main.cc fills them from flags), read
// by the agent and every one of its parts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "agent/process_log.h"

namespace cove::agent {

inline constexpr const char* kAgentVersion = "0.1.0";
// Bytes read from a child's pipe or socket at a time.
inline constexpr size_t kReadChunk = 64 << 10;

struct AgentConfig {
  int listen_fd = 3;              // listening unix stream socket (borrowed for life)
  std::string workspace = "/workspace";
  std::string default_user;       // user of implicit sessions and sessionless commands ("" = root)
  std::vector<std::string> env;   // base environment of every child, "K=V"
  std::string bash;               // path of bash, or "" if none
  std::string sh = "/bin/sh";
  std::string run_dir;            // private dir for large command scripts ("" = auto)
  size_t out_high = 8 << 20;      // pause command output above this many unsent bytes
  size_t out_low = 2 << 20;       // resume below
  // After killing a timed-out/cancelled command's processes, the shell is
  // checked every kill_check_ms; it is replaced when it has had no new
  // processes for kill_quiet_rounds checks without finishing the command
  // (a builtin loop), or after kill_max_ms in any case.
  int64_t kill_check_ms = 100;
  int kill_quiet_rounds = 4;
  int64_t kill_max_ms = 3000;
  // Background processes (process.*): output held in memory per stream (the
  // newest), output kept on disk per process beyond that (process_log.h), and
  // the time between SIGTERM (or the requested signal) and SIGKILL of process.kill.
  size_t process_buffer = 1 << 20;
  uint64_t process_log_limit = kProcessLogDiskLimit;
  int64_t process_kill_grace_ms = 5000;
  size_t max_finished_processes = 1024;
  // Code-interpreter runners (docs/interpreter.md), read-only in the sandbox.
  std::string interpreter_dir = "/opt/cove/interpreter";
  // A timed-out execution gets SIGINT; if it is still running this long
  // after, its runner is killed (the context then reports a crash).
  int64_t interrupt_grace_ms = 3000;
};

}  // namespace cove::agent
