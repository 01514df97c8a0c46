#include "isolation/running_sandbox.h"

#include <signal.h>

#include <algorithm>
#include <semaphore>
#include <thread>
#include <set>

#include "base/log.h"
#include "base/scope_exit.h"
#include "isolation/validate.h"
#include "sys/proc_stat.h"
#include "sys/process.h"

namespace cove::isolation {

namespace {
using Clock = std::chrono::steady_clock;
double Us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

// A pidfd for record.pid only if that pid is still the same process.
Result<UniqueFd> OpenIfSameProcess(const PersistedSandbox& r) {
  if (r.pid <= 0) return MakeError(ErrorCode::kNotFound, "no pid recorded");
  auto fd = sys::PidfdOpen(r.pid);
  if (!fd.ok()) return Error{ErrorCode::kNotFound, fd.error().sys_errno, "pid 1 is gone", {}};
  // Read the start time after opening the pidfd: if it matches now, the fd
  // refers to the recorded process (a pidfd never follows pid reuse).
  auto st = sys::ReadProcStat(r.pid);
  if (!st.ok() || st->start_time_ticks != r.start_time_ticks)
    return MakeError(ErrorCode::kNotFound, "pid was reused by another process");
  return std::move(fd).value();
}
}  // namespace

namespace {
// Creates in flight at once. A create is CPU work in the kernel (mounts, clone,
// cgroup and subvolume set-up) under a few global locks: letting a burst of 50
// run at once only makes every one of them slow. Queued, the first ones finish
// early and the last no later. One per CPU keeps all CPUs busy.
std::counting_semaphore<1024>& CreateGate() {
  static std::counting_semaphore<1024> gate(
      static_cast<std::ptrdiff_t>(std::clamp(std::thread::hardware_concurrency(), 1u, 1024u)));
  return gate;
}
}  // namespace

Result<RunningSandbox> RunningSandbox::Create(const IsolationHost& host, SandboxSpec spec,
                                              const std::vector<int>& pass_fds,
                                              const CreateOptions& options) {
  CreateGate().acquire();
  ScopeExit release_gate([] { CreateGate().release(); });
  const auto t0 = Clock::now();
  COVE_TRY(ValidateSandboxId(spec.id));
  LayerSeed seed;
  seed.default_layout = options.default_layout;
  seed.hostname = spec.id;
  seed.nameserver = spec.nameserver;
  seed.trusted_ca_pem = spec.trusted_ca_pem;
  seed.ca_bundle_pem = spec.ca_bundle_pem;
  COVE_ASSIGN_OR_RETURN(spec.sandbox_dir,
                        host.layers->CreateLayer(spec.id, spec.limits.disk_bytes, spec.host_id_base, seed));
  ScopeExit remove_layer([&] { (void)host.layers->RemoveLayer(spec.id); });
  const auto t1 = Clock::now();
  COVE_ASSIGN_OR_RETURN(SandboxCgroup cg, host.cgroups->Create(spec.id, spec.limits));
  ScopeExit remove_cgroup([&] { (void)cg.Remove(); });
  const auto t2 = Clock::now();
  LaunchOptions lo;
  lo.cgroup = &cg;
  lo.idmap_image = options.idmap_image;
  if (options.timings) lo.timings = &options.timings->launch;
  COVE_ASSIGN_OR_RETURN(Launched l, Launch(spec, pass_fds, lo));
  remove_cgroup.Release();
  remove_layer.Release();
  PersistedSandbox rec{spec.id, l.pid, l.start_time_ticks, spec.host_id_base};
  RunningSandbox rt(host, std::move(rec), std::move(cg));
  rt.pidfd_ = std::move(l.pidfd);
  rt.sandbox_dir_ = spec.sandbox_dir;
  if (options.timings) {
    options.timings->layer_us = Us(t0, t1);
    options.timings->cgroup_us = Us(t1, t2);
    options.timings->total_us = Us(t0, Clock::now());
  }
  return rt;
}

Result<RunningSandbox> RunningSandbox::Adopt(const IsolationHost& host, const PersistedSandbox& record) {
  COVE_TRY(ValidateSandboxId(record.id));
  COVE_ASSIGN_OR_RETURN(UniqueFd fd, OpenIfSameProcess(record));
  COVE_ASSIGN_OR_RETURN(SandboxCgroup cg, host.cgroups->Adopt(record.id));
  RunningSandbox rt(host, record, std::move(cg));
  rt.pidfd_ = std::move(fd);
  rt.sandbox_dir_ = host.layers->LayerDir(record.id);
  return rt;
}

Status RunningSandbox::CleanUp(const IsolationHost& host, const PersistedSandbox& record) {
  COVE_TRY(ValidateSandboxId(record.id));
  auto cg = host.cgroups->Adopt(record.id);
  if (!cg.ok() && cg.error().code != ErrorCode::kNotFound) return std::move(cg).error();
  auto fd = OpenIfSameProcess(record);
  if (fd.ok()) (void)sys::PidfdSignal(fd->get(), SIGKILL);
  if (cg.ok()) (void)cg->KillAll();  // everything, and unthrottled
  if (fd.ok()) {
    auto exited = sys::PidfdWaitExit(fd->get(), std::chrono::seconds(5));
    (void)sys::PidfdTryReap(fd->get());
    if (!exited.ok() || !*exited) return Error{ErrorCode::kTimeout, 0, "sandbox pid 1 still running", {{"id", record.id}}};
  }
  if (cg.ok()) COVE_TRY(cg->Remove());
  return host.layers->RemoveLayer(record.id);
}

Status RunningSandbox::Kill(const IsolationHost& host, const PersistedSandbox& record) {
  COVE_TRY(ValidateSandboxId(record.id));
  if (auto fd = OpenIfSameProcess(record); fd.ok()) (void)sys::PidfdSignal(fd->get(), SIGKILL);
  auto cg = host.cgroups->Adopt(record.id);
  if (!cg.ok()) return cg.error().code == ErrorCode::kNotFound ? OkStatus() : std::move(cg).error();
  return cg->KillAll();
}

Result<std::vector<std::string>> RunningSandbox::ListResidues(const IsolationHost& host) {
  return host.layers->List();
}

Result<std::optional<int>> RunningSandbox::PollExit() {
  if (exit_status_) return exit_status_;
  if (!pidfd_) return std::optional<int>(-1);
  auto r = sys::PidfdTryReap(pidfd_.get());
  if (r.ok()) {
    exit_status_ = *r;
    return exit_status_;
  }
  if (r.error().code == ErrorCode::kFailedPrecondition) return std::optional<int>();
  if (r.error().code == ErrorCode::kNotFound) {  // not our child (adopted): exited iff readable
    COVE_ASSIGN_OR_RETURN(bool exited, sys::PidfdWaitExit(pidfd_.get(), std::chrono::milliseconds(0)));
    if (!exited) return std::optional<int>();
    exit_status_ = -1;
    return exit_status_;
  }
  return std::move(r).error();
}

Result<int> RunningSandbox::WaitExit(std::chrono::milliseconds timeout) {
  if (exit_status_) return *exit_status_;
  if (pidfd_) {
    COVE_ASSIGN_OR_RETURN(bool exited, sys::PidfdWaitExit(pidfd_.get(), timeout));
    if (!exited) return MakeError(ErrorCode::kTimeout, "sandbox pid 1 still running");
  }
  COVE_ASSIGN_OR_RETURN(std::optional<int> st, PollExit());
  if (!st) return MakeError(ErrorCode::kTimeout, "sandbox pid 1 still running");
  return *st;
}

Status RunningSandbox::Kill() {
  if (destroyed_) return OkStatus();
  // Killing pid 1 of the pid namespace makes the kernel kill everything in it;
  // the cgroup kill catches anything that is not (it all should be).
  if (pidfd_ && !exit_status_) (void)sys::PidfdSignal(pidfd_.get(), SIGKILL);
  return cgroup_.KillAll();
}

Status RunningSandbox::Destroy(std::chrono::milliseconds timeout) {
  if (destroyed_) return OkStatus();
  auto deadline = Clock::now() + timeout;
  (void)Kill();
  if (pidfd_ && !exit_status_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto st = WaitExit(std::max(left, std::chrono::milliseconds(1)));
    if (!st.ok()) return std::move(st).error().With("id", record_.id);
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  COVE_TRY(cgroup_.Remove(std::max(left, std::chrono::milliseconds(100))));
  COVE_TRY(host_.layers->RemoveLayer(record_.id));
  destroyed_ = true;
  return OkStatus();
}

}  // namespace cove::isolation
