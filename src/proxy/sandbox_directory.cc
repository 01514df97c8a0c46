#include "proxy/sandbox_directory.h"

#include <cstring>

#include "base/log.h"

namespace cove::proxy {

std::optional<SandboxEgress> SandboxDirectory::Lookup(const IpAddress& source) {
  if (source.family != AF_INET) return std::nullopt;
  in_addr a{};
  std::memcpy(&a, source.bytes, 4);
  uint32_t slot = 0;
  if (!plan_.SlotOfSandboxAddress(a, &slot)) return std::nullopt;
  const SandboxRecord* record = find_by_slot_(slot);
  if (!record || record->state != SandboxState::kRunning) return std::nullopt;
  return SandboxEgress{record->id, PolicyOf(record->id, record->egress)};
}

std::shared_ptr<const EgressPolicy> SandboxDirectory::PolicyOf(const std::string& sandbox_id,
                                                               const nlohmann::json& egress) {
  if (egress.is_null()) return default_policy_;
  auto it = parsed_.find(sandbox_id);
  if (it != parsed_.end() && it->second.source == egress) return it->second.policy;
  if (parsed_.size() > 8192) parsed_.clear();  // ids of sandboxes long gone
  auto policy = EgressPolicy::FromJson(egress);
  if (!policy.ok()) {
    // Validated when it was set: only a record from an incompatible version gets here.
    log::Error("sandbox {}: stored egress policy is invalid ({}); denying all egress", sandbox_id,
               policy.error().ToString());
    auto deny_all = std::make_shared<EgressPolicy>();
    deny_all->enable_internet = false;
    parsed_[sandbox_id] = Parsed{egress, deny_all};
    return deny_all;
  }
  auto shared = std::make_shared<const EgressPolicy>(std::move(*policy));
  parsed_[sandbox_id] = Parsed{egress, shared};
  return shared;
}

}  // namespace cove::proxy
