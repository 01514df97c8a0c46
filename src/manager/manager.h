// Manager: the registry and lifecycle of sandboxes.
//
// States: creating -> running -> (failed) ; destroy removes a sandbox in any
// state. Records are persisted in the Store at each transition, so a restarted
// coved adopts running sandboxes (Adopt) and cleans up after dead ones.
//
// Threading: all methods run on the io executor given at construction; the
// blocking kernel work (Runtime) runs on a private worker pool.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "manager/agent_connection.h"
#include "manager/async_signal.h"
#include "manager/runtime.h"
#include "manager/store.h"

namespace cove {

struct CreateRequest {
  std::string id;  // empty: generate one
  std::string image = "default";
  std::string instance_type;  // empty: default type
  std::optional<isolation::Limits> limits;  // overrides the type's limits
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> labels;
  std::string user = "root";
  nlohmann::json egress;  // egress policy (validated by the caller); null: default
};

class Manager {
 public:
  // The FlowBudget of all agent connections: 1024 channel windows.
  static constexpr size_t kAgentOutputBudget = 256 << 20;

  Manager(asio::any_io_executor ex, Store* store, Runtime* runtime, size_t worker_threads = 4);
  ~Manager();

  // At start-up: adopt every stored running sandbox that is still alive, clean up the others.
  Task<void> Adopt();

  // Validates and creates a sandbox; waits until its agent answers.
  // Errors: kInvalidArgument (bad id/type/image), kAlreadyExists, or the runtime's error.
  Task<Result<SandboxRecord>> Create(CreateRequest request);
  std::optional<SandboxRecord> Get(const std::string& id) const;
  std::vector<SandboxRecord> List() const;
  // The sandbox whose network uses id slot `slot` (its source address), or
  // null. Valid until the manager's next state change (use it at once: the
  // egress proxy calls this for every connection, so nothing is copied).
  const SandboxRecord* FindBySlot(uint32_t slot) const;
  // Replaces a sandbox's egress policy (validated by the caller) and persists
  // it; it applies to new connections at once. kNotFound for unknown ids.
  Status SetEgress(const std::string& id, nlohmann::json egress);
  // Replaces a sandbox's exposed ports (validated by the caller) and persists
  // them. kNotFound for unknown ids.
  Status SetPorts(const std::string& id, std::vector<PortExposure> ports);
  // Kills and removes the sandbox; ok when it does not exist.
  Task<Status> Destroy(std::string id);

  // The agent connection of a running sandbox. When the id is unknown and
  // create_if_missing is set, the sandbox is created with defaults first.
  // Errors: kNotFound, kFailedPrecondition (sandbox failed), kUnavailable.
  Task<Result<std::shared_ptr<AgentConnection>>> Agent(const std::string& id, bool create_if_missing);

  // Images known to the runtime's image store are checked by the caller; this
  // is the set of names accepted by Create.
  void SetImageChecker(std::function<bool(const std::string&)> fn) { image_exists_ = std::move(fn); }

 private:
  struct Entry {
    explicit Entry(asio::any_io_executor ex) : ready(ex) {}
    SandboxRecord record;
    std::shared_ptr<AgentConnection> agent;
    std::unique_ptr<asio::posix::stream_descriptor> pid_watch;
    AsyncSignal ready;  // notified when leaving kCreating
    bool destroying = false;
  };

  Task<Result<SandboxRecord>> Launch(std::shared_ptr<Entry> entry);
  Task<Result<std::shared_ptr<AgentConnection>>> ConnectAgent(std::shared_ptr<Entry> entry);
  void WatchPid(const std::shared_ptr<Entry>& entry);
  void AwaitPidExit(const std::shared_ptr<Entry>& entry);
  // Marks a sandbox failed (persisted, with the reason); clean_up also kills
  // what is left of it and frees its cgroups and layer in the background.
  void MarkFailed(const std::shared_ptr<Entry>& entry, std::string why, bool clean_up);
  Task<void> CleanUp(std::shared_ptr<Entry> entry);
  // Reserves a host id slot (the lowest this coved does not use, or a later
  // one another user of the host does not hold).
  Result<uint32_t> AllocateSlot();
  void FreeSlot(uint32_t slot);
  void Persist(const SandboxRecord& r);

  asio::any_io_executor ex_;
  Store* store_;
  Runtime* runtime_;
  asio::thread_pool pool_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;
  std::set<uint32_t> used_slots_;
  std::map<uint32_t, std::string> id_by_slot_;  // sandboxes that hold a slot
  std::function<bool(const std::string&)> image_exists_;
  // Agent output held in coved for all sandboxes together (flow_budget.h).
  std::shared_ptr<FlowBudget> flow_budget_ = std::make_shared<FlowBudget>(kAgentOutputBudget);
};

}  // namespace cove
