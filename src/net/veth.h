// A sandbox's link to the host: a veth pair made over rtnetlink (libnl), the
// host side "cv<slot>" in the caller's namespace, the other side "eth0" in
// the sandbox's namespace, both addressed from the AddressPlan, the
// sandbox's default route through the host side. IPv6 is switched off on
// both sides (sandboxes have IPv4 only; the packet filter drops IPv6 too).
// Blocking; call from worker threads.
#pragma once

#include <string>
#include <vector>

#include "base/error.h"
#include "net/address_plan.h"

namespace cove::net {

// Brings up loopback and switches IPv6 off inside `netns_fd`.
Status PrepareNetns(int netns_fd);

// Creates and configures the pair. On failure nothing is left.
Status CreateVeth(int netns_fd, const std::string& host_name, const VethAddresses& addrs);

// Deletes the pair by its host side (deleting one end deletes both).
// kNotFound when there is no such link.
Status DeleteLink(const std::string& host_name);

// Names of the links in the caller's namespace.
Result<std::vector<std::string>> ListLinks();

}  // namespace cove::net
