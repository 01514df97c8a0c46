// SandboxNetworks: the sealed networks of this coved's sandboxes. Owns the
// firewall table and a pool of ready networks (namespace + veth, admitted to
// the firewall, each holding its host id slot), refilled in the background so
// that creating a sandbox does not wait for namespace and veth set-up.
// A network is admitted to the firewall before anything can run inside it,
// and leaves it only when its veth is deleted. Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "isolation/id_range.h"
#include "net/address_plan.h"
#include "net/firewall.h"
#include "net/sandbox_network.h"

namespace cove {

struct NetworkOptions {
  std::string subnet = "10.200.0.0/15";  // one /31 per id slot
  size_t pool_size = 8;                   // ready networks kept in advance
  size_t pool_builders = 2;               // threads refilling the pool
  net::FirewallConfig ports;               // where the firewall sends sandboxes' traffic (subnet: set by Open)
  std::string table;                      // nftables table of this coved ("cove_<hash of state dir>")
  std::string slot_lock_dir = isolation::kDefaultIdSlotLockDir;
  std::string firewall_lock_dir = net::kDefaultFirewallLockDir;  // who owns which table (net/firewall.h)
};

// The environment that points a sandbox's programs at the explicit proxy.
std::vector<std::pair<std::string, std::string>> ProxyEnvironment(const net::VethAddresses& addrs,
                                                                  uint16_t explicit_port);

// The environment that makes TLS clients in a sandbox trust coved's CA
// (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, GIT_SSL_CAINFO: the
// bundle /etc/cove/ca-bundle.crt; NODE_EXTRA_CA_CERTS: /etc/cove/ca.crt).
std::vector<std::pair<std::string, std::string>> TrustEnvironment();

class SandboxNetworks {
 public:
  static Result<std::unique_ptr<SandboxNetworks>> Open(NetworkOptions options);
  ~SandboxNetworks();  // Shutdown(false)

  // Installs (or atomically replaces) the firewall table with the links of the
  // sandboxes that survived a restart (their slots), deletes veths that no
  // live holder of their id slot owns and the tables (`cove_*`) of coveds
  // that are gone (leftovers of crashed cove processes), and starts filling
  // the pool.
  Status Seal(const std::vector<uint32_t>& adopted_slots);

  struct Reserved {
    isolation::IdSlotLease lease;
    net::SandboxNetwork network;
  };
  // A ready network with its slot lease: from the pool, or built now.
  Result<Reserved> Reserve(uint32_t hint);
  // A network for an id slot the caller already holds.
  Result<net::SandboxNetwork> BuildForSlot(uint32_t slot);
  // Takes a started sandbox's network out of the firewall and deletes its veth. Idempotent.
  void Remove(uint32_t slot);
  // Stops the pool, deletes the pooled networks, and deletes the firewall
  // table when no sandbox is left.
  void Shutdown(bool no_sandbox_left);

  const net::AddressPlan& plan() const { return plan_; }
  const NetworkOptions& options() const { return options_; }

 private:
  SandboxNetworks(NetworkOptions options, net::AddressPlan plan) : options_(std::move(options)), plan_(plan) {}
  Result<net::SandboxNetwork> BuildAdmitted(uint32_t slot);
  // One pool builder; `hint` spreads builders over the slots.
  void FillPool(uint32_t hint);
  void RemoveLeftoverVeths();
  void RemoveLeftoverTables();

  NetworkOptions options_;
  net::AddressPlan plan_;
  std::unique_ptr<net::Firewall> firewall_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Reserved> pool_;
  bool stopping_ = false;
  std::vector<std::thread> fillers_;
};

}  // namespace cove
