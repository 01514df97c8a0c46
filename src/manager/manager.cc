#include "manager/manager.h"

#include <sys/wait.h>

#include <sys/syscall.h>
#include <unistd.h>

#include "base/log.h"
#include "base/time.h"
#include "manager/instance_types.h"
#include "io/off_thread.h"
#include "manager/sandbox_id.h"

namespace cove {
namespace {
constexpr auto kAgentHelloTimeout = std::chrono::seconds(5);
}  // namespace

Manager::Manager(asio::any_io_executor ex, Store* store, SandboxHost* host, size_t worker_threads)
    : ex_(std::move(ex)), store_(store), host_(host), pool_(worker_threads) {
  UseShards(nullptr);
}

void Manager::UseShards(const io::Shards* shards) {
  shards_ = shards;
  size_t n = shards ? shards->size() : 1;
  shard_.clear();
  for (size_t i = 0; i < n; ++i)
    shard_.push_back(std::make_unique<Shard>(
        Shard{shards ? shards->at(i) : ex_, std::make_shared<FlowBudget>(kAgentOutputBudget / n), {}}));
}

asio::any_io_executor Manager::ExecutorOf(const std::string& id) const { return shard_[ShardIndex(id)]->ex; }

// The shards have stopped (or there is one): connections are closed from here.
Manager::~Manager() {
  for (auto& [_, e] : entries_) {
    if (e->agent) e->agent->Close();
    if (e->pid_watch) e->pid_watch->close();
  }
  pool_.join();
}

void Manager::Persist(const SandboxRecord& r) {
  if (auto s = store_->PutSandbox(r); !s.ok())
    log::Error("sandbox {}: cannot persist its record: {}", r.id, s.error().ToString());
}

void Manager::Republish(Entry& entry) {
  if (!running_) return;
  auto it = entries_.find(entry.record.id);
  bool shown = it != entries_.end() && it->second.get() == &entry && !entry.destroying &&
               entry.record.state == SandboxState::kRunning;
  if (shown) {
    entry.published = running_->Publish(entry.record, entry.published);
  } else {
    running_->Withdraw(entry.published);
    entry.published.reset();
  }
}

Result<uint32_t> Manager::AllocateSlot() {
  uint32_t hint = 0;
  while (used_slots_.count(hint)) ++hint;
  for (;;) {
    COVE_ASSIGN_OR_RETURN(uint32_t slot, host_->ReserveSlot(hint));
    if (used_slots_.insert(slot).second) return slot;
    hint = slot + 1;  // held by us already (a failed sandbox keeps its slot): look further
  }
}

void Manager::FreeSlot(uint32_t slot) {
  used_slots_.erase(slot);
  host_->ReleaseSlot(slot);
}

Task<void> Manager::Adopt() {
  auto records = store_->LoadSandboxes();
  if (!records.ok()) {
    log::Error("cannot load sandbox records: {}", records.error().ToString());
    co_return;
  }
  std::vector<std::string> known;
  for (const auto& r : *records) known.push_back(r.id);
  auto clean = [this, known] {
    host_->CleanLeftovers(known);
    return true;
  };
  co_await OffThread<bool>(pool_, ex_, clean);
  // Reaped once the networks are sealed (their firewall entries are removed by the reaper).
  std::vector<std::pair<SandboxRecord, std::function<void()>>> to_reap;
  for (auto& r : *records) {
    used_slots_.insert(r.slot);  // until its reaper is done, or the sandbox is deleted
    if (auto s = host_->ClaimSlot(r.slot); !s.ok())
      log::Error("sandbox {}: cannot claim its id slot {} again: {}", r.id, r.slot, s.error().ToString());
    if (r.state == SandboxState::kDeleting) {
      // Deleted before coved stopped; its reaper had not finished.
      uint32_t slot = r.slot;
      std::string id = r.id;
      to_reap.emplace_back(r, [this, slot, id] { Release(id, slot); });
      continue;
    }
    auto entry = std::make_shared<Entry>(ex_);
    entry->record = r;
    entries_[r.id] = entry;
    Republish(*entry);  // a running one is reachable while it is adopted, as before the restart
    if (r.state == SandboxState::kFailed) {
      to_reap.emplace_back(r, nullptr);  // finishes a clean-up that coved's stop interrupted (idempotent)
      continue;
    }
    auto is_alive = [this, r] { return host_->IsAlive(r); };
    bool alive = r.state == SandboxState::kRunning && co_await OffThread<bool>(pool_, ex_, is_alive);
    if (alive) {
      auto agent = co_await ConnectAgent(entry);
      if (agent.ok()) {
        log::Info("sandbox {}: adopted (pid {})", r.id, r.pid);
        continue;
      }
      MarkFailed(entry, "could not reconnect to its agent after restart: " + agent.error().message, false);
    } else {
      entry->record.interrupted_create = r.state == SandboxState::kCreating;
      MarkFailed(entry,
                 r.state == SandboxState::kCreating ? "coved stopped while the sandbox was being created"
                                                    : "its processes ended while coved was not running",
                 false);
    }
    to_reap.emplace_back(entry->record, nullptr);
  }
  auto finish = [this] { return host_->FinishAdoption(); };
  auto sealed = co_await OffThread<Status>(pool_, ex_, finish);
  if (!sealed.ok()) log::Error("cannot seal sandbox networks; new sandboxes will fail: {}", sealed.error().ToString());
  for (auto& [record, done] : to_reap) reaper_.Reap(record, std::move(done));
}

void Manager::Release(const std::string& id, uint32_t slot) {
  FreeSlot(slot);
  if (auto s = store_->RemoveSandbox(id); !s.ok())
    log::Error("sandbox {}: cannot remove its record: {}", id, s.error().ToString());
}

bool Manager::Replaceable(const Entry& entry) {
  return !entry.destroying && entry.record.state == SandboxState::kFailed && entry.record.interrupted_create;
}

Task<Result<SandboxRecord>> Manager::Create(CreateRequest req) {
  if (req.id.empty()) req.id = NewSandboxId();
  if (auto why = CheckSandboxId(req.id); !why.empty())
    co_return MakeError(ErrorCode::kInvalidArgument, why);
  if (req.instance_type.empty()) req.instance_type = std::string(kDefaultInstanceType);
  auto limits = LimitsOf(req.instance_type);
  if (!limits) co_return MakeError(ErrorCode::kInvalidArgument, "unknown instance type " + req.instance_type);
  if (image_exists_ && !image_exists_(req.image))
    co_return MakeError(ErrorCode::kInvalidArgument, "unknown image " + req.image);
  if (req.user != "root" && req.user != "user")
    co_return MakeError(ErrorCode::kInvalidArgument, "user must be \"root\" or \"user\"");
  if (auto it = entries_.find(req.id); it != entries_.end()) {
    if (!Replaceable(*it->second))
      co_return MakeError(ErrorCode::kAlreadyExists, "sandbox " + req.id + " already exists");
    log::Info("sandbox {}: replacing it (its create was interrupted)", req.id);
    Retire(it->second, "sandbox " + req.id + " was replaced");
  }

  auto entry = std::make_shared<Entry>(ex_);
  SandboxRecord& r = entry->record;
  r.id = req.id;
  r.image = req.image;
  r.instance_type = req.instance_type;
  r.limits = req.limits.value_or(*limits);
  r.env = std::move(req.env);
  r.labels = std::move(req.labels);
  r.user = req.user;
  r.created_ms = NowUnixMs();
  r.state = SandboxState::kCreating;
  auto slot = AllocateSlot();
  if (!slot.ok()) co_return std::move(slot).error();
  r.slot = *slot;
  r.egress = std::move(req.egress);
  entries_[r.id] = entry;
  if (reaper_.Busy(r.id)) {
    // The previous sandbox of this id still holds its cgroup and layer names.
    auto deadline = AsyncSignal::Clock::now() + kCreateWaitsForReaper;
    if (!co_await reaper_.Wait(r.id, deadline) && !entry->destroying)
      co_return Abandon(entry, MakeError(ErrorCode::kUnavailable, "the previous sandbox " + r.id +
                                                                    " is still being removed; try again later"));
  }
  co_return co_await Launch(entry);
}

Error Manager::Abandon(std::shared_ptr<Entry> entry, Error e) {
  FreeSlot(entry->record.slot);
  if (auto it = entries_.find(entry->record.id); it != entries_.end() && it->second == entry) entries_.erase(it);
  entry->destroying = true;
  Republish(*entry);
  entry->ready.Notify();
  log::Warn("sandbox {}: create failed: {}", entry->record.id, e.ToString());
  return e;
}

Task<Result<SandboxRecord>> Manager::Launch(std::shared_ptr<Entry> entry) {
  const Error deleted = MakeError(ErrorCode::kCancelled, "sandbox " + entry->record.id + " was deleted while being created");
  if (entry->destroying) co_return Abandon(entry, deleted);
  Persist(entry->record);  // a crash from here on is cleaned up by Adopt
  SandboxRecord copy = entry->record;
  auto start = [this, copy] { return host_->Start(copy); };
  int64_t t0 = MonotonicNs();
  auto started = co_await OffThread<Result<SandboxHost::Started>>(pool_, ex_, start);
  int64_t t1 = MonotonicNs();
  if (!started.ok()) {  // nothing of it is left
    (void)store_->RemoveSandbox(entry->record.id);
    co_return Abandon(entry, std::move(started).error());
  }
  entry->record.pid = started->pid;
  entry->record.start_ticks = started->start_ticks;
  Result<std::shared_ptr<AgentConnection>> agent = deleted;
  if (!entry->destroying) {
    agent = co_await ConnectAgent(entry);
    if (agent.ok() && entry->record.state == SandboxState::kFailed)
      agent = MakeError(ErrorCode::kUnavailable, "sandbox failed while starting: " + entry->record.failure);
  }
  if (!agent.ok() || entry->destroying) {
    Error e = entry->destroying ? deleted : agent.error();
    log::Warn("sandbox {}: create failed: {}", entry->record.id, e.ToString());
    Retire(entry, e.message);
    co_return e;
  }
  entry->record.state = SandboxState::kRunning;
  int64_t t2 = MonotonicNs();
  Persist(entry->record);
  Republish(*entry);
  log::Debug("sandbox {}: running; start {} us, agent hello {} us, persist {} us", entry->record.id,
             (t1 - t0) / 1000, (t2 - t1) / 1000, (MonotonicNs() - t2) / 1000);
  entry->ready.Notify();
  co_return entry->record;
}

namespace {

// On the sandbox's shard: connects, and sets the failure handler before
// anything else runs there.
Task<Result<std::shared_ptr<AgentConnection>>> ConnectHere(std::string path, std::string id,
                                                           std::shared_ptr<FlowBudget> budget,
                                                           std::function<void(const Error&)> on_failure) {
  auto ex = co_await asio::this_coro::executor;
  auto conn = co_await AgentConnection::Connect(ex, std::move(path), std::move(id), kAgentHelloTimeout,
                                                AgentConnection::kPingInterval, std::move(budget));
  if (conn.ok()) (*conn)->SetFailureHandler(std::move(on_failure));
  co_return conn;
}

Task<void> Noop() { co_return; }

}  // namespace

Task<Result<std::shared_ptr<AgentConnection>>> Manager::ConnectAgent(std::shared_ptr<Entry> entry) {
  std::weak_ptr<Entry> weak = entry;
  auto on_failure = [this, weak](const Error& e) {  // on the agent's shard
    asio::post(ex_, [this, weak, e] {
      if (auto en = weak.lock(); en && !en->destroying) MarkFailed(en, e.message, true);
    });
  };
  const Shard& shard = *shard_[ShardIndex(entry->record.id)];
  auto conn = co_await io::RunOn(shard.ex, ConnectHere(host_->AgentSocketPath(entry->record), entry->record.id,
                                                       shard.budget, on_failure));
  if (!conn.ok()) co_return std::move(conn).error();
  entry->agent = *conn;
  WatchPid(entry);
  co_return *conn;
}

namespace {

// " (status N)" or " (signal N)" of an exited child behind a pidfd, without
// reaping it (the sandbox host does); empty when unknown (not our child).
// True when the child behind pidfd has certainly not exited (false when it
// has, or when it is not our child, e.g. adopted after a restart).
bool StillRunning(int pidfd) {
  siginfo_t si{};
  return ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == 0;
}

std::string ExitDescription(int pidfd) {
  siginfo_t si{};
  if (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0) return "";
  if (si.si_code == CLD_EXITED) return " (status " + std::to_string(si.si_status) + ")";
  return " (signal " + std::to_string(si.si_status) + ")";
}

}  // namespace

void Manager::WatchPid(const std::shared_ptr<Entry>& entry) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, entry->record.pid, 0));
  if (fd < 0) {
    MarkFailed(entry, "its pid 1 is gone", true);
    return;
  }
  entry->pid_watch = std::make_unique<asio::posix::stream_descriptor>(ex_, fd);
  AwaitPidExit(entry);
}

