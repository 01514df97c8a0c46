// SandboxDirectory: the sandbox behind a source address of the sandboxes'
// subnet (the packet filter guarantees the address is the sandbox's own) and
// the egress policy in force for it. A lookup parses nothing: it hands out
// the typed policy the sandbox's published record holds (or coved's
// default), shared. Thread-safe: it reads the Manager's RunningSandboxes,
// whose records stay valid while held (manager/running_sandboxes.h), so the
// proxy's and DNS's connections look sandboxes up on every io thread.
#pragma once

#include <memory>
#include <optional>

#include "manager/running_sandboxes.h"
#include "net/address_plan.h"
#include "proxy/egress_proxy.h"

namespace cove::proxy {

class SandboxDirectory {
 public:
  // `running` (the Manager's, Manager::PublishTo) outlives the directory.
  SandboxDirectory(const RunningSandboxes* running, net::AddressPlan plan,
                   std::shared_ptr<const EgressPolicy> default_policy)
      : running_(running), plan_(plan), default_policy_(std::move(default_policy)) {}

  // The running sandbox behind `source`, or nullopt.
  std::optional<SandboxEgress> Lookup(const IpAddress& source) const;
  // The policy in force for a sandbox: its own, or coved's default (never null).
  const std::shared_ptr<const EgressPolicy>& PolicyOf(const SandboxRecord& record) const {
    return record.egress ? record.egress : default_policy_;
  }
  const std::shared_ptr<const EgressPolicy>& default_policy() const { return default_policy_; }

 private:
  const RunningSandboxes* running_;
  net::AddressPlan plan_;
  std::shared_ptr<const EgressPolicy> default_policy_;
};

}  // namespace cove::proxy
