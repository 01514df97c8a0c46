#include "net/address_plan.h"

#include <arpa/inet.h>

#include <charconv>

namespace cove::net {
namespace {

std::string Text(in_addr a) {
  char buf[INET_ADDRSTRLEN];
  return inet_ntop(AF_INET, &a, buf, sizeof buf) ? buf : "?";
}

}  // namespace

std::string VethAddresses::HostText() const { return Text(host); }
std::string VethAddresses::SandboxText() const { return Text(sandbox); }

Result<AddressPlan> AddressPlan::Parse(const std::string& cidr) {
  auto bad = [&] { return MakeError(ErrorCode::kInvalidArgument, "network subnet '" + cidr + "' is not an IPv4 CIDR with prefix 8-30"); };
  auto slash = cidr.find('/');
  if (slash == std::string::npos) return bad();
  in_addr a{};
  if (inet_pton(AF_INET, cidr.substr(0, slash).c_str(), &a) != 1) return bad();
  int prefix = 0;
  auto p = cidr.data() + slash + 1, end = cidr.data() + cidr.size();
  auto [ptr, ec] = std::from_chars(p, end, prefix);
  if (ec != std::errc() || ptr != end || prefix < 8 || prefix > 30) return bad();
  AddressPlan plan;
  plan.size_ = 1u << (32 - prefix);
  plan.base_ = ntohl(a.s_addr) & ~(plan.size_ - 1);
  if (plan.base_ != ntohl(a.s_addr))
    return MakeError(ErrorCode::kInvalidArgument, "network subnet '" + cidr + "' has host bits set");
  plan.cidr_ = cidr;
  return plan;
}

Result<VethAddresses> AddressPlan::ForSlot(uint32_t slot) const {
  if (uint64_t{slot} * 2 + 1 >= size_)
    return MakeError(ErrorCode::kResourceExhausted,
                     "network subnet " + cidr_ + " has no address pair for id slot " + std::to_string(slot));
  VethAddresses v;
  v.host.s_addr = htonl(base_ + slot * 2);
  v.sandbox.s_addr = htonl(base_ + slot * 2 + 1);
  return v;
}

bool AddressPlan::SlotOfSandboxAddress(in_addr addr, uint32_t* slot) const {
  uint32_t a = ntohl(addr.s_addr);
  if (a < base_ || a - base_ >= size_ || (a - base_) % 2 == 0) return false;
  *slot = (a - base_) / 2;
  return true;
}

std::string HostVethName(uint32_t slot) { return "cv" + std::to_string(slot); }

bool SlotOfHostVeth(const std::string& name, uint32_t* slot) {
  if (name.size() < 3 || name.compare(0, 2, "cv") != 0 || (name[2] == '0' && name.size() > 3)) return false;
  auto [ptr, ec] = std::from_chars(name.data() + 2, name.data() + name.size(), *slot);
  return ec == std::errc() && ptr == name.data() + name.size();
}

}  // namespace cove::net