void Manager::AwaitPidExit(const std::shared_ptr<Entry>& entry) {
  std::weak_ptr<Entry> weak = entry;
  entry->pid_watch->async_wait(asio::posix::stream_descriptor::wait_read,
                               [this, weak](const boost::system::error_code& ec) {
                                 auto en = weak.lock();
                                 if (ec || !en || en->destroying || !en->pid_watch) return;
                                 int fd = en->pid_watch->native_handle();
                                 // The reactor may report a pidfd readable while the
                                 // process still runs (seen under bursts of creates):
                                 // believe only the kernel's wait state.
                                 if (StillRunning(fd)) return AwaitPidExit(en);
                                 MarkFailed(en, "its agent (pid 1) died" + ExitDescription(fd), true);
                               });
}

void Manager::MarkFailed(const std::shared_ptr<Entry>& entry, std::string why, bool clean_up) {
  if (entry->record.state == SandboxState::kFailed) return;
  log::Warn("sandbox {}: failed: {}", entry->record.id, why);
  entry->record.state = SandboxState::kFailed;
  entry->record.failure = std::move(why);
  Republish(*entry);
  // Calls in flight get what later requests get (Agent: kFailedPrecondition).
  PostCloseAgent(entry, "sandbox " + entry->record.id + " failed: " + entry->record.failure,
                 ErrorCode::kFailedPrecondition);
  if (entry->pid_watch) entry->pid_watch->close();
  Persist(entry->record);
  entry->ready.Notify();
  if (clean_up) reaper_.Reap(entry->record);
}

