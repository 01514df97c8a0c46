// cove-jail: runs one command in a full cove sandbox (default image) with
// stdio inherited, and exits with the command's status. Prints nothing but
// errors (and --timings). Cleans up cgroups, layer and dirs on every exit
// path it can see: normal exit, set-up failure, SIGINT/SIGTERM/SIGHUP.
//
//   cove-jail --id ID [--image-dir DIR] [--state DIR] [--memory BYTES] [--pids N]
//             [--cpu-millis N] [--disk BYTES] [--cwd DIR] [--env K=V]... [--agent PATH]
//             -- CMD ARGS...
//
// Exit codes: the command's, 128+N if it died of signal N, 125 set-up error,
// 126 command not executable, 127 command not found.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <optional>

#include "base/log.h"
#include "isolation/cgroup.h"
#include "isolation/default_image.h"
#include "isolation/id_range.h"
#include "isolation/layer_store.h"
#include "isolation/running_sandbox.h"
#include "isolation/validate.h"
#include "sys/fs.h"
#include "sys/unique_fd.h"

using namespace cove;
using namespace cove::isolation;

namespace {

int Fail(const Error& e) {
  std::string ctx;
  for (const auto& [k, v] : e.context) ctx += " " + k + "=" + v;
  std::fprintf(stderr, "cove-jail: %s%s\n", e.ToString().c_str(), ctx.c_str());
  if (e.context.count("step") && e.context.at("step") == "exec command")
    return e.sys_errno == ENOENT ? 127 : 126;
  return 125;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Run one command in a cove sandbox"};
  std::string id, state = "/var/lib/cove-jail", image_dir, cwd = "/workspace";
  Limits limits;
  std::vector<std::string> env_extra, cmd;
  bool timings = false, no_idmap = false;
  app.add_option("--id", id, "sandbox id ([a-z0-9-]{1,63}), also the hostname")->required();
  app.add_option("--state", state, "state directory (layers, id slots)");
  app.add_option("--image-dir", image_dir, "images directory (default: STATE/images)");
  app.add_option("--memory", limits.memory_bytes, "memory limit in bytes (0 = none)");
  app.add_option("--pids", limits.pids, "process limit (0 = none)");
  app.add_option("--cpu-millis", limits.cpu_millis, "CPU quota in 1/1000 CPU (0 = none)");
  app.add_option("--disk", limits.disk_bytes, "writable layer quota in bytes (0 = none)");
  app.add_option("--cwd", cwd, "working directory inside the sandbox");
  app.add_option("--env", env_extra, "extra environment K=V (repeatable)");
  std::string agent;
  app.add_option("--agent", agent, "host binary exec'd as pid 1 through an fd (CMD is then its argv)");
  app.add_flag("--timings", timings, "print set-up timings to stderr");
  app.add_flag("--no-idmap", no_idmap, "do not use idmapped mounts for the image");
  app.add_option("cmd", cmd, "command and arguments (after --)")->required();
  CLI11_PARSE(app, argc, argv);
  if (image_dir.empty()) image_dir = state + "/images";
  log::SetLevel(log::Level::kWarn);

  // Signals that end the jail are handled synchronously (and unblocked again in the sandbox).
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&sigs, s);
  sigprocmask(SIG_BLOCK, &sigs, nullptr);
  UniqueFd sigfd(signalfd(-1, &sigs, SFD_CLOEXEC));

  if (auto s = ValidateSandboxId(id); !s.ok()) return Fail(s.error());
  if (auto s = sys::MkdirAll(state, 0711); !s.ok()) return Fail(s.error());
  // One jail per id; whatever a previous (killed) jail of this id left is stale.
  std::string id_lock_path = state + "/jail-" + id + ".lock";
  UniqueFd id_lock(open(id_lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!id_lock || flock(id_lock.get(), LOCK_EX | LOCK_NB) != 0)
    return Fail(MakeError(ErrorCode::kAlreadyExists, "sandbox id " + id + " is in use by another cove-jail"));

  auto cgroups = CgroupManager::OpenHost("cove-jail");
  if (!cgroups.ok()) return Fail(cgroups.error());
  auto layers = LayerStore::Open(state);
  if (!layers.ok()) return Fail(layers.error());
  auto image = EnsureDefaultImage(image_dir);
  if (!image.ok()) return Fail(image.error());
  // Host ids are claimed where coved claims them too; start high, coved starts low.
  auto lease = IdSlotLease::Acquire(kDefaultIdSlotLockDir,
                                    kIdSlotCount / 2 + static_cast<uint32_t>(std::hash<std::string>{}(id) % 4096));
  if (!lease.ok()) return Fail(lease.error());
  IsolationHost host{&*cgroups, &*layers};
  // Residues of jails that died without cleaning up (SIGKILL): an id whose
  // lock nobody holds is stale. Ours is stale too, since we hold its lock.
  if (auto ids = RunningSandbox::ListResidues(host); ids.ok()) {
    for (const std::string& other : *ids) {
      UniqueFd l;
      if (other != id) {
        l.Reset(open((state + "/jail-" + other + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
        if (!l || flock(l.get(), LOCK_EX | LOCK_NB) != 0) continue;
      }
      (void)RunningSandbox::CleanUp(host, PersistedSandbox{other, -1, 0, 0});
    }
  }

  SandboxSpec spec;
  spec.id = id;
  spec.host_id_base = lease->host_id_base();
  spec.image = *image;
  spec.limits = limits;
  spec.argv = cmd;
  spec.agent_path = agent;
  spec.cwd = cwd;
  spec.inherit_stdio = true;
  spec.die_with_parent = true;
  spec.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
              "LANG=C.UTF-8", "HOSTNAME=" + id, "USER=root"};
  if (const char* term = getenv("TERM")) spec.env.push_back(std::string("TERM=") + term);
  for (const auto& e : env_extra) spec.env.push_back(e);

  CreateOptions::Timings t;
  CreateOptions co;
  co.idmap_image = !no_idmap;
  co.timings = &t;
  auto rt = RunningSandbox::Create(host, spec, {}, co);
  if (!rt.ok()) return Fail(rt.error());
  if (timings)
    std::fprintf(stderr,
                 "cove-jail timings (us): layer %.0f cgroup %.0f launch %.0f [prepare %.0f clone %.0f "
                 "parent %.0f child %.0f] total %.0f idmapped=%d\n",
                 t.layer_us, t.cgroup_us, t.launch.total_us, t.launch.prepare_us, t.launch.clone_us,
                 t.launch.parent_us, t.launch.child_us, t.total_us, t.launch.idmapped ? 1 : 0);

  int code = 0;
  for (;;) {
    pollfd pf[2] = {{rt->pidfd(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
    if (poll(pf, 2, -1) < 0) {
      if (errno == EINTR) continue;
      code = 125;
      break;
    }
    if (pf[1].revents & POLLIN) {
      signalfd_siginfo si;
      if (read(sigfd.get(), &si, sizeof si) == sizeof si) {
        code = 128 + static_cast<int>(si.ssi_signo);
        break;
      }
    }
    if (pf[0].revents & POLLIN) {
      auto st = rt->WaitExit(std::chrono::milliseconds(0));
      if (!st.ok()) return Fail(st.error());
      code = WIFEXITED(*st) ? WEXITSTATUS(*st) : 128 + WTERMSIG(*st);
      break;
    }
  }
  if (auto s = rt->Destroy(); !s.ok()) {
    Fail(s.error());
    if (code == 0) code = 125;
  }
  return code;  // (lock files stay: unlinking a lock file another jail has open would split the lock)
}
