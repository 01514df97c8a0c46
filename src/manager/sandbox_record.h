// SandboxRecord: what coved persists about one sandbox, so that a restarted
// coved can adopt it (or clean up after it).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "isolation/spec.h"
#include "policy/egress_policy.h"

namespace cove {

// A port of the sandbox reachable through coved's preview listener (docs/api.md).
struct PortExposure {
  uint16_t port = 0;
  std::string name;
  std::string token;  // [a-z0-9_]{1,16}, part of the preview URL's host name
  int64_t created_ms = 0;
};

// kDeleting is never shown by the API: the DELETE has answered and the reaper
// is still removing what is left (the record says so across a coved restart).
enum class SandboxState { kCreating, kRunning, kFailed, kDeleting };
const char* SandboxStateName(SandboxState s);

struct SandboxRecord {
  std::string id;
  std::string image = "default";
  std::string instance_type = "basic";
  isolation::Limits limits;
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> labels;
  std::string user = "root";  // default user of sessions: "root" or "user"
  int64_t created_ms = 0;
  SandboxState state = SandboxState::kCreating;
  std::string failure;        // why it failed, when state == kFailed
  bool interrupted_create = false;  // failed because coved stopped during its create: a create replaces it
  uint32_t slot = 0;          // selects the host uid/gid range
  int pid = 0;                // host pid of the sandbox's pid 1 (cove-agent)
  uint64_t start_ticks = 0;   // its start time, to tell a reused pid apart
  // Its egress policy, parsed once (API or store) and shared immutably:
  // replaced, never mutated. Null: coved's default.
  std::shared_ptr<const proxy::EgressPolicy> egress;
  std::vector<PortExposure> ports;  // exposed ports, in the order they were exposed

  nlohmann::json ToJson() const;
  static Result<SandboxRecord> FromJson(const nlohmann::json& j);
};

}  // namespace cove
