// The destination a sandbox connected to before the packet filter redirected
// the connection to the transparent listener (netfilter's SO_ORIGINAL_DST for
// IPv4, IP6T_SO_ORIGINAL_DST for IPv6; needs conntrack).
#pragma once

#include <cstdint>

#include "base/error.h"
#include "policy/egress_policy.h"

namespace cove::proxy {

struct OriginalDestination {
  IpAddress address;
  uint16_t port = 0;
};

// For an accepted socket of family `family` (AF_INET or AF_INET6).
// kNotFound when the connection has no conntrack entry.
Result<OriginalDestination> GetOriginalDestination(int fd, int family);

}  // namespace cove::proxy
