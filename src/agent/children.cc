#include "agent/children.h"

#include <sys/wait.h>

namespace cove::agent {

void Children::Reap() {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    auto it = exits_.find(pid);
    if (it == exits_.end()) continue;  // an orphan (or a shell we gave up on)
    auto fn = std::move(it->second);
    exits_.erase(it);
    fn(status);
  }
}

}  // namespace cove::agent
