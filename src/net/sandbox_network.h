// SandboxNetwork: one sandbox's network namespace (made in the host's user
// namespace, loopback up, IPv6 off) joined to the host by its veth pair.
// Owning: destroying it (or Destroy()) deletes the veth; the namespace lives
// on while a sandbox process is inside it.
#pragma once

#include <cstdint>
#include <string>

#include "base/error.h"
#include "net/address_plan.h"
#include "sys/unique_fd.h"

namespace cove::net {

class SandboxNetwork {
 public:
  // Builds the namespace and the veth for `slot`. Nothing is left on failure.
  static Result<SandboxNetwork> Build(const AddressPlan& plan, uint32_t slot);

  SandboxNetwork(SandboxNetwork&& o) noexcept = default;
  SandboxNetwork& operator=(SandboxNetwork&& o) noexcept;
  ~SandboxNetwork();

  uint32_t slot() const { return slot_; }
  int netns_fd() const { return netns_.get(); }
  const std::string& host_if() const { return host_if_; }
  const VethAddresses& addresses() const { return addrs_; }
  // Closes the namespace fd (a started sandbox keeps the namespace alive)
  // and forgets the veth without deleting it: the running sandbox owns it now.
  void Detach();
  // Deletes the veth now.
  void Destroy();

 private:
  SandboxNetwork() = default;
  uint32_t slot_ = 0;
  UniqueFd netns_;
  std::string host_if_;  // empty once detached or destroyed
  VethAddresses addrs_;
};

}  // namespace cove::net
