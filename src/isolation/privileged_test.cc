// Privileged tests: real sandboxes on the real kernel, attacked from inside.
// Need root (and the kernel features of docs/isolation.md). Every test
// asserts that the attack FAILS, and the suite checks nothing is left behind.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "base/testing/wait_until.h"
#include "isolation/cgroup.h"
#include "isolation/default_image.h"
#include "isolation/id_range.h"
#include "isolation/image_import.h"
#include "isolation/layer_store.h"
#include "isolation/running_sandbox.h"
#include "sys/fs.h"
#include "sys/io.h"
#include "sys/proc_stat.h"
#include "sys/process.h"

namespace cove::isolation {
namespace {

using namespace std::chrono_literals;

struct RunResult {
  int status = -1;  // wait status of pid 1
  std::string out;  // stdout+stderr of the command
  int exit_code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }
};

std::string Slurp(const std::string& path) {
  auto r = sys::ReadFile(path, 16 << 20);
  return r.ok() ? *r : std::string();
}


// Loop devices bound to `image` (other cove instances on the host come and go).
int LoopDevicesOf(const std::string& image) {
  int n = 0;
  for (int i = 0; i < 1024; ++i) {
    auto b = sys::ReadFile("/sys/block/loop" + std::to_string(i) + "/loop/backing_file", 4096);
    if (b.ok() && b->rfind(image, 0) == 0) ++n;
  }
  return n;
}

class Sandbox : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) GTEST_SKIP() << "privileged tests need root";
    char tmpl[] = "/tmp/cove-priv-XXXXXX";
    state_ = new std::string(mkdtemp(tmpl));
    // A group of our own: a coved on this host cleaning its leftovers must not see our sandboxes.
    auto cg = CgroupManager::OpenHost("cove-test");
    ASSERT_TRUE(cg.ok()) << cg.error().ToString();
    cgroups_ = new CgroupManager(std::move(*cg));
    LayerStoreOptions lo;
    lo.image_bytes = 4ull << 30;
    lo.force_image = true;
    auto ls = LayerStore::Open(*state_, lo);
    ASSERT_TRUE(ls.ok()) << ls.error().ToString();
    layers_ = new LayerStore(std::move(*ls));
    auto img = EnsureDefaultImage(*state_ + "/images");
    ASSERT_TRUE(img.ok()) << img.error().ToString();
    image_ = new Image(*img);
  }
  static void TearDownTestSuite() {
    if (layers_) {
      EXPECT_TRUE(layers_->Unmount().ok());
      delete layers_;
      layers_ = nullptr;
    }
    if (state_) {
      EXPECT_TRUE(sys::RemoveTree(*state_).ok());
      delete state_;
    }
    if (cgroups_) (void)cgroups_->RemoveGroup();  // EBUSY if another test binary runs: fine
    delete cgroups_;
    delete image_;
  }
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP();
    mounts_before_ = OurMounts();
  }
  void TearDown() override {
    if (geteuid() != 0) return;
    // Nothing of any sandbox is left: no cgroup, no layer, no host mount.
    // (Only ours: other cove processes on this host may have sandboxes of their own.)
    const std::string mine = "priv-" + std::to_string(getpid()) + "-";
    auto res = RunningSandbox::ListResidues(host());
    ASSERT_TRUE(res.ok());
    for (const auto& id : *res) EXPECT_NE(id.rfind(mine, 0), 0u) << "layer left behind: " << id;
    auto cgs = cgroups_->List();
    ASSERT_TRUE(cgs.ok());
    for (const auto& id : *cgs) EXPECT_NE(id.rfind(mine, 0), 0u) << "cgroup left behind: " << id;
    EXPECT_EQ(OurMounts(), mounts_before_) << Slurp("/proc/self/mountinfo");
  }

  static IsolationHost host() { return IsolationHost{cgroups_, layers_}; }
  // cove-jail gets a state dir of its own (a jail cleans up every layer of its
  // state that no jail holds), inside our btrfs so it needs no second image.
  static std::string JailState() { return *state_ + "/layers/.jail"; }
  static std::string JailLayerDir(const std::string& id) { return JailState() + "/layers/" + id; }
  // Host mounts below our state dir (other processes on the host may mount
  // elsewhere while we run): only the layer file system itself.
  static int OurMounts() {
    int n = 0;
    std::istringstream in(Slurp("/proc/self/mountinfo"));
    for (std::string line; std::getline(in, line);)
      if (line.find(" " + *state_) != std::string::npos) ++n;
    return n;
  }
  static std::string NewId() {
    static int n = 0;
    return "priv-" + std::to_string(getpid()) + "-" + std::to_string(++n);
  }

  SandboxSpec Spec(const std::string& id, const std::vector<std::string>& argv, uid_t base) {
    SandboxSpec s;
    s.id = id;
    s.host_id_base = base;
    s.image = *image_;
    s.argv = argv;
    s.cwd = "/workspace";
    s.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"};
    return s;
  }

  // Runs `sh -c script` in a fresh sandbox with output on a pipe (fd 3), then destroys it.
  RunResult Run(const std::string& script, Limits limits = Limits{}, std::string* id_out = nullptr,
                std::function<void(RunningSandbox&)> while_running = nullptr) {
    RunResult r;
    std::string id = NewId();
    if (id_out) *id_out = id;
    auto lease = IdSlotLease::Acquire(kDefaultIdSlotLockDir, 100);
    EXPECT_TRUE(lease.ok());
    if (!lease.ok()) return r;
    int p[2];
    EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
    UniqueFd rd(p[0]), wr(p[1]);
    SandboxSpec spec = Spec(id, {"/bin/sh", "-c", "exec >&3 2>&3 3>&-; " + script}, lease->host_id_base());
    spec.limits = limits;
    auto rt = RunningSandbox::Create(host(), spec, {wr.get()});
    EXPECT_TRUE(rt.ok()) << rt.error().ToString();
    if (!rt.ok()) return r;
    wr.Reset();
    if (while_running) while_running(*rt);
    auto deadline = std::chrono::steady_clock::now() + 60s;
    bool eof = false, exited = false;
    while (!(eof && exited) && std::chrono::steady_clock::now() < deadline) {
      pollfd pf[2] = {{rd.get(), POLLIN, 0}, {rt->pidfd(), POLLIN, 0}};
      poll(pf, 2, 100);
      if (pf[0].revents & (POLLIN | POLLHUP)) {
        char buf[4096];
        ssize_t n = read(rd.get(), buf, sizeof buf);
        if (n > 0) r.out.append(buf, static_cast<size_t>(n));
        else eof = true;
      }
      if (!exited && (pf[1].revents & POLLIN)) {
        auto st = rt->WaitExit(0ms);
        if (st.ok()) {
          r.status = *st;
          exited = true;
        }
      }
    }
    EXPECT_TRUE(exited) << "sandbox did not finish; output so far: " << r.out;
    auto d = rt->Destroy();
    EXPECT_TRUE(d.ok()) << d.error().ToString();
    return r;
  }

  static std::string* state_;
  static CgroupManager* cgroups_;
  static LayerStore* layers_;
  static Image* image_;
  int mounts_before_ = 0;
};

