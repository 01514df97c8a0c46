// DenialLog: the egress denials of each sandbox, for the operator and the
// API (the newest `per_sandbox` of each sandbox, with a total count). Denials
// are also logged here, at most one line per sandbox per 10 s (a sandbox
// that is denied in a loop must not flood coved's log), each line with the
// number of that sandbox's denials left out since its previous line; the
// API keeps them all. At most `max_sandboxes` sandboxes are
// kept: beyond, the one whose last denial is oldest is forgotten (sandboxes
// come and go; their logs must not pile up). Thread-safe (one mutex): the
// proxy's and DNS's connections record from every io thread, the API reads.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "base/log_throttle.h"
#include "proxy/egress_proxy.h"

namespace cove::proxy {

class DenialLog {
 public:
  explicit DenialLog(size_t per_sandbox = 200, size_t max_sandboxes = 4096)
      : per_sandbox_(per_sandbox), max_sandboxes_(max_sandboxes) {}

  struct Entry {
    int64_t unix_ms = 0;
    Denial denial;
  };
  void Record(const Denial& d);
  // Newest last; `total` counts every denial since the sandbox's first.
  std::vector<Entry> Recent(const std::string& sandbox_id, uint64_t* total) const;
  void Forget(const std::string& sandbox_id);

 private:
  struct PerSandbox {
    std::deque<Entry> recent;
    uint64_t total = 0;
    LogThrottle lines{std::chrono::seconds(10)};
  };
  size_t per_sandbox_;
  size_t max_sandboxes_;
  mutable std::mutex mu_;  // guards by_sandbox_
  std::map<std::string, PerSandbox> by_sandbox_;
};

}  // namespace cove::proxy
