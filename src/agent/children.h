// Children: who is told when a child of the agent exits. The part that
// spawned a child registers it; SIGCHLD reaps every child and orphan and
// routes each exit status to its registrant.
#pragma once

#include <sys/types.h>

#include <functional>
#include <unordered_map>

namespace cove::agent {

class Children {
 public:
  // on_exit(wait status) is called once when pid is reaped.
  void Add(pid_t pid, std::function<void(int status)> on_exit) { exits_[pid] = std::move(on_exit); }
  // pid's exit is no longer anyone's to report: it is reaped as an orphan.
  void Forget(pid_t pid) { exits_.erase(pid); }
  // Reaps every exited child (waitpid WNOHANG), calling their registrants.
  void Reap();

 private:
  std::unordered_map<pid_t, std::function<void(int)>> exits_;
};

}  // namespace cove::agent
