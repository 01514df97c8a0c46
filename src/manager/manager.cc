#include "manager/manager.h"

#include <sys/wait.h>

#include <sys/syscall.h>
#include <unistd.h>

#include "base/log.h"
#include "base/time.h"
#include "manager/instance_types.h"
#include "manager/off_thread.h"
#include "manager/sandbox_id.h"

namespace cove {
namespace {
constexpr auto kAgentHelloTimeout = std::chrono::seconds(5);
}  // namespace

Manager::Manager(asio::any_io_executor ex, Store* store, Runtime* runtime, size_t worker_threads)
    : ex_(std::move(ex)), store_(store), runtime_(runtime), pool_(worker_threads) {}

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

Result<uint32_t> Manager::AllocateSlot() {
  uint32_t hint = 0;
  while (used_slots_.count(hint)) ++hint;
  for (;;) {
    COVE_ASSIGN_OR_RETURN(uint32_t slot, runtime_->ReserveSlot(hint));
    if (used_slots_.insert(slot).second) return slot;
    hint = slot + 1;  // held by us already (a failed sandbox keeps its slot): look further
  }
}

void Manager::FreeSlot(uint32_t slot) {
  used_slots_.erase(slot);
  id_by_slot_.erase(slot);
  runtime_->ReleaseSlot(slot);
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
    runtime_->CleanLeftovers(known);
    return true;
  };
  co_await OffThread<bool>(pool_, ex_, clean);
  for (auto& r : *records) {
    auto entry = std::make_shared<Entry>(ex_);
    entry->record = r;
    entries_[r.id] = entry;
    used_slots_.insert(r.slot);  // failed ones too: their socket path is freed by Destroy
    id_by_slot_[r.slot] = r.id;
    if (auto s = runtime_->ClaimSlot(r.slot); !s.ok())
      log::Error("sandbox {}: cannot claim its id slot {} again: {}", r.id, r.slot, s.error().ToString());
    if (r.state == SandboxState::kFailed) continue;
    auto is_alive = [this, r] { return runtime_->IsAlive(r); };
    bool alive = r.state == SandboxState::kRunning && co_await OffThread<bool>(pool_, ex_, is_alive);
    if (alive) {
      auto agent = co_await ConnectAgent(entry);
      if (agent.ok()) {
        log::Info("sandbox {}: adopted (pid {})", r.id, r.pid);
        continue;
      }
      MarkFailed(entry, "could not reconnect to its agent after restart: " + agent.error().message, false);
    } else {
      MarkFailed(entry,
                 r.state == SandboxState::kCreating ? "coved stopped while the sandbox was being created"
                                                    : "its processes ended while coved was not running",
                 false);
    }
    SandboxRecord copy = entry->record;
    auto destroy = [this, copy] { return runtime_->Destroy(copy); };
    auto s = co_await OffThread<Status>(pool_, ex_, destroy);
    if (!s.ok()) log::Error("sandbox {}: cleanup failed: {}", r.id, s.error().ToString());
  }
  auto finish = [this] { return runtime_->FinishAdoption(); };
  auto sealed = co_await OffThread<Status>(pool_, ex_, finish);
  if (!sealed.ok()) log::Error("cannot seal sandbox networks; new sandboxes will fail: {}", sealed.error().ToString());
}

Task<Result<SandboxRecord>> Manager::Create(CreateRequest req) {
  if (req.id.empty()) req.id = NewSandboxId();
  if (auto why = CheckSandboxId(req.id); !why.empty())
    co_return MakeError(ErrorCode::kInvalidArgument, why);
  if (entries_.count(req.id))
    co_return MakeError(ErrorCode::kAlreadyExists, "sandbox " + req.id + " already exists");
  if (req.instance_type.empty()) req.instance_type = std::string(kDefaultInstanceType);
  auto limits = LimitsOf(req.instance_type);
  if (!limits) co_return MakeError(ErrorCode::kInvalidArgument, "unknown instance type " + req.instance_type);
  if (image_exists_ && !image_exists_(req.image))
    co_return MakeError(ErrorCode::kInvalidArgument, "unknown image " + req.image);
  if (req.user != "root" && req.user != "user")
    co_return MakeError(ErrorCode::kInvalidArgument, "user must be \"root\" or \"user\"");

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
  id_by_slot_[r.slot] = r.id;
  entries_[r.id] = entry;
  co_return co_await Launch(entry);
}