std::string* Sandbox::state_ = nullptr;
CgroupManager* Sandbox::cgroups_ = nullptr;
LayerStore* Sandbox::layers_ = nullptr;
Image* Sandbox::image_ = nullptr;

// ---- the basics work ----

TEST_F(Sandbox, IdentityHostnameAndFilesystem) {
  std::string id;
  auto r = Run("id -u; id -g; hostname; cat /etc/hostname; touch /workspace/w && echo ws-ok; "
               "touch /usr/cove-test-x && echo usr-rw; touch /tmp/t && echo tmp-ok; "
               "stat -c %U /usr/bin/bash; stat -c '%U %a' /home/user; pwd",
               Limits{}, &id);
  EXPECT_EQ(r.exit_code(), 0) << r.out;
  EXPECT_EQ(r.out, "0\n0\n" + id + "\n" + id + "\nws-ok\nusr-rw\ntmp-ok\nroot\nuser 755\n/workspace\n");
  EXPECT_FALSE(sys::PathExists("/usr/cove-test-x")) << "a sandbox's write reached the host's /usr";
}

TEST_F(Sandbox, ToolsFromTheHostWork) {
  auto r = Run("bash -c 'echo bash-ok'; ls / >/dev/null && echo coreutils-ok; "
               "/usr/bin/python3 -c 'import ssl, json; print(\"py\", 1+1)'; git --version >/dev/null && echo git-ok; "
               "curl --version >/dev/null && echo curl-ok; awk 'BEGIN{print \"awk-ok\"}'; "
               "python3 -c 'import ssl; c=ssl.create_default_context(); print(len(c.get_ca_certs()) > 0 or "
               "c.cert_store_stats()[\"x509_ca\"] >= 0)'");
  EXPECT_EQ(r.exit_code(), 0) << r.out;
  EXPECT_EQ(r.out, "bash-ok\ncoreutils-ok\npy 2\ngit-ok\ncurl-ok\nawk-ok\nTrue\n");
}

TEST_F(Sandbox, OnlyPassedFdsAreOpen) {
  // fd 3 is the output pipe (closed by the script after the redirection), the rest must be absent.
  auto r = Run("ls /proc/self/fd | sort -n | tr '\\n' ' '");
  EXPECT_EQ(r.exit_code(), 0) << r.out;
  EXPECT_EQ(r.out, "0 1 2 3 ");  // 3 is ls's own directory fd
}

// ---- attacks ----

TEST_F(Sandbox, HostFilesAreInvisible) {
  char tmpl[] = "/tmp/cove-marker-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string marker = dir + "/secret";
  std::string root_marker = "/root/cove-marker-" + std::to_string(getpid());
  ASSERT_TRUE(sys::WriteFileAs(marker, "s3cret", 0644, 0, 0).ok());
  ASSERT_TRUE(sys::WriteFileAs(root_marker, "s3cret", 0644, 0, 0).ok());
  auto r = Run("cat " + marker + " 2>/dev/null; cat " + root_marker + " 2>/dev/null; ls /root; "
               "find / -xdev -name 'cove-marker-*' -print 2>/dev/null; "
               "cat /etc/shadow 2>/dev/null; ls " + *state_ + " 2>/dev/null; echo done");
  EXPECT_EQ(r.out, "done\n");
  unlink(root_marker.c_str());
  (void)sys::RemoveTree(dir);
}

