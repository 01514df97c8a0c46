// SandboxDirectory: the sandbox behind a source address of the sandboxes'
// subnet (the packet filter guarantees the address is the sandbox's own) and
// the egress policy in force for it. A lookup parses nothing: it hands out
// the typed policy the sandbox's record holds (or coved's default), shared.
// Runs on coved's io thread, as the Manager does.
#pragma once

#include <functional>
#include <memory>
#include <optional>

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

  // The running sandbox behind `source`, or nullopt.
  std::optional<SandboxEgress> Lookup(const IpAddress& source) const;
  // The policy in force for a sandbox: its own, or coved's default (never null).
  const std::shared_ptr<const EgressPolicy>& PolicyOf(const SandboxRecord& record) const {
    return record.egress ? record.egress : default_policy_;
  }
  const std::shared_ptr<const EgressPolicy>& default_policy() const { return default_policy_; }

 private:
  FindBySlot find_by_slot_;
  net::AddressPlan plan_;
  std::shared_ptr<const EgressPolicy> default_policy_;
};

}  // namespace cove::proxy
