// Name resolution for the egress proxy and the sandboxes' DNS: coved resolves
// every name itself (sandboxes never talk to a DNS server), against upstream
// servers from its config (default: the nameservers of /etc/resolv.conf).
// Runs on the caller's io_context; thread-compatible (the egress proxy and
// DNS use one per io thread: proxy/serving_shard.h).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "io/asio.h"
#include "policy/egress_policy.h"

namespace cove::proxy {

class Resolver {
 public:
  virtual ~Resolver() = default;
  // The addresses of `host` (A and, when want_ipv6, AAAA records), or the
  // address itself for an IP literal. kNotFound for NXDOMAIN or no records,
  // kUnavailable when no upstream answered, kTimeout after `timeout`.
  virtual Task<Result<std::vector<IpAddress>>> Resolve(std::string host, bool want_ipv6,
                                                       std::chrono::milliseconds timeout) = 0;
};

}  // namespace cove::proxy
