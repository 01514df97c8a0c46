// SandboxHost: the kernel side of a sandbox's life, as blocking calls that the
// manager runs on its worker threads. The isolation-backed implementation is
// KernelSandboxHost (kernel_sandbox_host.h).
#pragma once

#include <string>
#include <vector>

#include "base/error.h"
#include "manager/sandbox_record.h"

namespace cove {

class SandboxHost {
 public:
  virtual ~SandboxHost() = default;

  struct Started {
    int pid = 0;
    uint64_t start_ticks = 0;
  };
  // Builds the sandbox (layer, cgroups, namespaces) and starts cove-agent as
  // its pid 1, listening on AgentSocketPath(record). On failure nothing is left.
  virtual Result<Started> Start(const SandboxRecord& record) = 0;
  // True when the sandbox's pid 1 recorded in `record` is still running.
  virtual bool IsAlive(const SandboxRecord& record) = 0;
  // Sends SIGKILL to every process of the sandbox (pid 1 and everything in its
  // cgroup, frozen first where the kernel has no cgroup.kill) and lifts its
  // CPU and memory limits so the dying exit quickly; does not wait. Bounded;
  // idempotent.
  virtual Status Kill(const SandboxRecord& record) = 0;
  // Kills every process of the sandbox, waits (bounded) for them, reaps pid 1
  // and removes its cgroups, layer and directories. An error leaves the rest
  // for a later call (the manager's reaper retries). Idempotent; safe after a
  // crash of coved at any point.
  virtual Status Destroy(const SandboxRecord& record) = 0;
  // Path of the unix socket on which the sandbox's agent listens.
  virtual std::string AgentSocketPath(const SandboxRecord& record) = 0;
  // Host id slots (each selects a sandbox's uid/gid range), shared with other
  // users of the host (cove-jail, other coved instances). ReserveSlot takes the
  // first free slot at or after hint; ClaimSlot takes exactly `slot` again
  // (adoption after a restart); ReleaseSlot gives it back.
  virtual Result<uint32_t> ReserveSlot(uint32_t hint) = 0;
  virtual Status ClaimSlot(uint32_t slot) = 0;
  virtual void ReleaseSlot(uint32_t slot) = 0;
  // Removes what sandboxes not in known_ids left behind (after a crash).
  virtual void CleanLeftovers(const std::vector<std::string>& known_ids) = 0;
  // Called once the sandboxes that survived a restart hold their slots again,
  // before new sandboxes are created (seals their networks).
  virtual Status FinishAdoption() { return OkStatus(); }
};

}  // namespace cove