void Manager::Retire(std::shared_ptr<Entry> entry, const std::string& why) {
  entry->destroying = true;
  PostCloseAgent(entry, why, ErrorCode::kNotFound);
  if (entry->pid_watch) entry->pid_watch->close();
  entry->record.state = SandboxState::kDeleting;
  Persist(entry->record);  // a restarted coved reaps it again
  const std::string id = entry->record.id;
  const uint32_t slot = entry->record.slot;
  if (auto it = entries_.find(id); it != entries_.end() && it->second == entry) entries_.erase(it);
  Republish(*entry);
  reaper_.Reap(entry->record, [this, id, slot] { Release(id, slot); });
  entry->ready.Notify();
}

std::optional<SandboxRecord> Manager::Get(const std::string& id) const {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second->destroying) return std::nullopt;
  return it->second->record;
}

std::vector<SandboxRecord> Manager::List() const {
  std::vector<SandboxRecord> out;
  for (const auto& [_, e] : entries_)
    if (!e->destroying) out.push_back(e->record);
  return out;
}

Task<Status> Manager::Destroy(std::string id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    tombstones_.Bury(id);
    co_return OkStatus();
  }
  auto entry = it->second;
  auto present = [&] {
    auto e = entries_.find(id);
    return e != entries_.end() && e->second == entry;
  };
  if (entry->destroying) {  // another DELETE is under way: answer when it does
    while (present()) co_await entry->ready.Wait();
    tombstones_.Bury(id);
    co_return OkStatus();
  }
  entry->destroying = true;
  Republish(*entry);  // unreachable through the front ends from now on
  // A create in flight notices `destroying` and retires the sandbox itself.
  while (present() && entry->record.state == SandboxState::kCreating) co_await entry->ready.Wait();
  const std::string why = "sandbox " + id + " was deleted";
  const bool ours = present();  // else the create retired it already
  if (ours) {
    co_await CloseAgent(entry, why, ErrorCode::kNotFound);
    if (entry->pid_watch) entry->pid_watch->close();
  }
  if (entry->record.pid > 0) {
    // Every process gets SIGKILL now (through the cgroup, frozen first where
    // needed); waiting for them to die and removing the rest is the reaper's.
    SandboxRecord rec = entry->record;
    auto kill = [this, rec] { return host_->Kill(rec); };
    if (auto s = co_await OffThread<Status>(pool_, ex_, kill); !s.ok())
      log::Warn("sandbox {}: kill: {} (the reaper tries again)", id, s.error().ToString());
  }
  if (ours && present()) Retire(entry, why);
  tombstones_.Bury(id);
  log::Info("sandbox {}: deleted", id);
  co_return OkStatus();
}