TEST_F(Sandbox, HostProcessesAreInvisibleAndUntouchable) {
  pid_t victim = fork();
  ASSERT_GE(victim, 0);
  if (victim == 0) {
    execl("/bin/sleep", "sleep", "60", nullptr);
    _exit(1);
  }
  std::string v = std::to_string(victim);
  auto r = Run("ls /proc | grep -E '^[0-9]+$' | wc -l; "
               "grep -l isolation_privileged /proc/[0-9]*/cmdline 2>/dev/null; "
               "kill -9 " + v + " 2>/dev/null && echo killed; "
               "python3 -c 'import ctypes,sys; l=ctypes.CDLL(None, use_errno=True); "
               "r=l.ptrace(16, " + v + ", 0, 0); print(\"ptrace\", r, ctypes.get_errno())'");
  // Only the sandbox's own few processes; no host process by name; the host pid is unknown inside.
  std::istringstream in(r.out);
  int npids = 0;
  in >> npids;
  EXPECT_GT(npids, 0);
  EXPECT_LE(npids, 4) << r.out;
  EXPECT_EQ(r.out.find("isolation_privileged"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("killed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ptrace -1 3"), std::string::npos) << r.out;  // ESRCH
  EXPECT_EQ(kill(victim, 0), 0) << "host process was killed";
  kill(victim, SIGKILL);
  waitpid(victim, nullptr, 0);
}

TEST_F(Sandbox, CannotMountOrRemount) {
  auto r = Run("mount -t tmpfs none /mnt 2>/dev/null && echo mounted; "
               "mount -o remount,rw /usr 2>/dev/null && echo usr-rw; "
               "mount -o remount,ro / 2>/dev/null && echo root-remounted; "
               "mount --bind /usr /mnt 2>/dev/null && echo bound; "
               "umount /proc/kcore 2>/dev/null && echo unmasked; "
               "echo done");
  EXPECT_EQ(r.out, "done\n");
}

TEST_F(Sandbox, CannotCreateOrJoinNamespaces) {
  auto r = Run("for f in -U -m -n -p -i -u -C -r; do unshare $f true 2>/dev/null && echo unshare$f; done; "
               "nsenter -t 1 -m true 2>/dev/null && echo nsenter; echo done");
  EXPECT_EQ(r.out, "done\n");
}

TEST_F(Sandbox, KernelInterfacesAreDenied) {
  // finit_module(313), init_module(175), kexec_load(246), bpf(321), perf_event_open(298),
  // keyctl(250), add_key(248), open_by_handle_at(304), setns(308), reboot(169),
  // swapon(167), acct(163), settimeofday(164), clock_settime(227), userfaultfd(323),
  // io_uring_setup(425), syslog(103), ioperm(173), iopl(172), quotactl(179), mount_setattr(442)
  auto r = Run("python3 -c '\n"
               "import ctypes\n"
               "l = ctypes.CDLL(None, use_errno=True)\n"
               "for nr in (313, 175, 246, 321, 298, 250, 248, 304, 308, 169, 167, 163, 164, 227, 323, 425, 103, 173, 172, 179, 442):\n"
               "    rc = l.syscall(nr, 0, 0, 0, 0, 0)\n"
               "    e = ctypes.get_errno()\n"
               "    if rc != -1 or e != 1: print(\"allowed\", nr, rc, e)\n"
               "print(\"personality-query\", l.personality(0xffffffff) >= 0)\n"
               "rc = l.personality(0x0040000); print(\"no-aslr\", rc, ctypes.get_errno())\n"
               "'");
  EXPECT_EQ(r.exit_code(), 0) << r.out;
  EXPECT_EQ(r.out, "personality-query True\nno-aslr -1 1\n");
}

TEST_F(Sandbox, OtherArchitecturesAreKilled) {
  // An x32 system call number (getpid | __X32_SYSCALL_BIT) kills the process with SIGSYS.
  auto r = Run("python3 -c 'import ctypes; ctypes.CDLL(None).syscall(0x40000000 + 39); print(\"survived\")'; echo rc=$?");
  EXPECT_EQ(r.out.find("survived"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rc=159"), std::string::npos) << r.out;  // 128 + SIGSYS
}

TEST_F(Sandbox, ProcAndSysAreProtected) {
  auto r = Run("{ echo evil > /proc/sys/kernel/hostname && echo proc-sys-written; } 2>/dev/null; "
               "{ echo 1 > /proc/sysrq-trigger && echo sysrq; } 2>/dev/null; "
               "{ echo 1 > /sys/kernel/profiling && echo sys-written; } 2>/dev/null; "
               "{ echo x > /proc/sys/vm/drop_caches && echo drop-caches; } 2>/dev/null; "
               "test -s /proc/kcore && echo kcore-visible; cat /proc/keys /proc/timer_list 2>/dev/null | head -c 10; "
               "ls -A /proc/acpi 2>/dev/null; ls -A /sys/firmware 2>/dev/null; cat /proc/self/cgroup | grep -v ':/$'; "
               "grep CapBnd /proc/self/status; echo done");
  EXPECT_EQ(r.out, "CapBnd:\t00000000a80405fb\ndone\n");
}

TEST_F(Sandbox, NetworkIsOnlyLoopback) {
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(ls, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(ls, 4), 0);
  socklen_t len = sizeof a;
  getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len);
  std::string port = std::to_string(ntohs(a.sin_port));
  auto r = Run("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; "
               "python3 -c 'import socket\ntry:\n socket.create_connection((\"127.0.0.1\", " + port +
               "), timeout=2); print(\"connected\")\nexcept OSError as e: print(\"refused\")'; "
               "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 8080)); s.listen(); print(\"own-lo-ok\")'");
  EXPECT_EQ(r.out, "lo\nrefused\nown-lo-ok\n") << "status " << r.status;
  close(ls);
}

TEST_F(Sandbox, SandboxRootIsNotHostRoot) {
  std::string id;
  auto lease = IdSlotLease::Acquire(kDefaultIdSlotLockDir, 200);
  ASSERT_TRUE(lease.ok());
  id = NewId();
  auto rt = RunningSandbox::Create(host(), Spec(id, {"/bin/sleep", "30"}, lease->host_id_base()), {});
  ASSERT_TRUE(rt.ok()) << rt.error().ToString();
  std::string status = Slurp("/proc/" + std::to_string(rt->pid()) + "/status");
  std::string base = std::to_string(lease->host_id_base());
  EXPECT_NE(status.find("Uid:\t" + base + "\t" + base + "\t" + base + "\t" + base + "\n"), std::string::npos) << status;
  EXPECT_NE(status.find("Gid:\t" + base + "\t" + base + "\t" + base + "\t" + base + "\n"), std::string::npos) << status;
  size_t g = status.find("Groups:");
  ASSERT_NE(g, std::string::npos);
  EXPECT_EQ(status.substr(g, status.find('\n', g) - g).find_first_of("0123456789"), std::string::npos)
      << "host supplementary groups kept: " << status;
  std::istringstream map(Slurp("/proc/" + std::to_string(rt->pid()) + "/uid_map"));
  uint64_t inside = 1, outside = 0, count = 0;
  map >> inside >> outside >> count;
  EXPECT_EQ(inside, 0u);
  EXPECT_EQ(outside, lease->host_id_base());
  EXPECT_EQ(count, 65536u);
  ASSERT_TRUE(rt->Destroy().ok());
}

TEST_F(Sandbox, ForkBombStopsAtPidsLimit) {
  Limits l;
  l.pids = 64;
  uint64_t peak = 0;
  // (After the bomb, forks fail: the shell only uses builtins and exec.)
  auto r = Run("(for i in $(seq 200); do sleep 30 & done) 2>/dev/null; echo still-here; exec sleep 2", l, nullptr,
               [&](RunningSandbox& rt) {
                 // Sampled until the shell is done (2 s after the bomb).
                 cove::testing::WaitUntil(
                     [&] {
                       if (auto u = rt.cgroup().ReadUsage(); u.ok()) peak = std::max(peak, u->pids_current);
                       return rt.PollExit().value().has_value();
                     },
                     "the shell to exit after the fork bomb");
               });
  EXPECT_GT(peak, 32u);
  EXPECT_LE(peak, 64u);
  EXPECT_NE(r.out.find("still-here"), std::string::npos) << r.out;
}

TEST_F(Sandbox, MemoryHogIsKilledInsideOnly) {
  Limits l;
  l.memory_bytes = 64 << 20;
  uint64_t ooms = 0;
  auto r = Run("python3 -c 'x = bytearray(512 << 20); print(\"allocated\")'; echo rc=$?", l, nullptr,
               [&](RunningSandbox& rt) {
                 cove::testing::WaitUntil(
                     [&] {
                       if (auto u = rt.cgroup().ReadUsage(); u.ok()) ooms = u->oom_kills;
                       return ooms > 0;
                     },
                     "the OOM kill inside the sandbox");
               });
  EXPECT_EQ(r.exit_code(), 0);  // pid 1 (the shell) survived
  EXPECT_NE(r.out.find("rc=137"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("allocated"), std::string::npos) << r.out;
  EXPECT_GE(ooms, 1u);
}

TEST_F(Sandbox, CpuQuotaAndUsageAccounting) {
  // A busy loop for 1 s of wall time under a 0.2 CPU quota uses ~0.2 s of CPU.
  Limits l;
  l.cpu_millis = 200;
  CgroupUsage last;
  auto r = Run("timeout 1 sh -c 'while :; do :; done'; echo done", l, nullptr, [&](RunningSandbox& rt) {
    cove::testing::WaitUntil(
        [&] {
          if (auto u = rt.cgroup().ReadUsage(); u.ok()) last = *u;
          return rt.PollExit().value().has_value();
        },
        "the busy loop to end");
  });
  EXPECT_EQ(r.out, "done\n");
  EXPECT_GT(last.cpu_usage_ns, 100'000'000u);
  EXPECT_LT(last.cpu_usage_ns, 400'000'000u);
  EXPECT_GT(last.memory_current_bytes, 0u);
}

TEST_F(Sandbox, DiskFillStopsAtQuota) {
  if (!layers_->quota_enforced()) GTEST_SKIP() << "no quota backend";
  Limits l;
  l.disk_bytes = 32 << 20;
  auto r = Run("dd if=/dev/zero of=/workspace/fill bs=1M count=100 2>&1 | grep -o 'Disk quota exceeded' | head -1; "
               "rm /workspace/fill; echo small > /workspace/after && cat /workspace/after", l);
  EXPECT_EQ(r.out, "Disk quota exceeded\nsmall\n");
}

TEST_F(Sandbox, AgentIsExecutedFromTheHostThroughAnFd) {
  // The agent binary need not exist in the image: a copy of echo in a host
  // dir that the sandbox cannot see runs as pid 1.
  char tmpl[] = "/tmp/cove-agent-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  chmod(dir.c_str(), 0711);
  ASSERT_TRUE(sys::CopyFile("/usr/bin/echo", dir + "/fake-agent", 0755).ok());
  auto [code, out] = std::pair<int, std::string>{0, ""};
  {
    auto lease = IdSlotLease::Acquire(kDefaultIdSlotLockDir, 700);
    ASSERT_TRUE(lease.ok());
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    UniqueFd rd(p[0]), wr(p[1]);
    SandboxSpec spec = Spec(NewId(), {"fake-agent", "agent-ran"}, lease->host_id_base());
    spec.agent_path = dir + "/fake-agent";
    spec.inherit_stdio = false;
    // echo writes to fd 1; make fd 1 the pipe by passing it as fd 3 and... keep it simple:
    // run with inherited stdio redirected to the pipe in a child process of the test.
    pid_t pid = fork();
    if (pid == 0) {
      dup2(wr.get(), 1);
      spec.inherit_stdio = true;
      auto rt = RunningSandbox::Create(host(), spec, {});
      if (!rt.ok()) _exit(100);
      auto st = rt->WaitExit(10s);
      (void)rt->Destroy();
      _exit(st.ok() && WIFEXITED(*st) ? WEXITSTATUS(*st) : 101);
    }
    wr.Reset();
    out = *sys::ReadAll(rd.get(), 4096);
    int st = 0;
    waitpid(pid, &st, 0);
    code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out, "agent-ran\n");
  (void)sys::RemoveTree(dir);
}

TEST_F(Sandbox, LaunchErrorsArePreciseAndLeaveNothing) {
  auto lease = IdSlotLease::Acquire(kDefaultIdSlotLockDir, 300);
  ASSERT_TRUE(lease.ok());
  auto rt = RunningSandbox::Create(host(), Spec(NewId(), {"no-such-command-xyz"}, lease->host_id_base()), {});
  ASSERT_FALSE(rt.ok());
  EXPECT_EQ(rt.error().sys_errno, ENOENT);
  EXPECT_EQ(rt.error().context.at("step"), "exec command");
  SandboxSpec bad_agent = Spec(NewId(), {"agent"}, lease->host_id_base());
  bad_agent.agent_path = "/nonexistent/agent";
  rt = RunningSandbox::Create(host(), bad_agent, {});
  ASSERT_FALSE(rt.ok());
  EXPECT_EQ(rt.error().code, ErrorCode::kNotFound);
  // TearDown checks that no cgroup or layer is left.
}

TEST_F(Sandbox, AdoptAfterRestartAndCleanUp) {
  auto lease = IdSlotLease::Acquire(kDefaultIdSlotLockDir, 400);
  ASSERT_TRUE(lease.ok());
  std::string id = NewId();
  PersistedSandbox rec;
  {
    auto rt = RunningSandbox::Create(host(), Spec(id, {"/bin/sleep", "60"}, lease->host_id_base()), {});
    ASSERT_TRUE(rt.ok()) << rt.error().ToString();
    rec = rt->persisted();
    // The RunningSandbox object goes away as if coved restarted; the sandbox keeps running.
  }
  EXPECT_EQ(rec.id, id);
  EXPECT_EQ(kill(rec.pid, 0), 0);
  PersistedSandbox wrong = rec;
  wrong.start_time_ticks += 1;
  EXPECT_EQ(RunningSandbox::Adopt(host(), wrong).error().code, ErrorCode::kNotFound);
  auto adopted = RunningSandbox::Adopt(host(), rec);
  ASSERT_TRUE(adopted.ok()) << adopted.error().ToString();
  EXPECT_EQ(adopted->pid(), rec.pid);
  auto polled = adopted->PollExit();
  ASSERT_TRUE(polled.ok());
  EXPECT_FALSE(polled->has_value());
  // CleanUp from the record alone kills and removes everything.
  ASSERT_TRUE(RunningSandbox::CleanUp(host(), rec).ok());
  EXPECT_TRUE(sys::PidfdWaitExit(adopted->pidfd(), 1000ms).value());
  waitpid(rec.pid, nullptr, WNOHANG);  // we are still its parent in this test
  EXPECT_EQ(RunningSandbox::Adopt(host(), rec).error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(RunningSandbox::CleanUp(host(), rec).ok());  // idempotent
}

TEST_F(Sandbox, JoinsAPreMadeNetworkNamespace) {
  UniqueFd netns;
  std::thread([&] {
    if (unshare(CLONE_NEWNET) == 0) netns.Reset(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  }).join();
  ASSERT_TRUE(netns);
  char want[64] = {}, mine_before[64] = {}, mine_after[64] = {};
  ASSERT_GT(readlink(("/proc/self/fd/" + std::to_string(netns.get())).c_str(), want, sizeof want), 0);
  readlink("/proc/thread-self/ns/net", mine_before, sizeof mine_before);
  auto lease = IdSlotLease::Acquire(kDefaultIdSlotLockDir, 500);
  ASSERT_TRUE(lease.ok());
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  SandboxSpec spec = Spec(NewId(), {"/bin/sh", "-c", "readlink /proc/self/ns/net >&3"}, lease->host_id_base());
  spec.netns_fd = netns.get();
  auto rt = RunningSandbox::Create(host(), spec, {wr.get()});
  ASSERT_TRUE(rt.ok()) << rt.error().ToString();
  wr.Reset();
  readlink("/proc/thread-self/ns/net", mine_after, sizeof mine_after);
  EXPECT_STREQ(mine_before, mine_after);  // the launching thread went back
  auto out = sys::ReadAll(rd.get(), 4096);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, std::string(want) + "\n");
  ASSERT_TRUE(rt->WaitExit(10s).ok());
  ASSERT_TRUE(rt->Destroy().ok());
}

TEST_F(Sandbox, RelaunchOnTheSameLayerKeepsData) {
  // A second Launch on an existing layer (a sandbox resumed after it stopped)
  // sees the first one's files, despite overlayfs' volatile marker.
  auto lease = IdSlotLease::Acquire(kDefaultIdSlotLockDir, 600);
  ASSERT_TRUE(lease.ok());
  std::string id = NewId();
  auto dir = layers_->CreateLayer(id, 0, lease->host_id_base(), LayerSeed{true, id});
  ASSERT_TRUE(dir.ok()) << dir.error().ToString();
  for (const char* script : {"echo kept > /workspace/f", "test \"$(cat /workspace/f)\" = kept"}) {
    auto cg = cgroups_->Create(id, Limits{});
    ASSERT_TRUE(cg.ok());
    SandboxSpec spec = Spec(id, {"/bin/sh", "-c", script}, lease->host_id_base());
    spec.sandbox_dir = *dir;
    LaunchOptions lo;
    lo.cgroup = &*cg;
    auto l = Launch(spec, {}, lo);
    ASSERT_TRUE(l.ok()) << l.error().ToString();
    ASSERT_TRUE(sys::PidfdWaitExit(l->pidfd.get(), 10s).value());
    auto st = sys::PidfdTryReap(l->pidfd.get());
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(*st, 0) << script;
    ASSERT_TRUE(cg->Remove().ok());
  }
  ASSERT_TRUE(layers_->RemoveLayer(id).ok());
}

TEST_F(Sandbox, LayeredImageStacksItsLowerDirsWithWhiteouts) {
  // Two lower dirs, topmost first, as a layered (OCI) image is stacked: the
  // top one adds a file, deletes one of the bottom's (a whiteout: a 0/0
  // character device) and replaces a directory (opaque: user.overlay.opaque,
  // as overlayfs reads it in a user namespace).
  char tmpl[] = "/tmp/cove-layers-XXXXXX";
  const std::string base = mkdtemp(tmpl);
  const std::string bottom = base + "/bottom", top = base + "/top";
  for (const std::string& d : {bottom + "/etc", bottom + "/data", top + "/etc", top + "/data"})
    ASSERT_TRUE(sys::MkdirAll(d, 0755).ok());
  for (const char* f : {"/etc/a", "/etc/gone", "/data/old"})
    ASSERT_TRUE(sys::WriteFileAs(bottom + f, "bottom", 0644, 0, 0).ok());
  ASSERT_TRUE(sys::WriteFileAs(top + "/etc/b", "top", 0644, 0, 0).ok());
  ASSERT_TRUE(sys::WriteFileAs(top + "/data/new", "top", 0644, 0, 0).ok());
  ASSERT_EQ(mknod((top + "/etc/gone").c_str(), S_IFCHR | 0, makedev(0, 0)), 0) << strerror(errno);
  ASSERT_EQ(setxattr((top + "/data").c_str(), "user.overlay.opaque", "y", 1, 0), 0) << strerror(errno);
  ASSERT_EQ(chmod(base.c_str(), 0755), 0);
  auto lease = IdSlotLease::Acquire(kDefaultIdSlotLockDir, 801);
  ASSERT_TRUE(lease.ok());
  for (bool idmap : {true, false}) {
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    UniqueFd rd(p[0]), wr(p[1]);
    const std::string id = NewId();
    SandboxSpec spec = Spec(id, {"probe", "/etc/a", "/etc/b", "/etc/gone", "/data/old", "/data/new"},
                            lease->host_id_base());
    spec.image.lower_dirs = {top, bottom};
    spec.agent_path = COVE_STATIC_PROBE_PATH;
    CreateOptions co;
    co.default_layout = false;
    co.idmap_image = idmap;
    auto rt = RunningSandbox::Create(host(), spec, {wr.get()}, co);
    ASSERT_TRUE(rt.ok()) << rt.error().ToString();
    wr.Reset();
    auto out = sys::ReadAll(rd.get(), 4096);
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(*out, "uid=0 host=" + id + "\n/etc/a:yes\n/etc/b:yes\n/etc/gone:no\n/data/old:no\n/data/new:yes\n")
        << (idmap ? "idmapped" : "plain");
    ASSERT_TRUE(rt->WaitExit(10s).ok());
    ASSERT_TRUE(rt->Destroy().ok());
  }
  ASSERT_TRUE(sys::RemoveTree(base).ok());
}

TEST_F(Sandbox, ImportedImageRunsAStaticAgent) {
  // A rootfs tarball imported as an image: no host binds, nothing of the host
  // visible; a static agent from the host runs as pid 1 on it.
  char tmpl[] = "/tmp/cove-rootfs-XXXXXX";
  std::string src = mkdtemp(tmpl);
  ASSERT_TRUE(sys::MkdirAll(src + "/etc", 0755).ok());
  ASSERT_TRUE(sys::WriteFileAs(src + "/etc/marker", "imported", 0644, 0, 0).ok());
  ASSERT_EQ(symlink("/etc", (src + "/proc-link").c_str()), 0);
  std::string tar = src + ".tar";
  ASSERT_EQ(system(("tar -C " + src + " -cf " + tar + " .").c_str()), 0);
  std::string name = "imp-" + std::to_string(getpid());
  auto img = ImportImage(*state_ + "/images", name, tar);
  ASSERT_TRUE(img.ok()) << img.error().ToString();
  auto lease = IdSlotLease::Acquire(kDefaultIdSlotLockDir, 800);
  ASSERT_TRUE(lease.ok());
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  std::string id = NewId();
  SandboxSpec spec = Spec(id, {"probe", "/etc/marker", "/usr/bin/bash", "/proc/self", "/dev/null", "/workspace"},
                          lease->host_id_base());
  spec.image = *img;
  spec.agent_path = COVE_STATIC_PROBE_PATH;
  CreateOptions co;
  co.default_layout = false;
  auto rt = RunningSandbox::Create(host(), spec, {wr.get()}, co);
  ASSERT_TRUE(rt.ok()) << rt.error().ToString();
  wr.Reset();
  auto out = sys::ReadAll(rd.get(), 4096);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, "uid=0 host=" + id + "\n/etc/marker:yes\n/usr/bin/bash:no\n/proc/self:yes\n/dev/null:yes\n/workspace:no\n");
  auto st = rt->WaitExit(10s);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, 0);
  ASSERT_TRUE(rt->Destroy().ok());

  // An image whose /proc is a symlink to the host's / must not get procfs
  // (or anything) mounted through it: the launch is refused.
  ASSERT_EQ(symlink("/", (src + "/proc").c_str()), 0);
  ASSERT_EQ(system(("tar -C " + src + " -cf " + tar + " .").c_str()), 0);
  auto evil = ImportImage(*state_ + "/images", name + "-evil", tar);
  ASSERT_TRUE(evil.ok()) << evil.error().ToString();
  spec.id = NewId();
  spec.image = *evil;
  auto bad = RunningSandbox::Create(host(), spec, {}, co);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().context.at("step"), "mkdir /proc") << bad.error().ToString();
  (void)sys::RemoveTree(src);
  unlink(tar.c_str());
}

TEST_F(Sandbox, ConcurrentCreatesAreIndependent) {
  // 16 threads create, run and destroy sandboxes at once (coved creates
  // concurrently); every one must see its own hostname and nothing may leak.
  constexpr int kThreads = 16, kEach = 3;
  std::atomic<int> ok{0};
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto lease = IdSlotLease::Acquire(kDefaultIdSlotLockDir, 1000 + t * 10);
        if (!lease.ok()) { errors[t] = lease.error().ToString(); return; }
        std::string id = "priv-" + std::to_string(getpid()) + "-c" + std::to_string(t) + "-" + std::to_string(i);
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) return;
        UniqueFd rd(p[0]), wr(p[1]);
        auto rt = RunningSandbox::Create(host(), Spec(id, {"/bin/sh", "-c", "hostname >&3"}, lease->host_id_base()),
                                         {wr.get()});
        if (!rt.ok()) { errors[t] = rt.error().ToString(); return; }
        wr.Reset();
        auto out = sys::ReadAll(rd.get(), 4096);
        auto st = rt->WaitExit(30s);
        auto d = rt->Destroy();
        if (out.ok() && *out == id + "\n" && st.ok() && *st == 0 && d.ok()) ++ok;
        else errors[t] = "bad result for " + id + ": " + (out.ok() ? *out : out.error().ToString());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), kThreads * kEach);
  for (const auto& e : errors) EXPECT_EQ(e, "");
}

