// ExecJob: one exec request (docs/agent-protocol.md, "exec"), parsed, for a
// session's shell (sessions.h) or a sessionless command (commands.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/link.h"

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

}  // namespace cove::agent
