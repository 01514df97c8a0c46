// Per-sandbox cgroups behind one interface for cgroup v1 and v2.
//
// Sandbox cgroups are "<group>/<id>" (group "cove") below coved's OWN cgroup in every hierarchy
// used (read from /proc/self/cgroup), so a nested daemon (as here, where the
// memory cgroup is /process_api/...) still works and the memory limit OOM-kills
// inside the sandbox, never coved.
//   v2: one dir; cpu.max, memory.max, memory.swap.max, pids.max; cgroup.kill;
//       CLONE_INTO_CGROUP.
//   v1: cpu (cfs quota), cpuacct, memory (limit + memsw), pids, freezer; plus,
//       if present, a dir in the controller-less cgroup2 mount for cgroup.kill,
//       cgroup.events and CLONE_INTO_CGROUP.
// A cgroup directory is a persistent kernel object: it outlives the objects
// below (they own only file descriptors) and is destroyed by Remove().
// Objects are not thread-safe; distinct sandboxes may be used concurrently.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "isolation/spec.h"
#include "sys/unique_fd.h"

namespace cove::isolation {

enum class CgroupVersion { kV1, kV2 };

// Where sandbox cgroups go. Injectable so tests can point it at a fake tree.
struct CgroupLayout {
  struct Hierarchy {
    std::string parent;                    // coved's own cgroup dir in this hierarchy
    std::vector<std::string> controllers;  // v1: e.g. {"cpu"} or {"cpu","cpuacct"}; v2/unified: {}
    bool unified = false;                  // a cgroup2 hierarchy (v2, or v1's controller-less one)
  };
  CgroupVersion version = CgroupVersion::kV1;
  std::vector<Hierarchy> hierarchies;      // v2: exactly one, unified
  bool fake_fs = false;                    // tests: dirs are plain dirs (Remove deletes files)
  // The cgroup2 mount (if any) and its super options, for Init()'s tuning.
  std::string unified_mount;
  std::string unified_options;
};

// Pure: computes the layout from the text of /proc/self/cgroup and
// /proc/self/mountinfo. `unified_root_has_controllers` says whether the root
// cgroup.controllers of the cgroup2 mount at /sys/fs/cgroup lists any.
Result<CgroupLayout> ParseCgroupLayout(std::string_view proc_self_cgroup, std::string_view mountinfo,
                                       bool unified_root_has_controllers);
// Reads the files above for the calling process.
Result<CgroupLayout> DetectCgroupLayout();

// CFS bandwidth for a CPU limit: a sandbox may run quota_us of CPU time per
// period_us. The period is short (10 ms), so a sandbox that exhausts its quota
// waits at most one period minus its quota instead of up to ~100 ms; only
// limits under 0.1 CPU get a longer period, as the kernel wants a quota of
// at least 1 ms (0.062 CPU: 1000 us per 16130 us). cpu_millis 0: no limit.
struct CpuBandwidth {
  uint64_t quota_us = 0;
  uint64_t period_us = 0;
};
CpuBandwidth CpuBandwidthFor(uint32_t cpu_millis);

struct CgroupUsage {
  uint64_t cpu_usage_ns = 0;
  uint64_t memory_current_bytes = 0;
  uint64_t memory_peak_bytes = 0;   // 0 if the kernel does not report it
  uint64_t pids_current = 0;
  uint64_t oom_kills = 0;           // OOM kills inside the sandbox so far
};

class SandboxCgroup {
 public:
  SandboxCgroup(SandboxCgroup&&) = default;
  SandboxCgroup& operator=(SandboxCgroup&&) = default;

  const std::string& id() const { return id_; }
  // Directories of this sandbox, one per hierarchy.
  const std::vector<std::string>& dirs() const { return dirs_; }
  // O_PATH fd of the cgroup2 dir usable with CLONE_INTO_CGROUP, or -1.
  int clone_into_fd() const { return clone_into_.get(); }
  // Moves pid into every hierarchy (skipping the clone-into dir when
  // `already_in_clone_into` says the process was created there).
  Status Attach(pid_t pid, bool already_in_clone_into = false);
  // SIGKILLs every process in the sandbox (cgroup.kill where available,
  // else freeze + kill + thaw on v1), then lifts the CPU and memory limits:
  // a killed process still runs its exit in the kernel (freeing its memory),
  // and under its quota, or reclaiming at its memory limit, that can take
  // seconds. No user code runs after SIGKILL, so the lifted limits cannot be
  // abused. Safe to repeat.
  Status KillAll();
  // Kills everything and removes all dirs, waiting up to `timeout` for the
  // cgroups to become empty. kTimeout leaves the remaining dirs in place.
  Status Remove(std::chrono::milliseconds timeout = std::chrono::milliseconds(3000));
  Result<CgroupUsage> ReadUsage() const;
  // Pids (host view) currently in the sandbox.
  Result<std::vector<pid_t>> Pids() const;

 private:
  friend class CgroupManager;
  SandboxCgroup() = default;
  // The limits lifted (see KillAll); only for killed sandboxes.
  void LiftLimits();
  std::string id_;
  CgroupLayout layout_;
  std::vector<std::string> dirs_;  // parallel to layout_.hierarchies
  UniqueFd clone_into_;
};

// The cgroup group for a coved state dir: "cove" for /var/lib/cove, else
// "cove-<hash of the dir>", so that several cove instances on one host (tests,
// staging) never see, adopt or remove each other's sandbox cgroups.
std::string CgroupGroupForState(const std::string& state_dir);

class CgroupManager {
 public:
  // `group` names the parent dir of all sandbox cgroups in each hierarchy
  // ("cove" for coved; cove-jail uses its own so it never touches coved's).
  explicit CgroupManager(CgroupLayout layout, std::string group = "cove")
      : layout_(std::move(layout)), group_(std::move(group)) {}
  // Detects the host's layout and runs Init().
  static Result<CgroupManager> OpenHost(const std::string& group = "cove");

  // Creates the "cove" parents and, on v2, enables cpu/memory/pids for them
  // (moving coved into a leaf "<own>/coved" if its own cgroup holds processes).
  // With tune_host, also turns on cgroup2's host-wide "favordynmods" option:
  // otherwise the first migration into a v1 cgroup after a quiet moment waits
  // for an RCU grace period (~10 ms here); with it, a few microseconds.
  Status Init(bool tune_host = true);
  // Creates cove/<id> in every hierarchy and applies the limits. kAlreadyExists
  // if any part exists (clean up leftovers first). Nothing is left on failure.
  Result<SandboxCgroup> Create(const std::string& id, const Limits& limits) const;
  // Re-opens an existing sandbox cgroup (after a coved restart). kNotFound if
  // it exists in no hierarchy; a partial one (some hierarchies) is returned
  // so that it can be removed.
  Result<SandboxCgroup> Adopt(const std::string& id) const;
  // Ids that have a <group>/<id> dir in any hierarchy.
  Result<std::vector<std::string>> List() const;
  // Removes the empty <group> dirs (tests, uninstall). EBUSY while sandboxes exist.
  Status RemoveGroup() const;
  const CgroupLayout& layout() const { return layout_; }

 private:
  std::string CoveDir(size_t h) const { return layout_.hierarchies[h].parent + "/" + group_; }
  CgroupLayout layout_;
  std::string group_;
};

}  // namespace cove::isolation
