// FakeSandboxHost: a SandboxHost for tests of the Manager that need no root and no
// namespaces, yet is real where it can be. Start() runs the real cove-agent
// binary as an ordinary child process (unisolated, in its own process group,
// with a workspace in a private temporary directory), listening on
// AgentSocketPath, so the Manager talks to a real agent; IsAlive, Kill and
// Destroy act on that process (Destroy reaps it). Id slots come from a
// counter. Switches drive the error paths: a Start that fails, a Destroy that
// fails its next N calls, and holds that block Start or Destroy until released.
//
// Test-only (library cove_manager_testing). Thread-safe: the Manager calls it
// from its worker threads and its io thread. Destroying it kills and reaps
// every agent still running; release any hold before destroying a Manager
// that may be blocked in it.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "manager/sandbox_host.h"
#include "sys/unique_fd.h"

namespace cove {

class FakeSandboxHost : public SandboxHost {
 public:
  // agent_path: the cove-agent binary. Creates its temporary directory.
  explicit FakeSandboxHost(std::string agent_path);
  ~FakeSandboxHost() override;
  FakeSandboxHost(const FakeSandboxHost&) = delete;
  FakeSandboxHost& operator=(const FakeSandboxHost&) = delete;

  Result<Started> Start(const SandboxRecord& record) override;
  bool IsAlive(const SandboxRecord& record) override;
  Status Kill(const SandboxRecord& record) override;
  Status Destroy(const SandboxRecord& record) override;
  std::string AgentSocketPath(const SandboxRecord& record) override;
  Result<uint32_t> ReserveSlot(uint32_t hint) override;
  Status ClaimSlot(uint32_t slot) override;
  void ReleaseSlot(uint32_t slot) override;
  void CleanLeftovers(const std::vector<std::string>& known_ids) override;

  // --- switches ---
  // Every Start fails with `error` until cleared (nullopt); nothing is started.
  void FailStarts(std::optional<Error> error);
  // The next n Destroy calls kill the sandbox's processes but fail before
  // reaping them ("processes still dying").
  void FailDestroys(int n);
  enum class Op { kStart, kDestroy };
  // While held, calls of `op` block (after being counted) until Release(op).
  void Hold(Op op);
  void Release(Op op);

  // --- observations ---
  // Calls made so far (counted on entry, before any hold or failure).
  int calls(Op op) const;
  // Destroy calls that succeeded, by sandbox id.
  int destroyed(const std::string& id) const;
  // What happened, in order: "start ID", "destroy ID", "destroy-failed ID".
  std::vector<std::string> events() const;
  // Slots reserved or claimed and not released.
  std::set<uint32_t> held_slots() const;
  // The ids passed to the last CleanLeftovers.
  std::vector<std::string> last_known_ids() const;
  // coved stops: the slots it held are free again (their locks die with the
  // process). The agents keep running, as sandboxes do.
  void ForgetSlots();

 private:
  struct Agent {
    UniqueFd pidfd;
    uint64_t start_ticks = 0;
  };
  void Enter(Op op, std::unique_lock<std::mutex>& lock);
  std::string SlotDir(uint32_t slot) const;

  const std::string agent_path_;
  std::string dir_;  // temporary; removed by the destructor
  mutable std::mutex mu_;
  std::condition_variable released_;
  std::map<pid_t, Agent> agents_;  // started and not yet reaped
  std::set<uint32_t> slots_;
  std::optional<Error> start_error_;
  int destroy_failures_ = 0;
  std::set<Op> held_;
  std::map<Op, int> calls_;
  std::map<std::string, int> destroyed_;
  std::vector<std::string> events_;
  std::vector<std::string> known_ids_;
};

}  // namespace cove
