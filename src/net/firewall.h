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
// The owner of a table is the process that holds the flock of
// <lock_dir>/<table>.lock (kDefaultFirewallLockDir, shared by every cove
// process on the host): a Firewall holds it for its life, and the kernel
// lets it go when the owner dies, even by SIGKILL. So a table whose lock file
// exists and nobody holds belongs to a coved that is gone, and the next coved
// to start removes it (RemoveTablesOfDeadOwners). A table without a lock file
// (made by an older coved) has no known owner and is left alone.
// Thread-safe.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/error.h"
#include "sys/unique_fd.h"

struct nft_ctx;

namespace cove::net {

inline constexpr const char* kDefaultFirewallLockDir = "/run/cove/firewall";

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
  // Takes ownership of table `inet <table>` (its lock in `lock_dir`: waits a
  // moment for a coved that is removing it as a dead one's; kAlreadyExists when
  // a live process owns it), then creates it or atomically replaces an existing
  // one (after a restart of coved: the proxy's ports may have changed) with
  // `links`. `table` is letters, digits and '_'.
  static Result<std::unique_ptr<Firewall>> Install(std::string table, FirewallConfig ports,
                                                   const std::vector<SandboxLink>& links,
                                                   const std::string& lock_dir = kDefaultFirewallLockDir);
  ~Firewall();

  Status Add(const SandboxLink& link);
  // Idempotent.
  Status Remove(const SandboxLink& link);
  // Deletes the table and its lock file (coved stops with no sandbox left).
  Status Uninstall();
  // Deletes every other inet table whose name starts with `prefix` and whose
  // owner is gone (its lock file in this firewall's lock dir exists and
  // nobody holds it; the lock is held while the table is deleted, so an owner
  // that starts meanwhile waits and installs afresh). Returns their names.
  Result<std::vector<std::string>> RemoveTablesOfDeadOwners(std::string_view prefix);
  // The names of every inet table on the host.
  Result<std::vector<std::string>> InetTables();
  const std::string& table() const { return table_; }

 private:
  Firewall(std::string table, std::string lock_dir, nft_ctx* ctx)
      : table_(std::move(table)), lock_dir_(std::move(lock_dir)), ctx_(ctx) {}
  Status Run(const std::string& script);

  std::string table_;
  std::string lock_dir_;
  UniqueFd lock_;  // the flock that makes this process the table's owner
  std::mutex mu_;
  nft_ctx* ctx_;
};

}  // namespace cove::net