Status Manager::SetEgress(const std::string& id, std::shared_ptr<const proxy::EgressPolicy> egress) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second->destroying)
    return MakeError(ErrorCode::kNotFound, "sandbox " + id + " not found");
  it->second->record.egress = std::move(egress);
  Persist(it->second->record);
  Republish(*it->second);
  return OkStatus();
}

Status Manager::SetPorts(const std::string& id, std::vector<PortExposure> ports) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second->destroying)
    return MakeError(ErrorCode::kNotFound, "sandbox " + id + " not found");
  it->second->record.ports = std::move(ports);
  Persist(it->second->record);
  Republish(*it->second);
  return OkStatus();
}

void Manager::PostCloseAgent(const std::shared_ptr<Entry>& entry, std::string why, ErrorCode code) {
  if (!entry->agent) return;
  Shard* shard = shard_[ShardIndex(entry->record.id)].get();
  asio::post(shard->ex, [shard, agent = entry->agent, id = entry->record.id, why = std::move(why), code] {
    agent->Close(why, code);
    if (auto it = shard->agents.find(id); it != shard->agents.end() && it->second.lock() == agent)
      shard->agents.erase(it);
  });
}

Task<void> Manager::CloseAgent(std::shared_ptr<Entry> entry, std::string why, ErrorCode code) {
  PostCloseAgent(entry, std::move(why), code);
  // What is posted to a shard runs in order: once this no-op ran there, so did the close.
  co_await io::RunOn(shard_[ShardIndex(entry->record.id)]->ex, Noop());
}

