#include "proxy/denial_log.h"

#include "base/log.h"
#include "base/time.h"

namespace cove::proxy {

void DenialLog::Record(const Denial& d) {
  std::lock_guard lock(mu_);
  if (!by_sandbox_.count(d.sandbox_id) && by_sandbox_.size() >= max_sandboxes_) {
    auto oldest = by_sandbox_.begin();
    for (auto it = by_sandbox_.begin(); it != by_sandbox_.end(); ++it)
      if (it->second.recent.back().unix_ms < oldest->second.recent.back().unix_ms) oldest = it;
    by_sandbox_.erase(oldest);
  }
  PerSandbox& s = by_sandbox_[d.sandbox_id];
  if (auto held = s.lines.Pass()) {
    log::Info("sandbox {}: egress to {}{} denied: {}{}", d.sandbox_id, d.destination,
              d.address.empty() ? "" : " (" + d.address + ")", d.reason,
              *held ? fmt::format(" ({} more denials of this sandbox since its last such line)", *held) : "");
  }
  s.recent.push_back(Entry{NowUnixMs(), d});
  if (s.recent.size() > per_sandbox_) s.recent.pop_front();
  ++s.total;
}

std::vector<DenialLog::Entry> DenialLog::Recent(const std::string& sandbox_id, uint64_t* total) const {
  std::lock_guard lock(mu_);
  auto it = by_sandbox_.find(sandbox_id);
  *total = it == by_sandbox_.end() ? 0 : it->second.total;
  if (it == by_sandbox_.end()) return {};
  return {it->second.recent.begin(), it->second.recent.end()};
}

void DenialLog::Forget(const std::string& sandbox_id) {
  std::lock_guard lock(mu_);
  by_sandbox_.erase(sandbox_id);
}

}  // namespace cove::proxy
