#include "manager/kernel_sandbox_host.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "base/log.h"
#include "isolation/id_range.h"
#include "base/scope_exit.h"
#include "sys/io.h"

namespace cove {

namespace {

// A sealed memfd holding the agent binary: sandboxes exec this copy, so a
// rebuild or upgrade of the file never changes a running coved's agent, and
// inside a sandbox /proc/1/exe names no host path.
Result<UniqueFd> SealedCopy(const std::string& path) {
  COVE_ASSIGN_OR_RETURN(std::string bytes, sys::ReadFile(path, 256 << 20));
  UniqueFd fd(::memfd_create("cove-agent", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return SysError("memfd_create");
  COVE_TRY(sys::WriteAll(fd.get(), bytes));
  if (::fchmod(fd.get(), 0555) != 0) return SysError("chmod agent copy");
  // F_SEAL_WRITE fails with EBUSY while the kernel still holds a transient
  // reference to a page just written (seen once in a full test run): retry briefly.
  int sealed = -1;
  for (int attempt = 0; attempt < 50; ++attempt) {
    sealed = ::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
    if (sealed == 0 || errno != EBUSY) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (sealed != 0) return SysError("seal agent copy");
  return fd;
}

}  // namespace

KernelSandboxHost::KernelSandboxHost(isolation::CgroupManager cgroups, isolation::LayerStore layers,
                                     std::string run_dir, UniqueFd agent, Images* images, SandboxNetworks* networks)
    : cgroups_(std::move(cgroups)),
      layers_(std::move(layers)),
      run_dir_(std::move(run_dir)),
      agent_(std::move(agent)),
      agent_path_("/proc/self/fd/" + std::to_string(agent_.get())),
      images_(images),
      networks_(networks) {
  host_.cgroups = &cgroups_;
  host_.layers = &layers_;
}

Result<std::unique_ptr<KernelSandboxHost>> KernelSandboxHost::Open(const std::string& state_dir,
                                                                   std::string agent_path, Images* images,
                                                                   SandboxNetworks* networks) {
  COVE_ASSIGN_OR_RETURN(auto cgroups, isolation::CgroupManager::OpenHost(isolation::CgroupGroupForState(state_dir)));
  COVE_ASSIGN_OR_RETURN(auto layers, isolation::LayerStore::Open(state_dir));
  std::string run_dir = state_dir + "/run";
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec || ::chmod(run_dir.c_str(), 0700) != 0) return SysError("create " + run_dir);
  COVE_ASSIGN_OR_RETURN(UniqueFd agent, SealedCopy(agent_path));
  return std::unique_ptr<KernelSandboxHost>(
      new KernelSandboxHost(std::move(cgroups), std::move(layers), run_dir, std::move(agent), images, networks));
}

std::string KernelSandboxHost::AgentSocketPath(const SandboxRecord& record) {
  // Short and in a directory only root can enter; unix socket paths are limited to 107 bytes.
  return run_dir_ + "/" + std::to_string(record.slot) + ".sock";
}

isolation::PersistedSandbox KernelSandboxHost::Persisted(const SandboxRecord& record) const {
  isolation::PersistedSandbox p;
  p.id = record.id;
  p.pid = record.pid > 0 ? record.pid : -1;
  p.start_time_ticks = record.start_ticks;
  p.host_id_base = isolation::HostIdBaseForSlot(record.slot).ok() ? *isolation::HostIdBaseForSlot(record.slot) : 0;
  return p;
}

namespace {

// A listening unix socket bound at path (replacing a stale file).
Result<UniqueFd> ListenUnix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return MakeError(ErrorCode::kInvalidArgument, "agent socket path too long: " + path);
  std::copy(path.begin(), path.end(), addr.sun_path);
  ::unlink(path.c_str());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return SysError("socket");
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return SysError("bind " + path);
  if (::listen(fd.get(), 8) != 0) return SysError("listen " + path);
  return fd;
}

}  // namespace

void KernelSandboxHost::SetTrustedCa(std::string pem) {
  trusted_ca_pem_ = std::move(pem);
  ca_bundle_pem_.clear();
  if (trusted_ca_pem_.empty()) return;
  if (auto host = sys::ReadFile("/etc/ssl/certs/ca-certificates.crt", 16 << 20); host.ok()) {
    ca_bundle_pem_ = std::move(*host);
    if (!ca_bundle_pem_.empty() && ca_bundle_pem_.back() != '\n') ca_bundle_pem_.push_back('\n');
  }
  ca_bundle_pem_ += trusted_ca_pem_;
}

Result<SandboxHost::Started> KernelSandboxHost::Start(const SandboxRecord& record) {
  COVE_ASSIGN_OR_RETURN(isolation::Image image, images_->Resolve(record.image));
  COVE_ASSIGN_OR_RETURN(uid_t base, isolation::HostIdBaseForSlot(record.slot));
  isolation::SandboxSpec spec;
  spec.id = record.id;
  spec.host_id_base = base;
  spec.image = std::move(image);
  spec.limits = record.limits;
  spec.agent_path = agent_path_;
  spec.argv = {"cove-agent"};
  if (!interpreter_dir_.empty()) spec.read_only_binds.push_back({interpreter_dir_, kInterpreterMount});
  for (const auto& [k, v] : record.env)
    if (k.rfind("COVE_", 0) != 0) spec.env.push_back(k + "=" + v);
  if (record.user == "user") spec.env.push_back("COVE_AGENT_USER=user");

  std::optional<net::SandboxNetwork> network;
  if (networks_) {
    COVE_ASSIGN_OR_RETURN(network, TakeNetwork(record.slot));
    spec.netns_fd = network->netns_fd();
    spec.nameserver = network->addresses().HostText();
    for (const auto& [k, v] : ProxyEnvironment(network->addresses(), networks_->options().ports.explicit_proxy))
      spec.env.push_back(k + "=" + v);
    if (!trusted_ca_pem_.empty()) {
      spec.trusted_ca_pem = trusted_ca_pem_;
      spec.ca_bundle_pem = ca_bundle_pem_;
      for (const auto& [k, v] : TrustEnvironment()) spec.env.push_back(k + "=" + v);
    }
  }
  // On failure the network goes too, firewall entry included.
  ScopeExit drop_network([&] { if (network) networks_->Remove(record.slot); });

  std::string socket_path = AgentSocketPath(record);
  COVE_ASSIGN_OR_RETURN(UniqueFd listener, ListenUnix(socket_path));
  isolation::CreateOptions options;
  options.default_layout = record.image == "default";
  isolation::CreateOptions::Timings timings;
  options.timings = &timings;
  auto rt = isolation::RunningSandbox::Create(host_, std::move(spec), {listener.get()}, options);
  if (!rt.ok()) {
    ::unlink(socket_path.c_str());
    return std::move(rt).error();
  }
  log::Debug("sandbox {}: created in {:.0f} us (layer {:.0f}, cgroup {:.0f}, clone {:.0f}, parent {:.0f}, child {:.0f})",
             record.id, timings.total_us, timings.layer_us, timings.cgroup_us, timings.launch.clone_us,
             timings.launch.parent_us, timings.launch.child_us);
  Started started{rt->pid(), rt->persisted().start_time_ticks};
  if (network) network->Detach();  // the sandbox owns it now; Destroy removes it
  drop_network.Release();
  std::lock_guard lock(mu_);
  live_.insert_or_assign(record.id, std::move(*rt));
  return started;
}

bool KernelSandboxHost::IsAlive(const SandboxRecord& record) {
  {
    std::lock_guard lock(mu_);
    if (auto it = live_.find(record.id); it != live_.end()) {
      auto exited = it->second.PollExit();
      return exited.ok() && !exited->has_value();
    }
  }
  auto rt = isolation::RunningSandbox::Adopt(host_, Persisted(record));
  if (!rt.ok()) return false;
  std::lock_guard lock(mu_);
  live_.insert_or_assign(record.id, std::move(*rt));
  return true;
}

Status KernelSandboxHost::Kill(const SandboxRecord& record) {
  {
    std::lock_guard lock(mu_);
    if (auto it = live_.find(record.id); it != live_.end()) return it->second.Kill();
  }
  return isolation::RunningSandbox::Kill(host_, Persisted(record));
}

Status KernelSandboxHost::Destroy(const SandboxRecord& record) {
  std::optional<isolation::RunningSandbox> rt;
  {
    std::lock_guard lock(mu_);
    if (auto it = live_.find(record.id); it != live_.end()) {
      rt.emplace(std::move(it->second));
      live_.erase(it);
    }
  }
  Status s = rt ? rt->Destroy() : isolation::RunningSandbox::CleanUp(host_, Persisted(record));
  if (!s.ok() && rt) {
    // Keep it (and pid 1's pidfd) for the next attempt, which reaps pid 1:
    // dropped now, coved's child would stay a zombie.
    std::lock_guard lock(mu_);
    live_.try_emplace(record.id, std::move(*rt));
  }
  ::unlink(AgentSocketPath(record).c_str());
  if (networks_) networks_->Remove(record.slot);
  return s;
}

Result<uint32_t> KernelSandboxHost::ReserveSlot(uint32_t hint) {
  if (networks_) {
    COVE_ASSIGN_OR_RETURN(auto reserved, networks_->Reserve(hint));
    uint32_t slot = reserved.lease.slot();
    std::lock_guard lock(mu_);
    slots_.insert_or_assign(slot, std::move(reserved.lease));
    reserved_networks_.insert_or_assign(slot, std::move(reserved.network));
    return slot;
  }
  COVE_ASSIGN_OR_RETURN(auto lease, isolation::IdSlotLease::Acquire(isolation::kDefaultIdSlotLockDir, hint));
  uint32_t slot = lease.slot();
  std::lock_guard lock(mu_);
  slots_.insert_or_assign(slot, std::move(lease));
  return slot;
}

Status KernelSandboxHost::ClaimSlot(uint32_t slot) {
  COVE_ASSIGN_OR_RETURN(auto lease, isolation::IdSlotLease::AcquireExact(isolation::kDefaultIdSlotLockDir, slot));
  std::lock_guard lock(mu_);
  slots_.insert_or_assign(slot, std::move(lease));
  return OkStatus();
}

void KernelSandboxHost::ReleaseSlot(uint32_t slot) {
  std::optional<net::SandboxNetwork> unused;
  {
    std::lock_guard lock(mu_);
    if (auto it = reserved_networks_.find(slot); it != reserved_networks_.end()) {
      unused.emplace(std::move(it->second));
      reserved_networks_.erase(it);
    }
  }
  if (unused) networks_->Remove(slot);
  unused.reset();
  std::lock_guard lock(mu_);
  slots_.erase(slot);
}

Result<net::SandboxNetwork> KernelSandboxHost::TakeNetwork(uint32_t slot) {
  {
    std::lock_guard lock(mu_);
    if (auto it = reserved_networks_.find(slot); it != reserved_networks_.end()) {
      net::SandboxNetwork n = std::move(it->second);
      reserved_networks_.erase(it);
      return n;
    }
  }
  return networks_->BuildForSlot(slot);
}

Status KernelSandboxHost::FinishAdoption() {
  if (!networks_) return OkStatus();
  std::vector<uint32_t> held;
  {
    std::lock_guard lock(mu_);
    for (const auto& [slot, _] : slots_) held.push_back(slot);
  }
  return networks_->Seal(held);
}

Status KernelSandboxHost::ReleaseHostResources() {
  COVE_TRY(layers_.Unmount());
  // A sandbox cgroup removed just before can keep its parent busy for a moment.
  Status removed = cgroups_.RemoveGroup();
  for (int i = 0; i < 40 && !removed.ok() && removed.error().sys_errno == EBUSY; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    removed = cgroups_.RemoveGroup();
  }
  return removed;
}

void KernelSandboxHost::CleanLeftovers(const std::vector<std::string>& known_ids) {
  auto residues = isolation::RunningSandbox::ListResidues(host_);
  if (!residues.ok()) {
    log::Warn("cannot list leftover sandboxes: {}", residues.error().ToString());
    return;
  }
  for (const auto& id : *residues) {
    if (std::find(known_ids.begin(), known_ids.end(), id) != known_ids.end()) continue;
    isolation::PersistedSandbox p;
    p.id = id;
    if (auto s = isolation::RunningSandbox::CleanUp(host_, p); !s.ok())
      log::Warn("cannot clean up leftovers of sandbox {}: {}", id, s.error().ToString());
    else
      log::Info("cleaned up leftovers of sandbox {}", id);
  }
}

}  // namespace cove
