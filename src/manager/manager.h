// Manager: the registry and lifecycle of sandboxes.
//
// States: creating -> running -> (failed) ; destroy removes a sandbox in any
// state. Records are persisted in the Store at each transition, so a restarted
// coved adopts running sandboxes (Adopt) and cleans up after dead ones.
// Destroy answers once the sandbox is unreachable and every process has been
// signalled; the Reaper removes the rest in the background (record state
// "deleting", hidden from the API), and only then are its id slot and record
// freed. A create of an id whose old sandbox is still being reaped waits for
// the reaper (kCreateWaitsForReaper, then kUnavailable).
//
// Threading: all methods run on the io executor given at construction (the
// home shard), except Agent, Arrive, executor and ExecutorOf; the blocking kernel work
// (SandboxHost) runs on a private worker pool. With UseShards, each sandbox's
// agent connection lives on the shard of its id (io/shards.h): the Manager
// reaches it only by posting there, and Agent is called on that shard.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "manager/agent_connection.h"
#include "io/async_signal.h"
#include "io/shards.h"
#include "manager/reaper.h"
#include "manager/running_sandboxes.h"
#include "manager/sandbox_host.h"
#include "manager/store.h"
#include "manager/tombstones.h"

namespace cove {

struct CreateRequest {
  std::string id;  // empty: generate one
  std::string image = "default";
  std::string instance_type;  // empty: default type
  std::optional<isolation::Limits> limits;  // overrides the type's limits
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> labels;
  std::string user = "root";
  std::shared_ptr<const proxy::EgressPolicy> egress;  // null: coved's default
};

class Manager {
 public:
  // The FlowBudget of all agent connections: 1024 channel windows.
  static constexpr size_t kAgentOutputBudget = 256 << 20;

  Manager(asio::any_io_executor ex, Store* store, SandboxHost* host, size_t worker_threads = 4);
  ~Manager();

  // At start-up: adopt every stored running sandbox that is still alive, clean up the others.
  Task<void> Adopt();
  // Spreads agent connections over `shards` (before Adopt; null: all on the
  // home executor). Each shard gets its share of kAgentOutputBudget.
  void UseShards(const io::Shards* shards);
  // Publishes the running sandboxes to `running` from now on (before Adopt;
  // null: nowhere), for the front ends that look them up from any thread.
  void PublishTo(RunningSandboxes* running) { running_ = running; }
  // The home executor (any thread).
  asio::any_io_executor executor() const { return ex_; }
  // Where the sandbox `id`'s agent connection lives and its API handlers run
  // (any thread; a function of the id alone).
  asio::any_io_executor ExecutorOf(const std::string& id) const;

  // Validates and creates a sandbox; waits until its agent answers. A failed
  // sandbox whose create was interrupted by a coved stop is replaced.
  // Errors: kInvalidArgument (bad id/type/image), kAlreadyExists, kCancelled
  // (deleted while being created), kUnavailable (the previous sandbox of this
  // id is still being removed), or the sandbox host's error.
  Task<Result<SandboxRecord>> Create(CreateRequest request);
  std::optional<SandboxRecord> Get(const std::string& id) const;
  std::vector<SandboxRecord> List() const;
  // Replaces a sandbox's egress policy (null: coved's default) and persists
  // it; it applies to new connections at once. kNotFound for unknown ids.
  Status SetEgress(const std::string& id, std::shared_ptr<const proxy::EgressPolicy> egress);
  // Replaces a sandbox's exposed ports (validated by the caller) and persists
  // them. kNotFound for unknown ids.
  Status SetPorts(const std::string& id, std::vector<PortExposure> ports);
  // Deletes the sandbox; ok when it does not exist. Answers once it is gone
  // from the API, its agent connection is closed (calls in flight fail with
  // kNotFound) and every process in its cgroup has been sent SIGKILL; the
  // reaper finishes the removal. From then on the id is a tombstone for
  // requests that arrived earlier (see Agent).
  Task<Status> Destroy(std::string id);

  // The moment a request arrives (taken when its head has been read).
  Tombstones::Arrival Arrive() { return tombstones_.Arrive(); }

