// SandboxDirectory: the sandbox behind a source address of the sandboxes'
// subnet (the packet filter guarantees the address is the sandbox's own) and
// its egress policy, parsed once per change. Runs on coved's io thread, as
// the Manager does.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "manager/sandbox_record.h"
#include "net/address_plan.h"
#include "proxy/egress_proxy.h"

namespace cove::proxy {

class SandboxDirectory {
 public:
  // find_by_slot: the sandbox holding an id slot (Manager::FindBySlot).
  using FindBySlot = std::function<const SandboxRecord*(uint32_t slot)>;
  SandboxDirectory(FindBySlot find_by_slot, net::AddressPlan plan, std::shared_ptr<const EgressPolicy> default_policy)
      : find_by_slot_(std::move(find_by_slot)), plan_(plan), default_policy_(std::move(default_policy)) {}

  std::optional<SandboxEgress> Lookup(const IpAddress& source);
  // The policy that applies to a sandbox whose record holds `egress`.
  std::shared_ptr<const EgressPolicy> PolicyOf(const std::string& sandbox_id, const nlohmann::json& egress);
  const std::shared_ptr<const EgressPolicy>& default_policy() const { return default_policy_; }

 private:
  struct Parsed {
    nlohmann::json source;
    std::shared_ptr<const EgressPolicy> policy;
  };
  FindBySlot find_by_slot_;
  net::AddressPlan plan_;
  std::shared_ptr<const EgressPolicy> default_policy_;
  std::map<std::string, Parsed> parsed_;  // by sandbox id
};

}  // namespace cove::proxy
