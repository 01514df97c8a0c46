// Firewall: the packet filter that seals sandboxes, one nftables table per
// coved (programmed through libnftables, one atomic transaction per change).
// For traffic from the sandboxes' host-side veths (set `links`):
//   - a source address other than the one assigned to that veth is dropped;
//   - DNS (UDP and TCP port 53, any destination) is redirected to coved's DNS
//     responder, every other TCP connection to the transparent proxy port,
//     except connections to the explicit proxy port (HTTP_PROXY);
//   - the host accepts from sandboxes only those ports; everything else
//     (IPv6, ICMP, other UDP, the host's own services) is dropped; and those
//     ports accept nothing but sandboxes' traffic;
//   - nothing is forwarded to or from a sandbox (no sandbox-to-sandbox
//     traffic, no route out), and only root's sockets on the host may open
//     connections to a sandbox (the preview router);
//   - the proxy's upstream connections (upstream_mark) cannot reach the
//     host's own addresses or the sandboxes.
// Thread-safe.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/error.h"

struct nft_ctx;

namespace cove::net {

struct FirewallConfig {
  uint16_t transparent_proxy = 0;
  uint16_t explicit_proxy = 0;
  uint16_t dns = 0;
  // The proxy marks its upstream sockets with this: they are refused the
  // host's own addresses and the sandboxes' subnet, whatever the policy says.
  uint32_t upstream_mark = 0;
  std::string subnet;  // the sandboxes' (AddressPlan) CIDR
};

struct SandboxLink {
  std::string host_if;  // "cv<slot>"
  in_addr address{};    // the sandbox's address
};

// The nft script that (re)creates table `table` with `links` in it; a pure
// function, exposed for tests.
std::string FirewallScript(const std::string& table, const FirewallConfig& ports,
                           const std::vector<SandboxLink>& links);

class Firewall {
 public:
  // Creates table `inet <table>` or atomically replaces an existing one (after
  // a restart of coved: the proxy's ports may have changed) with `links`.
  static Result<std::unique_ptr<Firewall>> Install(std::string table, FirewallConfig ports,
                                                   const std::vector<SandboxLink>& links);
  ~Firewall();

  Status Add(const SandboxLink& link);
  // Idempotent.
  Status Remove(const SandboxLink& link);
  // Deletes the table (coved stops with no sandbox left).
  Status Uninstall();
  const std::string& table() const { return table_; }

 private:
  Firewall(std::string table, nft_ctx* ctx) : table_(std::move(table)), ctx_(ctx) {}
  Status Run(const std::string& script);

  std::string table_;
  std::mutex mu_;
  nft_ctx* ctx_;
};

}  // namespace cove::net
