#include "manager/fake_sandbox_host.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "sys/proc_stat.h"
#include "sys/process.h"

namespace cove {
namespace fs = std::filesystem;

namespace {

Result<UniqueFd> Listen(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return SysError("socket " + path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return MakeError(ErrorCode::kInvalidArgument, "socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return SysError("bind " + path);
  if (::listen(fd.get(), 16) != 0) return SysError("listen " + path);
  return fd;
}

}  // namespace

FakeSandboxHost::FakeSandboxHost(std::string agent_path) : agent_path_(std::move(agent_path)) {
  std::string tmpl = (fs::temp_directory_path() / "cove-fake-sandbox-host-XXXXXX").string();
  if (::mkdtemp(tmpl.data())) dir_ = tmpl;
}

FakeSandboxHost::~FakeSandboxHost() {
  for (auto& [pid, agent] : agents_) {
    ::killpg(pid, SIGKILL);
    (void)sys::PidfdSignal(agent.pidfd.get(), SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

std::string FakeSandboxHost::AgentSocketPath(const SandboxRecord& record) {
  return dir_ + "/" + std::to_string(record.slot) + ".sock";
}

std::string FakeSandboxHost::SlotDir(uint32_t slot) const { return dir_ + "/" + std::to_string(slot); }

void FakeSandboxHost::Enter(Op op, std::unique_lock<std::mutex>& lock) {
  ++calls_[op];
  released_.wait(lock, [&] { return !held_.count(op); });
}

Result<SandboxHost::Started> FakeSandboxHost::Start(const SandboxRecord& record) {
  {
    std::unique_lock lock(mu_);
    Enter(Op::kStart, lock);
    if (start_error_) return *start_error_;
  }
  if (dir_.empty()) return MakeError(ErrorCode::kInternal, "fake sandbox host: no temporary directory");
  if (::access(agent_path_.c_str(), X_OK) != 0) return SysError("access " + agent_path_);
  const std::string home = SlotDir(record.slot);
  std::error_code ec;
  fs::remove_all(home, ec);
  fs::create_directories(home + "/ws", ec);
  if (ec) return MakeError(ErrorCode::kInternal, "fake sandbox host: mkdir " + home + ": " + ec.message());
  COVE_ASSIGN_OR_RETURN(UniqueFd listener, Listen(AgentSocketPath(record)));

  // Everything the child needs is built before fork: it may only make async-signal-safe calls.
  std::vector<std::string> env = {"COVE_AGENT_WORKSPACE=" + home + "/ws", "COVE_AGENT_RUNDIR=" + home + "/run",
                                  "COVE_AGENT_LOG=warn", "PATH=/usr/local/bin:/usr/bin:/bin", "SANDBOX_ID=" + record.id};
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string argv0 = "cove-agent";
  char* argv[] = {argv0.data(), nullptr};
  const int ls = listener.get();

  pid_t pid = ::fork();
  if (pid < 0) return SysError("fork");
  if (pid == 0) {
    ::setpgid(0, 0);  // Kill reaches the agent's children too, as a cgroup kill does
    if (ls == 3) {
      ::fcntl(3, F_SETFD, 0);
    } else if (::dup2(ls, 3) != 3) {
      ::_exit(126);
    }
    ::execve(agent_path_.c_str(), argv, envp.data());
    ::_exit(127);
  }
  Agent agent;
  auto pidfd = sys::PidfdOpen(pid);
  auto stat = sys::ReadProcStat(pid);  // the start time is the fork's, exec keeps it
  if (!pidfd.ok() || !stat.ok()) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return MakeError(ErrorCode::kInternal, "fake sandbox host: cannot watch the agent it started");
  }
  agent.pidfd = std::move(*pidfd);
  agent.start_ticks = stat->start_time_ticks;
  std::lock_guard lock(mu_);
  agents_[pid] = std::move(agent);
  events_.push_back("start " + record.id);
  return Started{pid, agents_[pid].start_ticks};
}

bool FakeSandboxHost::IsAlive(const SandboxRecord& record) {
  {
    std::lock_guard lock(mu_);
    auto it = agents_.find(record.pid);
    if (it == agents_.end() || it->second.start_ticks != record.start_ticks) return false;
  }
  auto stat = sys::ReadProcStat(record.pid);
  return stat.ok() && stat->state != 'Z' && stat->start_time_ticks == record.start_ticks;
}

Status FakeSandboxHost::Kill(const SandboxRecord& record) {
  std::lock_guard lock(mu_);
  auto it = agents_.find(record.pid);
  if (it == agents_.end()) return OkStatus();  // never signal a pid that is not our agent
  ::killpg(record.pid, SIGKILL);
  (void)sys::PidfdSignal(it->second.pidfd.get(), SIGKILL);
  return OkStatus();
}

Status FakeSandboxHost::Destroy(const SandboxRecord& record) {
  std::optional<Agent> agent;
  {
    std::unique_lock lock(mu_);
    Enter(Op::kDestroy, lock);
    if (auto it = agents_.find(record.pid); it != agents_.end() && record.pid > 0) {
      ::killpg(record.pid, SIGKILL);
      (void)sys::PidfdSignal(it->second.pidfd.get(), SIGKILL);
      if (destroy_failures_ == 0) {
        agent = std::move(it->second);
        agents_.erase(it);
      }
    }
    if (destroy_failures_ > 0) {
      --destroy_failures_;
      events_.push_back("destroy-failed " + record.id);
      return MakeError(ErrorCode::kTimeout, "fake sandbox host: sandbox " + record.id + " is still dying");
    }
  }
  if (agent) {
    auto exited = sys::PidfdWaitExit(agent->pidfd.get(), std::chrono::seconds(5));
    if (!exited.ok() || !*exited || !sys::PidfdTryReap(agent->pidfd.get()).ok()) {
      std::lock_guard lock(mu_);
      agents_[record.pid] = std::move(*agent);  // tried again by the next call
      return MakeError(ErrorCode::kTimeout, "fake sandbox host: the agent of " + record.id + " did not exit");
    }
  }
  ::unlink(AgentSocketPath(record).c_str());
  std::error_code ec;
  fs::remove_all(SlotDir(record.slot), ec);
  std::lock_guard lock(mu_);
  ++destroyed_[record.id];
  events_.push_back("destroy " + record.id);
  return OkStatus();
}

Result<uint32_t> FakeSandboxHost::ReserveSlot(uint32_t hint) {
  std::lock_guard lock(mu_);
  uint32_t slot = hint;
  while (slots_.count(slot)) ++slot;
  slots_.insert(slot);
  return slot;
}

Status FakeSandboxHost::ClaimSlot(uint32_t slot) {
  std::lock_guard lock(mu_);
  if (!slots_.insert(slot).second) return MakeError(ErrorCode::kAlreadyExists, "slot held");
  return OkStatus();
}

void FakeSandboxHost::ReleaseSlot(uint32_t slot) {
  std::lock_guard lock(mu_);
  slots_.erase(slot);
}

void FakeSandboxHost::CleanLeftovers(const std::vector<std::string>& known_ids) {
  std::lock_guard lock(mu_);
  known_ids_ = known_ids;
}

void FakeSandboxHost::FailStarts(std::optional<Error> error) {
  std::lock_guard lock(mu_);
  start_error_ = std::move(error);
}

void FakeSandboxHost::FailDestroys(int n) {
  std::lock_guard lock(mu_);
  destroy_failures_ = n;
}

void FakeSandboxHost::Hold(Op op) {
  std::lock_guard lock(mu_);
  held_.insert(op);
}

void FakeSandboxHost::Release(Op op) {
  {
    std::lock_guard lock(mu_);
    held_.erase(op);
  }
  released_.notify_all();
}

int FakeSandboxHost::calls(Op op) const {
  std::lock_guard lock(mu_);
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

int FakeSandboxHost::destroyed(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = destroyed_.find(id);
  return it == destroyed_.end() ? 0 : it->second;
}

std::vector<std::string> FakeSandboxHost::events() const {
  std::lock_guard lock(mu_);
  return events_;
}

std::set<uint32_t> FakeSandboxHost::held_slots() const {
  std::lock_guard lock(mu_);
  return slots_;
}

std::vector<std::string> FakeSandboxHost::last_known_ids() const {
  std::lock_guard lock(mu_);
  return known_ids_;
}

void FakeSandboxHost::ForgetSlots() {
  std::lock_guard lock(mu_);
  slots_.clear();
}

}  // namespace cove
