// Internal to the launcher: the code that runs in the sandbox's first process
// between clone and exec, and the plan it follows.
//
// The plan is built completely by the parent before the clone. The child
// shares the parent's memory until exec (no page tables copied, however big
// coved is), so it only reads the plan and makes raw system calls: no
// allocation, no locks, no libc state, no errno.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <vector>

#include "isolation/spec.h"

namespace cove::isolation::internal {

// Messages on the sync socket (SOCK_SEQPACKET).
struct GoMsg {                    // parent -> child, with SCM_RIGHTS fds if idmapped
  uint8_t go = 1;
  uint8_t idmapped = 0;           // fds: [lower dirs..., host dirs..., read-only binds...]
  uint8_t nfds = 0;
};
struct ChildMsg {                 // child -> parent
  enum Kind : uint32_t { kReady = 1, kError = 2 };
  uint32_t kind = 0;
  int32_t err = 0;
  char step[112] = {};
};
inline constexpr int kMaxIdmapFds = static_cast<int>(kMaxLowerDirs + kMaxHostMounts);
inline constexpr int kMaxPassFds = 64;

struct ChildBind {
  std::string host_path;           // source, a host path (used when not idmapped)
  std::string rel_target;          // path below the new root, without leading '/'
};

// A host dir's overlay: lower (the host dir, or its idmapped copy attached
// at lower_stage), upper and work in the sandbox's layer.
struct ChildHostDir {
  std::string rel_target;          // path below the new root, without leading '/'
  std::string host_path;           // lowerdir when not idmapped
  std::string lower_stage;         // lowerdir when idmapped
  std::string upper, work;
};

struct ChildPlan {
  int sync_fd = -1;                // child's end of the socketpair
  int parent_sync_fd = -1;         // parent's end; the child closes it first
  int agent_fd = -1;               // O_PATH fd of the agent binary, or -1: exec_candidates
  int null_fd = -1;                // /dev/null for stdio
  std::vector<int> pass_fds;       // become 3, 4, ...
  bool inherit_stdio = false;
  bool die_with_parent = false;
  bool new_netns = true;
  std::string hostname;
  std::string root;                // <sandbox_dir>/root: the overlay mount point
  std::vector<std::string> lower_stages;  // <sandbox_dir>/lower/<i>: where idmapped lowers are attached
  std::string overlay_opts;        // lowerdir = the image's dirs
  std::string overlay_opts_idmapped;  // lowerdir = lower_stages
  bool volatile_upper = false;     // "volatile" on the host dirs' overlays too
  std::vector<ChildHostDir> host_dirs;
  std::vector<ChildBind> binds;    // read-only
  // Absolute paths below root, precomputed.
  std::string proc_dir, dev_dir, sys_dir;
  std::vector<std::string> proc_masked_files, proc_masked_dirs, proc_readonly;
  std::vector<std::pair<std::string, std::string>> dev_nodes;  // host node -> file in new /dev
  std::string dev_pts, dev_shm, dev_ptmx, dev_fd, dev_stdin, dev_stdout, dev_stderr, sys_firmware;
  std::string cwd;
  std::vector<char*> argv;         // NULL-terminated, pointing into strings owned by the caller
  std::vector<char*> envp;         // NULL-terminated
  std::vector<std::string> exec_candidates;  // tried in order when agent_fd < 0
  const sock_fprog* seccomp = nullptr;              // main filter
  const sock_fprog* seccomp_personality = nullptr;  // second filter
};

// Entry point of the child (clone(2) with CLONE_VM, on its own stack; `plan`
// is a const ChildPlan*): runs the sandbox set-up and execs; never returns.
// Reports failure as a ChildMsg{kError} on sync_fd, then exits 127. Reads
// the plan, never writes shared memory, and never touches errno.
[[noreturn]] int ChildMain(void* plan);

}  // namespace cove::isolation::internal