Task<Result<std::shared_ptr<AgentConnection>>> Manager::Agent(const std::string& id, bool create_if_missing,
                                                              const Tombstones::Arrival& arrival) {
  Shard& shard = *shard_[ShardIndex(id)];
  if (auto it = shard.agents.find(id); it != shard.agents.end()) {
    if (auto agent = it->second.lock(); agent && agent->alive()) co_return agent;
    shard.agents.erase(it);
  }
  auto agent = co_await io::RunOn(ex_, AgentAtHome(id, create_if_missing, arrival));
  if (agent.ok()) shard.agents[id] = *agent;
  co_return agent;
}

Task<Result<std::shared_ptr<AgentConnection>>> Manager::AgentAtHome(const std::string& id, bool create_if_missing,
                                                                    const Tombstones::Arrival& arrival) {
  const Error deleted = MakeError(ErrorCode::kNotFound, "sandbox " + id + " was deleted");
  auto it = entries_.find(id);
  if (it == entries_.end() || (create_if_missing && Replaceable(*it->second))) {
    if (!create_if_missing) co_return MakeError(ErrorCode::kNotFound, "sandbox " + id + " not found");
    if (tombstones_.BuriedSince(id, arrival)) co_return deleted;
    CreateRequest req;
    req.id = id;
    auto created = co_await Create(std::move(req));
    if (!created.ok() && created.error().code == ErrorCode::kCancelled) co_return deleted;
    if (!created.ok() && created.error().code != ErrorCode::kAlreadyExists) co_return std::move(created).error();
    it = entries_.find(id);
    if (it == entries_.end()) co_return deleted;
  }
  auto entry = it->second;
  while (entry->record.state == SandboxState::kCreating && !entry->destroying) co_await entry->ready.Wait();
  if (entry->destroying) co_return deleted;
  if (entry->record.state == SandboxState::kFailed)
    co_return MakeError(ErrorCode::kFailedPrecondition,
                        "sandbox " + id + " failed (" + entry->record.failure + "); delete it to start over");
  if (!entry->agent || !entry->agent->alive())
    co_return MakeError(ErrorCode::kUnavailable, "sandbox " + id + " has no agent connection");
  co_return entry->agent;
}

}  // namespace cove