Task<Result<SandboxRecord>> Manager::Launch(std::shared_ptr<Entry> entry) {
  Persist(entry->record);  // a crash from here on is cleaned up by Adopt
  SandboxRecord copy = entry->record;
  auto start = [this, copy] { return runtime_->Start(copy); };
  int64_t t0 = MonotonicNs();
  auto started = co_await OffThread<Result<Runtime::Started>>(pool_, ex_, start);
  int64_t t1 = MonotonicNs();
  Result<std::shared_ptr<AgentConnection>> agent = MakeError(ErrorCode::kCancelled, "destroyed while creating");
  if (started.ok() && !entry->destroying) {
    entry->record.pid = started->pid;
    entry->record.start_ticks = started->start_ticks;
    agent = co_await ConnectAgent(entry);
    if (agent.ok() && entry->record.state == SandboxState::kFailed)
      agent = MakeError(ErrorCode::kUnavailable, "sandbox failed while starting: " + entry->record.failure);
  }
  if (!started.ok() || !agent.ok() || entry->destroying) {
    Error e = !started.ok() ? started.error() : !agent.ok() ? agent.error()
                                                            : MakeError(ErrorCode::kCancelled, "destroyed while creating");
    if (started.ok()) {
      SandboxRecord rec = entry->record;
      auto destroy = [this, rec] { return runtime_->Destroy(rec); };
      co_await OffThread<Status>(pool_, ex_, destroy);
    }
    FreeSlot(entry->record.slot);
    if (auto it = entries_.find(entry->record.id); it != entries_.end() && it->second == entry)
      entries_.erase(it);
    (void)store_->RemoveSandbox(entry->record.id);
    entry->destroying = true;
    entry->ready.Notify();
    log::Warn("sandbox {}: create failed: {}", entry->record.id, e.ToString());
    co_return e;
  }
  entry->record.state = SandboxState::kRunning;
  int64_t t2 = MonotonicNs();
  Persist(entry->record);
  log::Debug("sandbox {}: running; start {} us, agent hello {} us, persist {} us", entry->record.id,
             (t1 - t0) / 1000, (t2 - t1) / 1000, (MonotonicNs() - t2) / 1000);
  entry->ready.Notify();
  co_return entry->record;
}

Task<Result<std::shared_ptr<AgentConnection>>> Manager::ConnectAgent(std::shared_ptr<Entry> entry) {
  auto conn = co_await AgentConnection::Connect(ex_, runtime_->AgentSocketPath(entry->record), entry->record.id,
                                                kAgentHelloTimeout, AgentConnection::kPingInterval, flow_budget_);
  if (!conn.ok()) co_return std::move(conn).error();
  std::weak_ptr<Entry> weak = entry;
  (*conn)->SetFailureHandler([this, weak](const Error& e) {
    if (auto en = weak.lock(); en && !en->destroying) MarkFailed(en, e.message, true);
  });
  entry->agent = *conn;
  WatchPid(entry);
  co_return *conn;
}

namespace {

// " (status N)" or " (signal N)" of an exited child behind a pidfd, without
// reaping it (the runtime does); empty when unknown (not our child).
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
  // Calls in flight get what later requests get (Agent: kFailedPrecondition).
  if (entry->agent)
    entry->agent->Close("sandbox " + entry->record.id + " failed: " + entry->record.failure,
                        ErrorCode::kFailedPrecondition);
  if (entry->pid_watch) entry->pid_watch->close();
  Persist(entry->record);
  entry->ready.Notify();
  if (clean_up) asio::co_spawn(ex_, CleanUp(entry), asio::detached);
}

