// AddressPlan: which IPv4 addresses a sandbox's veth pair gets. Each sandbox
// owns the /31 at `subnet + 2*slot` (slot = its host id slot, unique on the
// host): the host side takes the even address and is the sandbox's gateway,
// DNS server and proxy address; the sandbox side (eth0) takes the odd one.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <string>

#include "base/error.h"

namespace cove::net {

struct VethAddresses {
  in_addr host{};     // host side, the sandbox's gateway
  in_addr sandbox{};  // eth0 inside the sandbox
  std::string HostText() const;
  std::string SandboxText() const;
};

class AddressPlan {
 public:
  // cidr: an IPv4 network such as "10.200.0.0/15" (prefix 8..30).
  static Result<AddressPlan> Parse(const std::string& cidr);
  // kResourceExhausted when the subnet has no /31 for this slot.
  Result<VethAddresses> ForSlot(uint32_t slot) const;
  // The slot whose sandbox address is `addr`, if it is one of ours.
  bool SlotOfSandboxAddress(in_addr addr, uint32_t* slot) const;
  std::string cidr() const { return cidr_; }

 private:
  uint32_t base_ = 0;  // host byte order
  uint32_t size_ = 0;  // addresses in the subnet
  std::string cidr_;
};

// The host-side veth of a slot: "cv<slot>" (interface names have 15 bytes).
std::string HostVethName(uint32_t slot);
// Parses a name made by HostVethName; false for anything else.
bool SlotOfHostVeth(const std::string& name, uint32_t* slot);

}  // namespace cove::net
