#include "manager/sandbox_networks.h"

#include <algorithm>

#include "base/log.h"
#include "net/veth.h"

namespace cove {

std::vector<std::pair<std::string, std::string>> ProxyEnvironment(const net::VethAddresses& addrs,
                                                                  uint16_t explicit_port) {
  const std::string proxy = "http://" + addrs.HostText() + ":" + std::to_string(explicit_port);
  const std::string no_proxy = "localhost,127.0.0.1,::1";
  return {{"HTTP_PROXY", proxy}, {"HTTPS_PROXY", proxy}, {"http_proxy", proxy}, {"https_proxy", proxy},
          {"NO_PROXY", no_proxy}, {"no_proxy", no_proxy}};
}

std::vector<std::pair<std::string, std::string>> TrustEnvironment() {
  const std::string bundle = "/etc/cove/ca-bundle.crt";
  return {{"SSL_CERT_FILE", bundle}, {"REQUESTS_CA_BUNDLE", bundle}, {"CURL_CA_BUNDLE", bundle},
          {"GIT_SSL_CAINFO", bundle}, {"NODE_EXTRA_CA_CERTS", "/etc/cove/ca.crt"}};
}

Result<std::unique_ptr<SandboxNetworks>> SandboxNetworks::Open(NetworkOptions options) {
  COVE_ASSIGN_OR_RETURN(net::AddressPlan plan, net::AddressPlan::Parse(options.subnet));
  if (options.table.empty()) return MakeError(ErrorCode::kInvalidArgument, "network: firewall table name is empty");
  options.ports.subnet = plan.cidr();
  return std::unique_ptr<SandboxNetworks>(new SandboxNetworks(std::move(options), plan));
}

SandboxNetworks::~SandboxNetworks() { Shutdown(false); }

Status SandboxNetworks::Seal(const std::vector<uint32_t>& adopted_slots) {
  std::vector<net::SandboxLink> links;
  for (uint32_t slot : adopted_slots) {
    COVE_ASSIGN_OR_RETURN(auto addrs, plan_.ForSlot(slot));
    links.push_back({net::HostVethName(slot), addrs.sandbox});
  }
  COVE_ASSIGN_OR_RETURN(firewall_,
                        net::Firewall::Install(options_.table, options_.ports, links, options_.firewall_lock_dir));
  RemoveLeftoverVeths();
  RemoveLeftoverTables();
  std::lock_guard lock(mu_);
  stopping_ = false;
  for (size_t i = 0; i < std::max<size_t>(1, options_.pool_builders); ++i)
    fillers_.emplace_back([this, i] { FillPool(static_cast<uint32_t>(1 + i * 64)); });
  return OkStatus();
}

void SandboxNetworks::RemoveLeftoverVeths() {
  auto links = net::ListLinks();
  if (!links.ok()) {
    log::Warn("cannot list network links: {}", links.error().ToString());
    return;
  }
  for (const auto& name : *links) {
    uint32_t slot = 0;
    if (!net::SlotOfHostVeth(name, &slot)) continue;
    // A slot nobody holds (not us, not another cove process) has no sandbox.
    auto lease = isolation::IdSlotLease::AcquireExact(options_.slot_lock_dir, slot);
    if (!lease.ok()) continue;
    if (auto s = net::DeleteLink(name); s.ok()) log::Info("deleted leftover veth {}", name);
  }
}

void SandboxNetworks::RemoveLeftoverTables() {
  // Every coved's table is "cove_<hash of its state dir>" (daemon/egress.cc).
  auto removed = firewall_->RemoveTablesOfDeadOwners("cove_");
  if (!removed.ok()) {
    log::Warn("cannot remove the firewall tables of coveds that are gone: {}", removed.error().ToString());
    return;
  }
  for (const auto& table : *removed) log::Info("deleted firewall table inet {} of a coved that is gone", table);
}

Result<net::SandboxNetwork> SandboxNetworks::BuildAdmitted(uint32_t slot) {
  if (!firewall_) return MakeError(ErrorCode::kFailedPrecondition, "sandbox networks are not sealed yet");
  COVE_ASSIGN_OR_RETURN(net::SandboxNetwork n, net::SandboxNetwork::Build(plan_, slot));
  COVE_TRY(firewall_->Add({n.host_if(), n.addresses().sandbox}));
  return n;
}

Result<SandboxNetworks::Reserved> SandboxNetworks::Reserve(uint32_t hint) {
  {
    std::lock_guard lock(mu_);
    if (!pool_.empty()) {
      Reserved r = std::move(pool_.front());
      pool_.pop_front();
      wake_.notify_one();
      return r;
    }
  }
  COVE_ASSIGN_OR_RETURN(auto lease, isolation::IdSlotLease::Acquire(options_.slot_lock_dir, hint));
  COVE_ASSIGN_OR_RETURN(net::SandboxNetwork n, BuildAdmitted(lease.slot()));
  wake_.notify_one();
  return Reserved{std::move(lease), std::move(n)};
}

Result<net::SandboxNetwork> SandboxNetworks::BuildForSlot(uint32_t slot) {
  // A veth left by this slot's previous sandbox (a crash between its end and
  // the clean-up) would make the build fail: the slot is ours, so is the veth.
  (void)net::DeleteLink(net::HostVethName(slot));
  return BuildAdmitted(slot);
}

void SandboxNetworks::Remove(uint32_t slot) {
  auto addrs = plan_.ForSlot(slot);
  const std::string name = net::HostVethName(slot);
  if (auto s = net::DeleteLink(name); !s.ok() && s.error().code != ErrorCode::kNotFound)
    log::Warn("cannot delete veth {}: {}", name, s.error().ToString());
  if (firewall_ && addrs.ok())
    if (auto s = firewall_->Remove({name, addrs->sandbox}); !s.ok())
      log::Warn("cannot remove {} from the firewall: {}", name, s.error().ToString());
}

void SandboxNetworks::FillPool(uint32_t hint) {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (pool_.size() >= options_.pool_size) {
      wake_.wait(lock);
      continue;
    }
    lock.unlock();
    auto lease = isolation::IdSlotLease::Acquire(options_.slot_lock_dir, hint);
    Result<net::SandboxNetwork> n = lease.ok() ? BuildAdmitted(lease->slot()) : Result<net::SandboxNetwork>(lease.error());
    lock.lock();
    if (!n.ok()) {
      log::Warn("cannot prepare a sandbox network for the pool: {}", n.error().ToString());
      wake_.wait_for(lock, std::chrono::seconds(5));
      continue;
    }
    hint = lease->slot() + 1;
    pool_.push_back(Reserved{std::move(*lease), std::move(*n)});
  }
}

void SandboxNetworks::Shutdown(bool no_sandbox_left) {
  std::deque<Reserved> pooled;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    wake_.notify_all();
  }
  for (auto& t : fillers_) t.join();
  fillers_.clear();
  {
    std::lock_guard lock(mu_);
    pooled.swap(pool_);
  }
  for (auto& r : pooled) Remove(r.network.slot());
  pooled.clear();
  if (no_sandbox_left && firewall_) {
    if (auto s = firewall_->Uninstall(); !s.ok()) log::Warn("cannot delete firewall table: {}", s.error().ToString());
    firewall_.reset();
  }
}

}  // namespace cove