// ---- cove-jail end to end ----

std::pair<int, std::string> RunJail(const std::string& state, const std::vector<std::string>& args) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return {-1, ""};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    dup2(p[1], 2);
    std::vector<std::string> all = {COVE_JAIL_PATH, "--state", state};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(99);
  }
  close(p[1]);
  auto out = sys::ReadAll(p[0], 1 << 20);
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out.ok() ? *out : ""};
}

// Whether a child of `parent` runs a program named `comm`.
bool ChildNamed(pid_t parent, const std::string& comm) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto stat = sys::ReadProcStat(name);
    if (stat.ok() && stat->ppid == parent && Slurp("/proc/" + name + "/comm") == comm + "\n") return true;
  }
  return false;
}

bool JailCgroupExists(const std::string& id) {
  auto m = CgroupManager::OpenHost("cove-jail");
  return m.ok() && m->Adopt(id).ok();
}

TEST_F(Sandbox, JailRunsCommandsAndPropagatesStatus) {
  std::string id = NewId();
  auto [code, out] = RunJail(JailState(), {"--id", id, "--", "sh", "-c", "echo hi; hostname >/dev/null; exit 7"});
  EXPECT_EQ(code, 7);
  EXPECT_EQ(out, "hi\n");
  EXPECT_FALSE(JailCgroupExists(id));
  EXPECT_FALSE(sys::PathExists(JailLayerDir(id)));
  std::tie(code, out) = RunJail(JailState(), {"--id", NewId(), "--", "no-such-cmd"});
  EXPECT_EQ(code, 127) << out;
  std::tie(code, out) = RunJail(JailState(), {"--id", NewId(), "--memory", "67108864", "--", "python3", "-c",
                                          "x = bytearray(512 << 20)"});
  EXPECT_EQ(code, 137) << out;  // OOM-killed inside; the jail survived to report it
}

