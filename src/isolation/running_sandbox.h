// RunningSandbox: one running sandbox as coved sees it. It ties the layer,
// the cgroup and pid 1 together for create, destroy, and for finding them
// again after a coved restart.
//
//   create:   RunningSandbox::Create(host, spec, pass_fds) -> persist persisted()
//   destroy:  sandbox.Destroy()
//   restart:  for each persisted record: Adopt(host, rec); if it fails, CleanUp(host, rec)
//             then for each id in ListResidues(host) not in the records: CleanUp(host, {id})
//
// Dropping a RunningSandbox leaves the sandbox running (it must survive a
// coved restart); Destroy() ends it. While coved is the parent, keep the
// object until pid 1 is reaped (WaitExit/PollExit/Destroy), or it stays a zombie.
// Objects are not thread-safe; different sandboxes may be used from different threads.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "isolation/cgroup.h"
#include "isolation/launcher.h"
#include "isolation/layer_store.h"
#include "isolation/spec.h"

namespace cove::isolation {

// What coved must persist per sandbox to adopt or clean it up after a restart.
struct PersistedSandbox {
  std::string id;
  pid_t pid = -1;                 // host pid of pid 1; -1 if never launched
  uint64_t start_time_ticks = 0;  // with pid: identifies the process across pid reuse
  uid_t host_id_base = 0;
};

// The host-wide pieces, opened once by coved and borrowed by every RunningSandbox.
struct IsolationHost {
  const CgroupManager* cgroups = nullptr;
  const LayerStore* layers = nullptr;
};

struct CreateOptions {
  bool default_layout = true;     // seed upper/ for the default image (LayerSeed)
  bool idmap_image = true;        // see LaunchOptions
  struct Timings {
    double layer_us = 0, cgroup_us = 0, total_us = 0;
    LaunchTimings launch;
  }* timings = nullptr;           // optional out
};

class RunningSandbox {
 public:
  RunningSandbox(RunningSandbox&&) = default;
  RunningSandbox& operator=(RunningSandbox&&) = default;

  // Creates the layer (spec.sandbox_dir is set from it) and the cgroup, then
  // launches pid 1. On failure everything created is removed again.
  static Result<RunningSandbox> Create(const IsolationHost& host, SandboxSpec spec,
                                       const std::vector<int>& pass_fds, const CreateOptions& options = {});
  // Re-attaches to a running sandbox: kNotFound if pid 1 is gone or the pid
  // now belongs to another process (start time differs), or if its cgroup is
  // missing. Changes nothing.
  static Result<RunningSandbox> Adopt(const IsolationHost& host, const PersistedSandbox& record);
  // Kills whatever is left of a sandbox (a live pid 1 only if its start time
  // matches) and removes its cgroup and layer. Idempotent; for crash leftovers.
  // An error (processes slow to die) leaves the rest for a later call.
  static Status CleanUp(const IsolationHost& host, const PersistedSandbox& record);
  // Kill() for a sandbox no RunningSandbox holds (after a restart).
  static Status Kill(const IsolationHost& host, const PersistedSandbox& record);
  // Ids that have a layer in host.layers (i.e. belong to this coved's state
  // dir). Create makes the layer before the cgroup and Destroy/CleanUp remove
  // the cgroup before the layer, so every residue of ours has a layer; a
  // cgroup without one belongs to another cove instance on the host and is
  // never touched.
  static Result<std::vector<std::string>> ListResidues(const IsolationHost& host);

  const PersistedSandbox& persisted() const { return record_; }
  pid_t pid() const { return record_.pid; }
  int pidfd() const { return pidfd_.get(); }  // readable once pid 1 has exited
  SandboxCgroup& cgroup() { return cgroup_; }
  const std::string& sandbox_dir() const { return sandbox_dir_; }

  // Wait status of pid 1 if it has exited (reaped here when it is our child;
  // after an adoption the status is unknown and reported as -1), else nullopt.
  Result<std::optional<int>> PollExit();
  // Waits up to timeout for pid 1 to exit; kTimeout if it did not.
  Result<int> WaitExit(std::chrono::milliseconds timeout);
  // SIGKILLs pid 1 and everything in the cgroup (SandboxCgroup::KillAll, which
  // also lifts the limits that would slow their exit); does not wait.
  Status Kill();
  // Kill(), then waits (bounded) for pid 1, reaps it, removes the cgroup and
  // the layer. On an error (kTimeout: still dying) call it again later: the
  // object keeps pid 1's pidfd so that it is reaped in the end. Idempotent.
  Status Destroy(std::chrono::milliseconds timeout = std::chrono::seconds(5));

 private:
  RunningSandbox(const IsolationHost& host, PersistedSandbox record, SandboxCgroup cgroup)
      : host_(host), record_(std::move(record)), cgroup_(std::move(cgroup)) {}
  IsolationHost host_;
  PersistedSandbox record_;
  SandboxCgroup cgroup_;
  UniqueFd pidfd_;
  std::string sandbox_dir_;
  std::optional<int> exit_status_;
  bool destroyed_ = false;
};

}  // namespace cove::isolation
