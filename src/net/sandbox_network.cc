#include "net/sandbox_network.h"

#include "base/log.h"
#include "net/netns.h"
#include "net/veth.h"

namespace cove::net {

Result<SandboxNetwork> SandboxNetwork::Build(const AddressPlan& plan, uint32_t slot) {
  SandboxNetwork n;
  n.slot_ = slot;
  COVE_ASSIGN_OR_RETURN(n.addrs_, plan.ForSlot(slot));
  COVE_ASSIGN_OR_RETURN(n.netns_, CreateNetns());
  COVE_TRY(PrepareNetns(n.netns_.get()));
  std::string name = HostVethName(slot);
  COVE_TRY(CreateVeth(n.netns_.get(), name, n.addrs_));
  n.host_if_ = std::move(name);
  return n;
}

SandboxNetwork& SandboxNetwork::operator=(SandboxNetwork&& o) noexcept {
  if (this != &o) {
    Destroy();
    slot_ = o.slot_;
    netns_ = std::move(o.netns_);
    host_if_ = std::move(o.host_if_);
    o.host_if_.clear();
    addrs_ = o.addrs_;
  }
  return *this;
}

SandboxNetwork::~SandboxNetwork() { Destroy(); }

void SandboxNetwork::Detach() {
  netns_.Reset();
  host_if_.clear();
}

void SandboxNetwork::Destroy() {
  netns_.Reset();
  if (host_if_.empty()) return;
  if (auto s = DeleteLink(host_if_); !s.ok() && s.error().code != ErrorCode::kNotFound)
    log::Warn("cannot delete veth {}: {}", host_if_, s.error().ToString());
  host_if_.clear();
}

}  // namespace cove::net
