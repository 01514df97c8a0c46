// Process helpers of cove-agent: spawning children with an exact fd layout,
// and finding/killing a process's descendants through /proc.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "base/error.h"

namespace cove::agent {

struct SpawnSpec {
  std::string path;                  // executable (absolute)
  std::vector<std::string> argv;
  std::vector<std::string> env;      // "K=V"
  std::string cwd;                   // chdir before exec; failure is reported
  // (source fd in the agent, fd number in the child). Sources stay open in
  // the agent; everything else is closed in the child (all agent fds are
  // O_CLOEXEC).
  std::vector<std::pair<int, int>> fds;
  bool setsid = true;
  bool ctty = false;     // make child fd 0 (a terminal) the controlling terminal (needs setsid)
  bool set_ids = false;  // switch to uid/gid/groups below
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};

// Whether `path` is a directory / a regular file we may execute (stat follows symlinks).
bool IsDirectory(const std::string& path);
bool IsExecutable(const std::string& path);
// The first executable `dir/name` for the absolute dirs of `search_path`
// (a PATH value), or "".
std::string FindOnPath(const std::string& name, const std::string& search_path);

// vfork+exec (clone with CLONE_VM | CLONE_VFORK). Returns the pid once the child has exec'd; an exec or chdir
// failure is returned as an error (the child is reaped).
Result<pid_t> Spawn(const SpawnSpec& spec);

struct ProcInfo {
  pid_t pid;
  unsigned long long start_ticks;  // /proc/PID/stat field 22
};
// All descendants of `root` (not root itself), from one /proc scan.
std::vector<ProcInfo> Descendants(pid_t root);
// SIGKILLs descendants of `root` started at or after `min_start_ticks`
// (0 = all), rescanning a few times to catch processes forked meanwhile.
// Returns how many were signalled.
int KillDescendants(pid_t root, unsigned long long min_start_ticks);
// start_ticks of pid, or 0 if it does not exist.
unsigned long long StartTicksOf(pid_t pid);
// Processes whose environment contains the entry `kv` ("K=V"), from one /proc scan.
std::vector<ProcInfo> ProcessesWithEnv(const std::string& kv);
// Current time in /proc start_ticks units (clock ticks since boot).
unsigned long long BootTicksNow();
// The cwd of pid, or "" if unreadable.
std::string ProcessCwd(pid_t pid);

}  // namespace cove::agent
