// ExecJob: one exec request (docs/agent-protocol.md, "exec"), parsed, for a
// session's shell (sessions.h) or a sessionless command (commands.h).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/link.h"
#include "base/time.h"

namespace cove::agent {

struct ExecJob {
  Chan chan;
  std::string command;
  std::vector<std::pair<std::string, std::string>> env;
  std::string cwd;
  bool has_cwd = false;
  std::optional<uint64_t> timeout_ms;
};

// Why a running command is being killed: it is then answered exit 124
// (timedOut) or 130 (cancelled).
enum class Kill { kNone, kTimeout, kCancel };

// The "complete" reply of a command that exited with `exit_code` (or was
// killed for `kill`), started at `started_ns` (MonotonicNs).
inline nlohmann::json CompleteReply(int exit_code, Kill kill, int64_t started_ns) {
  nlohmann::json r = {{"type", "complete"}, {"exitCode", exit_code}};
  if (kill == Kill::kTimeout) {
    r["exitCode"] = 124;
    r["timedOut"] = true;
  } else if (kill == Kill::kCancel) {
    r["exitCode"] = 130;
    r["cancelled"] = true;
  }
  r["durationMs"] = (MonotonicNs() - started_ns) / 1000000;
  return r;
}

}  // namespace cove::agent