TEST_F(Sandbox, JailCleansUpOnSignal) {
  std::string id = NewId();
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    std::string js = JailState();
    execl(COVE_JAIL_PATH, COVE_JAIL_PATH, "--state", js.c_str(), "--id", id.c_str(), "--", "sleep", "60", nullptr);
    _exit(99);
  }
  // Wait until the sandbox runs its command (the jail's child is `sleep`), then interrupt the jail.
  cove::testing::WaitUntil([&] { return ChildNamed(pid, "sleep"); }, "the jail's sandbox to run sleep");
  kill(pid, SIGTERM);
  int st = 0;
  waitpid(pid, &st, 0);
  EXPECT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 128 + SIGTERM);
  EXPECT_FALSE(sys::PathExists(JailLayerDir(id)));
  EXPECT_FALSE(JailCgroupExists(id));
}

// ---- the layer store leaves no mount or loop device behind ----

TEST(LayerStoreLifecycle, UnmountReleasesLoopDeviceAndMount) {
  if (geteuid() != 0) GTEST_SKIP();
  char tmpl[] = "/tmp/cove-ls-XXXXXX";
  std::string state = mkdtemp(tmpl);
  const std::string image = state + "/layers.img";
  {
    LayerStoreOptions o;
    o.image_bytes = 1ull << 30;
    o.force_image = true;
    auto ls = LayerStore::Open(state, o);
    ASSERT_TRUE(ls.ok()) << ls.error().ToString();
    EXPECT_TRUE(ls->quota_enforced());
    EXPECT_EQ(LoopDevicesOf(image), 1);
    auto dir = ls->CreateLayer("lifecycle", 10 << 20, *HostIdBaseForSlot(900), LayerSeed{true, "lifecycle"});
    ASSERT_TRUE(dir.ok()) << dir.error().ToString();
    struct stat st;
    ASSERT_EQ(stat((*dir + "/upper/home/user").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, *HostIdBaseForSlot(900) + 1000);
    ASSERT_EQ(stat((*dir + "/upper/tmp").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 01777u);
    EXPECT_EQ(*ls->List(), std::vector<std::string>{"lifecycle"});
    ASSERT_TRUE(sys::WriteFileAs(*dir + "/upper/f", std::string(3 << 20, 'x'), 0644, 0, 0).ok());
    {
      UniqueFd fd(open(dir->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      syncfs(fd.get());
    }
    auto used = ls->UsageBytes("lifecycle");
    ASSERT_TRUE(used.ok()) << used.error().ToString();
    EXPECT_GE(*used, 3u << 20);
    EXPECT_LT(*used, 4u << 20);
    ASSERT_TRUE(ls->RemoveLayer("lifecycle").ok());
    EXPECT_TRUE(ls->List()->empty());
    // Re-opening finds the mounted store instead of mounting it twice.
    auto again = LayerStore::Open(state, o);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(LoopDevicesOf(image), 1);
    ASSERT_TRUE(ls->Unmount().ok());
  }
  EXPECT_EQ(Slurp("/proc/self/mountinfo").find(" " + state), std::string::npos);
  // The kernel releases an autoclear loop device after the unmount, not with it.
  cove::testing::WaitUntil([&] { return LoopDevicesOf(image) == 0; }, "the loop device to go", 5s);
  EXPECT_TRUE(sys::RemoveTree(state).ok());
}

TEST(LayerStoreLifecycle, OrphanedMountsOfDeletedStateDirsAreDetached) {
  // A temporary state dir removed while its layer file system was mounted:
  // the next Open anywhere detaches it and the loop device goes away.
  if (geteuid() != 0) GTEST_SKIP();
  char tmpl[] = "/tmp/cove-orphan-XXXXXX";
  std::string state = mkdtemp(tmpl);
  LayerStoreOptions o;
  o.image_bytes = 1ull << 30;
  o.force_image = true;
  {
    auto ls = LayerStore::Open(state, o);
    ASSERT_TRUE(ls.ok()) << ls.error().ToString();
  }  // coved "exits" without unmounting
  ASSERT_EQ(unlink((state + "/layers.img").c_str()), 0);
  char tmpl2[] = "/tmp/cove-orphan2-XXXXXX";
  std::string other = mkdtemp(tmpl2);
  auto ls2 = LayerStore::Open(other, o);
  ASSERT_TRUE(ls2.ok());
  auto mp = sys::IsMountPoint(state + "/layers");
  ASSERT_TRUE(mp.ok());
  EXPECT_FALSE(*mp);
  ASSERT_TRUE(ls2->Unmount().ok());
  cove::testing::WaitUntil([&] { return LoopDevicesOf(state + "/layers.img") == 0; }, "the orphan's loop device to go", 5s);
  cove::testing::WaitUntil([&] { return LoopDevicesOf(other + "/layers.img") == 0; }, "the loop device to go", 5s);
  EXPECT_TRUE(sys::RemoveTree(state).ok());
  EXPECT_TRUE(sys::RemoveTree(other).ok());
}

TEST(CgroupHost, LeftoverCgroupsAreListedAndRemoved) {
  if (geteuid() != 0) GTEST_SKIP();
  auto m = CgroupManager::OpenHost("cove-test-" + std::to_string(getpid()));
  ASSERT_TRUE(m.ok()) << m.error().ToString();
  std::string id = "leftover-" + std::to_string(getpid());
  {
    auto cg = m->Create(id, Limits{});
    ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  }  // the object is gone, the cgroup stays (as after a crash)
  auto ids = m->List();
  ASSERT_TRUE(ids.ok());
  EXPECT_NE(std::find(ids->begin(), ids->end(), id), ids->end());
  auto adopted = m->Adopt(id);
  ASSERT_TRUE(adopted.ok());
  for (const auto& d : adopted->dirs()) EXPECT_TRUE(sys::PathExists(d)) << d;
  ASSERT_TRUE(adopted->Remove().ok());
  for (const auto& d : adopted->dirs()) EXPECT_FALSE(sys::PathExists(d)) << d;
  ids = m->List();
  EXPECT_EQ(std::find(ids->begin(), ids->end(), id), ids->end());
  ASSERT_TRUE(m->RemoveGroup().ok());
}

// A killed sandbox's CPU and memory limits are lifted, so its processes exit unthrottled.
TEST(CgroupHost, KillAllLiftsTheLimits) {
  if (geteuid() != 0) GTEST_SKIP();
  auto m = CgroupManager::OpenHost("cove-test-" + std::to_string(getpid()));
  ASSERT_TRUE(m.ok()) << m.error().ToString();
  Limits l;
  l.cpu_millis = 62;
  l.memory_bytes = 64 << 20;
  auto cg = m->Create("lift-" + std::to_string(getpid()), l);
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  ASSERT_TRUE(cg->KillAll().ok());
  auto read = [](const std::string& path) {
    auto r = sys::ReadFile(path);
    std::string s = r.ok() ? *r : "<" + r.error().ToString() + ">";
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  };
  for (size_t h = 0; h < cg->dirs().size(); ++h) {
    const auto& c = m->layout().hierarchies[h].controllers;
    const std::string& d = cg->dirs()[h];
    if (m->layout().version == CgroupVersion::kV2) {
      EXPECT_EQ(read(d + "/cpu.max").substr(0, 4), "max ");
      EXPECT_EQ(read(d + "/memory.max"), "max");
      continue;
    }
    if (std::find(c.begin(), c.end(), "cpu") != c.end()) {
      EXPECT_EQ(read(d + "/cpu.cfs_quota_us"), "-1");
    }
    if (std::find(c.begin(), c.end(), "memory") != c.end()) {
      EXPECT_GT(std::stoull(read(d + "/memory.limit_in_bytes")), uint64_t{1} << 40);
    }
  }
  ASSERT_TRUE(cg->Remove().ok());
  ASSERT_TRUE(m->RemoveGroup().ok());
}

// The kernel keeps the short CFS period cove asks for (v1 cpu.cfs_*, or v2 cpu.max).
TEST(CgroupHost, CpuLimitUsesAShortPeriod) {
  if (geteuid() != 0) GTEST_SKIP();
  auto m = CgroupManager::OpenHost("cove-test-" + std::to_string(getpid()));
  ASSERT_TRUE(m.ok()) << m.error().ToString();
  auto trim = [](Result<std::string> r) {
    std::string s = r.ok() ? *r : "<" + r.error().ToString() + ">";
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  };
  for (uint32_t millis : {250u, 62u}) {
    std::string id = "cpu-period-" + std::to_string(getpid()) + "-" + std::to_string(millis);
    Limits l;
    l.cpu_millis = millis;
    auto cg = m->Create(id, l);
    ASSERT_TRUE(cg.ok()) << cg.error().ToString();
    const CpuBandwidth want = CpuBandwidthFor(millis);
    int checked = 0;
    for (size_t h = 0; h < cg->dirs().size(); ++h) {
      const auto& hi = m->layout().hierarchies[h];
      const std::string& d = cg->dirs()[h];
      if (m->layout().version == CgroupVersion::kV2) {
        EXPECT_EQ(trim(sys::ReadFile(d + "/cpu.max")),
                  std::to_string(want.quota_us) + " " + std::to_string(want.period_us));
        ++checked;
      } else if (std::find(hi.controllers.begin(), hi.controllers.end(), "cpu") != hi.controllers.end()) {
        EXPECT_EQ(trim(sys::ReadFile(d + "/cpu.cfs_period_us")), std::to_string(want.period_us));
        EXPECT_EQ(trim(sys::ReadFile(d + "/cpu.cfs_quota_us")), std::to_string(want.quota_us));
        ++checked;
      }
    }
    EXPECT_EQ(checked, 1);
    if (millis == 250) {
      EXPECT_EQ(want.period_us, 10000u);
    }
    ASSERT_TRUE(cg->Remove().ok());
  }
  ASSERT_TRUE(m->RemoveGroup().ok());
}

}  // namespace
}  // namespace cove::isolation
