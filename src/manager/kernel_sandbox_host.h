// KernelSandboxHost: the SandboxHost built on isolation/ (namespaces, overlay
// layers with quotas, cgroups, seccomp). Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "isolation/cgroup.h"
#include "isolation/id_range.h"
#include "isolation/layer_store.h"
#include "isolation/running_sandbox.h"
#include "manager/images.h"
#include "manager/sandbox_host.h"
#include "manager/sandbox_networks.h"
#include "sys/unique_fd.h"

namespace cove {

class KernelSandboxHost : public SandboxHost {
 public:
  // state_dir: coved's state directory (layers/ and run/ are created in it).
  // networks: null for sandboxes with loopback only; else borrowed, outlives this.
  static Result<std::unique_ptr<KernelSandboxHost>> Open(const std::string& state_dir, std::string agent_path,
                                                         Images* images, SandboxNetworks* networks = nullptr);

  // coved's interception CA (PEM; empty: none): sandboxes with a sealed
  // network get it in their trust store (LayerSeed) and TrustEnvironment().
  // Call before the first Start.
  void SetTrustedCa(std::string pem);
  // Host directory of the code-interpreter runners (docs/interpreter.md),
  // bound read-only at kInterpreterMount in every sandbox; empty: none.
  void SetInterpreterDir(std::string dir) { interpreter_dir_ = std::move(dir); }
  static constexpr const char* kInterpreterMount = "/opt/cove/interpreter";
  Result<Started> Start(const SandboxRecord& record) override;
  bool IsAlive(const SandboxRecord& record) override;
  Status Kill(const SandboxRecord& record) override;
  Status Destroy(const SandboxRecord& record) override;
  std::string AgentSocketPath(const SandboxRecord& record) override;
  void CleanLeftovers(const std::vector<std::string>& known_ids) override;
  Result<uint32_t> ReserveSlot(uint32_t hint) override;
  Status ClaimSlot(uint32_t slot) override;
  void ReleaseSlot(uint32_t slot) override;
  Status FinishAdoption() override;
  // When coved stops with no sandbox left: unmounts the layer file system and
  // removes coved's cgroup group, so an idle host keeps nothing of coved's
  // (both are set up again at the next start).
  Status ReleaseHostResources();

 private:
  KernelSandboxHost(isolation::CgroupManager cgroups, isolation::LayerStore layers, std::string run_dir,
                    UniqueFd agent, Images* images, SandboxNetworks* networks);
  // The network for a sandbox about to start in `slot`: reserved with the slot, or built now.
  Result<net::SandboxNetwork> TakeNetwork(uint32_t slot);
  isolation::PersistedSandbox Persisted(const SandboxRecord& record) const;

  isolation::CgroupManager cgroups_;
  isolation::LayerStore layers_;
  isolation::IsolationHost host_;
  std::string run_dir_;
  UniqueFd agent_;          // sealed in-memory copy of cove-agent
  std::string agent_path_;  // /proc/self/fd/N of agent_
  std::string interpreter_dir_;
  Images* images_;
  std::mutex mu_;
  std::map<std::string, isolation::RunningSandbox> live_;  // created or adopted by this process
  std::map<uint32_t, isolation::IdSlotLease> slots_;       // id slots held by this process
  SandboxNetworks* networks_;
  std::string trusted_ca_pem_;  // SetTrustedCa
  std::string ca_bundle_pem_;
  std::map<uint32_t, net::SandboxNetwork> reserved_networks_;  // by slot, until the sandbox starts
};

}  // namespace cove