Task<void> Manager::CleanUp(std::shared_ptr<Entry> entry) {
  // The record stays (state failed, with the reason) until the user deletes it;
  // its processes, cgroups and layer go now. The id slot stays reserved until then.
  SandboxRecord rec = entry->record;
  auto destroy = [this, rec] { return runtime_->Destroy(rec); };
  auto s = co_await OffThread<Status>(pool_, ex_, destroy);
  if (!s.ok()) log::Error("sandbox {}: cleanup after failure: {}", rec.id, s.error().ToString());
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
  if (it == entries_.end()) co_return OkStatus();
  auto entry = it->second;
  if (entry->destroying) co_return OkStatus();
  entry->destroying = true;
  if (entry->record.state == SandboxState::kCreating) {
    // Launch notices `destroying` and cleans up itself.
    while (entries_.count(id) && entries_[id] == entry && entry->record.state == SandboxState::kCreating)
      co_await entry->ready.Wait();
    if (!entries_.count(id) || entries_[id] != entry) co_return OkStatus();
  }
  if (entry->agent) entry->agent->Close("sandbox " + id + " was destroyed");
  if (entry->pid_watch) entry->pid_watch->close();
  SandboxRecord rec = entry->record;
  auto destroy = [this, rec] { return runtime_->Destroy(rec); };
  auto s = co_await OffThread<Status>(pool_, ex_, destroy);
  if (!s.ok()) {
    log::Error("sandbox {}: destroy failed: {}", id, s.error().ToString());
    entry->destroying = false;
    MarkFailed(entry, "destroy failed: " + s.error().message, false);
    co_return s;
  }
  FreeSlot(rec.slot);
  if (auto it2 = entries_.find(id); it2 != entries_.end() && it2->second == entry) entries_.erase(it2);
  if (auto st = store_->RemoveSandbox(id); !st.ok()) co_return st;
  log::Info("sandbox {}: destroyed", id);
  co_return OkStatus();
}

const SandboxRecord* Manager::FindBySlot(uint32_t slot) const {
  auto it = id_by_slot_.find(slot);
  if (it == id_by_slot_.end()) return nullptr;
  auto entry = entries_.find(it->second);
  return entry == entries_.end() || entry->second->destroying ? nullptr : &entry->second->record;
}

Status Manager::SetEgress(const std::string& id, nlohmann::json egress) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second->destroying)
    return MakeError(ErrorCode::kNotFound, "sandbox " + id + " not found");
  it->second->record.egress = std::move(egress);
  Persist(it->second->record);
  return OkStatus();
}

Status Manager::SetPorts(const std::string& id, std::vector<PortExposure> ports) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second->destroying)
    return MakeError(ErrorCode::kNotFound, "sandbox " + id + " not found");
  it->second->record.ports = std::move(ports);
  Persist(it->second->record);
  return OkStatus();
}

Task<Result<std::shared_ptr<AgentConnection>>> Manager::Agent(const std::string& id, bool create_if_missing) {
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    if (!create_if_missing) co_return MakeError(ErrorCode::kNotFound, "sandbox " + id + " not found");
    CreateRequest req;
    req.id = id;
    auto created = co_await Create(std::move(req));
    if (!created.ok() && created.error().code != ErrorCode::kAlreadyExists) co_return std::move(created).error();
    it = entries_.find(id);
    if (it == entries_.end()) co_return MakeError(ErrorCode::kUnavailable, "sandbox " + id + " went away");
  }
  auto entry = it->second;
  while (entry->record.state == SandboxState::kCreating && !entry->destroying) co_await entry->ready.Wait();
  if (entry->destroying) co_return MakeError(ErrorCode::kNotFound, "sandbox " + id + " is being destroyed");
  if (entry->record.state == SandboxState::kFailed)
    co_return MakeError(ErrorCode::kFailedPrecondition,
                        "sandbox " + id + " failed (" + entry->record.failure + "); delete it to start over");
  if (!entry->agent || !entry->agent->alive())
    co_return MakeError(ErrorCode::kUnavailable, "sandbox " + id + " has no agent connection");
  co_return entry->agent;
}

}  // namespace cove
