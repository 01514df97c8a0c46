// Launch: starts the first process (pid 1) of a sandbox, fully isolated.
//
// Set-up order (parent P, child C):
//   P clone3(CLONE_PIDFD | NEWUSER NEWNS NEWPID NEWUTS NEWIPC [NEWNET] [INTO_CGROUP])
//   P writes uid_map/gid_map (sandbox 0..65535 -> host_id_base..), joins C to
//     its cgroups, sets rlimits, prepares idmapped mounts of the image (lower
//     layer and host dirs, so image files owned by host root appear as root inside)
//     and sends "go" (with those mounts) over a socketpair
//   C becomes uid/gid 0 (no supplementary groups), unshares the cgroup ns,
//     makes / rprivate, mounts the overlay root (image lower + upper/work of
//     sandbox_dir) on sandbox_dir/root inside its own mount ns, mounts each of
//     the image's host dirs as an overlay of its own (host dir lower, upper/work
//     in sandbox_dir/dirs/<name>), mounts a fresh /proc (masked like Docker),
//     a minimal /dev (tmpfs, host null/zero/full/random/urandom/tty, private
//     devpts, /dev/shm), read-only /sys, pivot_root + detach of the old root,
//     sets hostname = id, brings lo up, bounds capabilities to Docker's default
//     set minus NET_RAW, sets no_new_privs, installs the seccomp filter, and
//     execs the agent through an fd opened on the host.
// Any failure of C is reported with errno and the step's name; Launch then
// kills C and returns the error. Nothing C mounted outlives its mount ns.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "base/error.h"
#include "isolation/spec.h"
#include "sys/unique_fd.h"

namespace cove::isolation {

class SandboxCgroup;

struct Launched {
  pid_t pid = -1;                 // host pid of the sandbox's pid 1 (our child until reaped)
  UniqueFd pidfd;                 // owns a handle on that process
  uint64_t start_time_ticks = 0;  // /proc/<pid>/stat field 22, detects pid reuse
};

// Where the time of one Launch went, in microseconds (for benchmarks).
struct LaunchTimings {
  double prepare_us = 0;   // plan, seccomp program, fds
  double clone_us = 0;     // clone3 with the namespaces
  double parent_us = 0;    // id maps, cgroup attach, rlimits, idmapped mounts
  double child_us = 0;     // from "go" to exec in the child
  double total_us = 0;
  bool idmapped = false;   // the image was mounted through idmapped mounts
};

struct LaunchOptions {
  // The sandbox's cgroup, freshly created and empty; the child runs nothing
  // of its own before it is inside. Borrowed. nullptr: no cgroup (tests).
  SandboxCgroup* cgroup = nullptr;
  // Try idmapped mounts for the image (falls back to plain lower layers if
  // the kernel or file system refuses: their files then appear as nobody).
  bool idmap_image = true;
  // Mount the overlay with "volatile": no syncs of the writable layer, so
  // tearing a sandbox down does not flush the whole layer file system
  // (~10 ms each here) and fsync inside is cheap. The price: after a host
  // crash, the last seconds of the sandbox's writes may be lost.
  bool volatile_upper = true;
  LaunchTimings* timings = nullptr;  // optional out
};

// Starts spec's pid 1. pass_fds (borrowed, at most 64) become fds 3, 4, ...
// in the sandbox; every other fd is closed; stdio is /dev/null unless
// spec.inherit_stdio. spec.sandbox_dir must contain upper/ and work/ owned by
// host_id_base (see LayerStore; Launch adds root/, lower/ and dirs/ for the host dirs), and every directory on the way to it and to
// the image must be searchable by others (o+x). Thread-safe; the calling
// thread briefly joins spec.netns_fd if given.
// On error nothing is left running (the cgroup itself is the caller's).
Result<Launched> Launch(const SandboxSpec& spec, const std::vector<int>& pass_fds,
                        const LaunchOptions& options = {});

}  // namespace cove::isolation