  // The agent connection of a running sandbox. With create_if_missing (the
  // get-or-create of the compatible routes), an unknown id, or a failed
  // sandbox whose create was interrupted, is created with defaults first -
  // unless it was deleted after `arrival` (kNotFound): a request sent before
  // a DELETE answered never brings the sandbox back.
  // Errors: kNotFound, kFailedPrecondition (sandbox failed), kUnavailable.
  // Runs on ExecutorOf(id), where the connection lives: a live connection is
  // answered there from the shard's own table; else it asks the home shard.
  Task<Result<std::shared_ptr<AgentConnection>>> Agent(const std::string& id, bool create_if_missing,
                                                       const Tombstones::Arrival& arrival);

  // No sandbox is known and nothing is left to reap (coved may release its host resources).
  bool Empty() const { return entries_.empty() && reaper_.empty(); }
  // Before coved stops: lets the reaper finish (bounded); what is left is reaped at the next start.
  Task<void> FinishReaping(std::chrono::steady_clock::duration limit) {
    co_await reaper_.Drain(Reaper::Clock::now() + limit);
  }
  // How long a create waits for the reaper of an old sandbox of the same id.
  static constexpr auto kCreateWaitsForReaper = std::chrono::seconds(30);

  // Images known to the sandbox host's image store are checked by the caller; this
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
    RunningSandboxes::Record published;  // what running_ shows of it (null: nothing)
  };

  Task<Result<SandboxRecord>> Launch(std::shared_ptr<Entry> entry);
  Task<Result<std::shared_ptr<AgentConnection>>> ConnectAgent(std::shared_ptr<Entry> entry);
  // Agent's work on the home shard.
  Task<Result<std::shared_ptr<AgentConnection>>> AgentAtHome(const std::string& id, bool create_if_missing,
                                                             const Tombstones::Arrival& arrival);
  // Closes an entry's agent connection on its shard and drops it from that
  // shard's table; returns once done (calls in flight have failed).
  Task<void> CloseAgent(std::shared_ptr<Entry> entry, std::string why, ErrorCode code);
  // The same, not waiting (from the synchronous paths).
  void PostCloseAgent(const std::shared_ptr<Entry>& entry, std::string why, ErrorCode code);
  void WatchPid(const std::shared_ptr<Entry>& entry);
  void AwaitPidExit(const std::shared_ptr<Entry>& entry);
  // Marks a sandbox failed (persisted, with the reason); clean_up also hands
  // what is left of it (processes, cgroups, layer) to the reaper. The record
  // and the id slot stay until the sandbox is deleted.
  void MarkFailed(const std::shared_ptr<Entry>& entry, std::string why, bool clean_up);
  // Removes the sandbox from the registry (persisted as deleting) and hands it
  // to the reaper, which frees its slot and record once nothing is left.
  // Calls still open on its agent fail with kNotFound and `why`. (entry by
  // value: the registry's reference is dropped on the way.)
  void Retire(std::shared_ptr<Entry> entry, const std::string& why);
  // A failed sandbox that a create replaces (its create was interrupted).
  static bool Replaceable(const Entry& entry);
  // Reserves a host id slot (the lowest this coved does not use, or a later
  // one another user of the host does not hold).
  Result<uint32_t> AllocateSlot();
  void FreeSlot(uint32_t slot);
  // The reaper is done with a deleted sandbox: frees its slot and record.
  void Release(const std::string& id, uint32_t slot);
  // Gives up a create before its sandbox started: frees the slot, drops the
  // entry, wakes its waiters; returns e.
  Error Abandon(std::shared_ptr<Entry> entry, Error e);
  void Persist(const SandboxRecord& r);
  // Shows the entry's record in running_ when it is the registry's entry of
  // its id, running and not being destroyed; otherwise takes it back. Called
  // after every change of those or of the record.
  void Republish(Entry& entry);

  asio::any_io_executor ex_;
  Store* store_;
  SandboxHost* host_;
  asio::thread_pool pool_;
  Reaper reaper_{ex_, pool_, host_};
  Tombstones tombstones_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;
  std::set<uint32_t> used_slots_;
  std::function<bool(const std::string&)> image_exists_;
  RunningSandboxes* running_ = nullptr;
  // What each shard owns, touched only on that shard: its share of the agent
  // output coved holds (flow_budget.h), and its live agent connections by id.
  struct Shard {
    asio::any_io_executor ex;
    std::shared_ptr<FlowBudget> budget;
    std::map<std::string, std::weak_ptr<AgentConnection>> agents;
  };
  size_t ShardIndex(const std::string& id) const { return shards_ ? shards_->IndexOf(id) : 0; }
  const io::Shards* shards_ = nullptr;
  std::vector<std::unique_ptr<Shard>> shard_;
};

}  // namespace cove
