#include "isolation/launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>

#include "base/log.h"
#include "base/scope_exit.h"
#include "isolation/cgroup.h"
#include "isolation/child_setup.h"
#include "isolation/id_range.h"
#include "isolation/seccomp_filter.h"
#include "isolation/validate.h"
#include "sys/fs.h"
#include "sys/proc_stat.h"
#include "sys/process.h"

namespace cove::isolation {

namespace {

using internal::ChildMsg;
using internal::ChildPlan;
using internal::GoMsg;
using Clock = std::chrono::steady_clock;

constexpr const char* kProcMaskedFiles[] = {"kcore", "keys", "timer_list", "sched_debug",
                                            "latency_stats", "timer_stats"};
constexpr const char* kProcMaskedDirs[] = {"acpi", "scsi", "asound"};
constexpr const char* kProcReadOnly[] = {"sys", "sysrq-trigger", "irq", "bus", "fs"};
constexpr const char* kDevNodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr rlim_t kNoFile = 65536;
constexpr auto kChildTimeout = std::chrono::seconds(20);
constexpr size_t kMaxMountData = 4096;  // mount(2) reads one page of options

double Us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

Status CheckOptionSafe(const std::string& path) {
  if (path.find_first_of(",:\\") != std::string::npos)
    return MakeError(ErrorCode::kInvalidArgument, "path unusable in overlay options: " + path);
  return OkStatus();
}

Status WriteProcFile(const std::string& path, const std::string& value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return SysError("open " + path);
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
    return SysError("write " + path);
  return OkStatus();
}

// A directory only coved writes (a mount point or a parent of layer dirs);
// an existing one is fine. One system call on the create path.
Status MkdirOurs(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return SysError("mkdir " + path);
  return OkStatus();
}

// Where the i-th lower layer of the root is attached when idmapped.
std::string LowerStage(const SandboxSpec& spec, size_t i) {
  return spec.sandbox_dir + "/lower/" + std::to_string(i);
}

// Where a host dir's overlay keeps its layers: sandbox_dir/dirs/<name>, the
// name being its sandbox path with '/' as '+' ("/usr" -> "usr").
std::string HostDirLayers(const SandboxSpec& spec, const HostDir& d) {
  std::string name = d.sandbox_path.substr(1);
  for (char& ch : name)
    if (ch == '/') ch = '+';
  return spec.sandbox_dir + "/dirs/" + name;
}

// The host dirs' layer dirs: upper/ and work/ owned by the sandbox's root,
// lower/ (the mount point of an idmapped lower) by ours. Kept across restarts.
Status MakeHostDirLayers(const SandboxSpec& spec, bool volatile_upper) {
  if (spec.image.host_dirs.empty()) return OkStatus();
  const uid_t r = spec.host_id_base;
  COVE_TRY(MkdirOurs(spec.sandbox_dir + "/dirs"));
  for (const HostDir& d : spec.image.host_dirs) {
    const std::string dir = HostDirLayers(spec, d);
    COVE_TRY(MkdirOurs(dir));
    COVE_TRY(sys::MkdirOwned(dir + "/upper", 0755, r, r));
    COVE_TRY(sys::MkdirOwned(dir + "/work", 0700, r, r));
    COVE_TRY(MkdirOurs(dir + "/lower"));
    if (volatile_upper) COVE_TRY(sys::RemoveTree(dir + "/work/work/incompat"));  // see Launch
  }
  return OkStatus();
}

Result<ChildPlan> BuildPlan(const SandboxSpec& spec, const std::vector<int>& pass_fds, bool volatile_upper) {
  ChildPlan p;
  p.pass_fds = pass_fds;
  p.inherit_stdio = spec.inherit_stdio;
  p.die_with_parent = spec.die_with_parent;
  p.new_netns = spec.netns_fd < 0;
  p.hostname = spec.id;
  p.root = spec.sandbox_dir + "/root";
  COVE_TRY(CheckOptionSafe(spec.sandbox_dir));
  std::string lowers, staged;
  for (size_t i = 0; i < spec.image.lower_dirs.size(); ++i) {
    COVE_TRY(CheckOptionSafe(spec.image.lower_dirs[i]));
    p.lower_stages.push_back(LowerStage(spec, i));
    lowers += (i ? ":" : "") + spec.image.lower_dirs[i];
    staged += (i ? ":" : "") + p.lower_stages.back();
  }
  const std::string tail =
      ",upperdir=" + spec.sandbox_dir + "/upper,workdir=" + spec.sandbox_dir + "/work,userxattr" +
      (volatile_upper ? ",volatile" : "");
  p.overlay_opts = "lowerdir=" + lowers + tail;
  p.overlay_opts_idmapped = "lowerdir=" + staged + tail;
  if (p.overlay_opts.size() >= kMaxMountData || p.overlay_opts_idmapped.size() >= kMaxMountData)
    return MakeError(ErrorCode::kInvalidArgument, "the image's layers do not fit in one overlay mount");
  p.volatile_upper = volatile_upper;
  for (const HostDir& d : spec.image.host_dirs) {
    COVE_TRY(CheckOptionSafe(d.host_path));
    const std::string layers = HostDirLayers(spec, d);
    p.host_dirs.push_back({d.sandbox_path.substr(1), d.host_path, layers + "/lower", layers + "/upper",
                           layers + "/work"});
  }
  for (const HostDir& b : spec.read_only_binds) {
    struct stat st;
    if (::stat(b.host_path.c_str(), &st) != 0) return SysError("stat bind source " + b.host_path);
    if (!S_ISDIR(st.st_mode)) return SysError("bind source " + b.host_path, ENOTDIR);
    p.binds.push_back({b.host_path, b.sandbox_path.substr(1)});
  }
  p.proc_dir = p.root + "/proc";
  p.dev_dir = p.root + "/dev";
  p.sys_dir = p.root + "/sys";
  for (const char* f : kProcMaskedFiles) p.proc_masked_files.push_back(p.proc_dir + "/" + f);
  for (const char* d : kProcMaskedDirs) p.proc_masked_dirs.push_back(p.proc_dir + "/" + d);
  for (const char* r : kProcReadOnly) p.proc_readonly.push_back(p.proc_dir + "/" + r);
  for (const char* n : kDevNodes) p.dev_nodes.emplace_back(std::string("/dev/") + n, p.dev_dir + "/" + n);
  p.dev_pts = p.dev_dir + "/pts";
  p.dev_shm = p.dev_dir + "/shm";
  p.dev_ptmx = p.dev_dir + "/ptmx";
  p.dev_fd = p.dev_dir + "/fd";
  p.dev_stdin = p.dev_dir + "/stdin";
  p.dev_stdout = p.dev_dir + "/stdout";
  p.dev_stderr = p.dev_dir + "/stderr";
  p.sys_firmware = p.sys_dir + "/firmware";
  p.cwd = spec.cwd;
  for (const auto& a : spec.argv) p.argv.push_back(const_cast<char*>(a.c_str()));
  p.argv.push_back(nullptr);
  for (const auto& e : spec.env) p.envp.push_back(const_cast<char*>(e.c_str()));
  p.envp.push_back(nullptr);
  if (spec.agent_path.empty()) {
    const std::string& cmd = spec.argv[0];
    if (cmd.find('/') != std::string::npos) {
      p.exec_candidates.push_back(cmd);
    } else {
      std::string path = kDefaultPath;
      for (const auto& e : spec.env)
        if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
      size_t i = 0;
      while (i <= path.size()) {
        size_t j = path.find(':', i);
        if (j == std::string::npos) j = path.size();
        std::string dir = path.substr(i, j - i);
        if (dir.empty()) dir = ".";
        p.exec_candidates.push_back(dir + "/" + cmd);
        i = j + 1;
      }
    }
  }
  COVE_ASSIGN_OR_RETURN(const SeccompPrograms* sp, SandboxSeccompPrograms());
  p.seccomp = sp->main;
  p.seccomp_personality = sp->personality;
  return p;
}

// Detached, idmapped, read-only copies of the image's lower dirs, its host dirs
// and the read-only binds (the order of GoMsg's fds),
// mapped through the child's user namespace. Empty if not possible.
std::vector<UniqueFd> MakeIdmappedMounts(pid_t pid, const SandboxSpec& spec) {
  static std::atomic<bool> warned{false};
  std::vector<UniqueFd> fds;
  UniqueFd userns(::open(("/proc/" + std::to_string(pid) + "/ns/user").c_str(), O_RDONLY | O_CLOEXEC));
  if (!userns) return {};
  std::vector<const std::string*> sources;
  for (const auto& l : spec.image.lower_dirs) sources.push_back(&l);
  for (const auto& d : spec.image.host_dirs) sources.push_back(&d.host_path);
  for (const auto& b : spec.read_only_binds) sources.push_back(&b.host_path);
  for (const std::string* src : sources) {
    UniqueFd tree(static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, src->c_str(),
                                             OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)));
    mount_attr attr;
    std::memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    attr.userns_fd = static_cast<uint64_t>(userns.get());
    if (!tree || ::syscall(SYS_mount_setattr, tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr,
                           sizeof attr) != 0) {
      if (!warned.exchange(true))
        log::Warn("idmapped mount of {} failed ({}); image files will appear as nobody", *src,
                  std::strerror(errno));
      return {};
    }
    fds.push_back(std::move(tree));
  }
  return fds;
}

Status SendGo(int sock, const std::vector<UniqueFd>& fds) {
  GoMsg go;
  go.idmapped = fds.empty() ? 0 : 1;
  go.nfds = static_cast<uint8_t>(fds.size());
  iovec iov{&go, sizeof go};
  msghdr msg;
  std::memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * internal::kMaxIdmapFds)];
  if (!fds.empty()) {
    msg.msg_control = cbuf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    int* out = reinterpret_cast<int*>(CMSG_DATA(c));
    for (size_t i = 0; i < fds.size(); ++i) out[i] = fds[i].get();
  }
  if (::sendmsg(sock, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof go)) return SysError("send go");
  return OkStatus();
}

// Reads the child's reports until exec closes the socket.
Status AwaitExec(int sock) {
  bool ready = false;
  auto deadline = Clock::now() + kChildTimeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return MakeError(ErrorCode::kTimeout, "sandbox set-up timed out");
    pollfd pf{sock, POLLIN, 0};
    int n = ::poll(&pf, 1, static_cast<int>(left.count()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysError("poll sync socket");
    }
    if (n == 0) continue;
    ChildMsg m;
    ssize_t r = ::recv(sock, &m, sizeof m, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return SysError("recv sync socket");
    }
    if (r == 0) {
      if (ready) return OkStatus();
      return MakeError(ErrorCode::kInternal, "sandbox init died during set-up");
    }
    if (r != static_cast<ssize_t>(sizeof m)) return MakeError(ErrorCode::kInternal, "short message from child");
    if (m.kind == ChildMsg::kReady) {
      ready = true;
      continue;
    }
    m.step[sizeof m.step - 1] = '\0';
    Error e = SysError(std::string("sandbox set-up failed at: ") + m.step, m.err);
    return std::move(e).With("step", m.step);
  }
}

// The child's stack (it shares our memory until exec), with a guard page.
// Outlives the child's use of it: Launch returns only after the child has
// exec'd (and left our address space) or been killed and reaped.
class ChildStack {
 public:
  static Result<ChildStack> Make() {
    void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE,
                     -1, 0);
    if (p == MAP_FAILED) return SysError("mmap child stack");
    ChildStack s;
    s.base_ = static_cast<char*>(p);
    if (::mprotect(s.base_, kGuard, PROT_NONE) != 0) return SysError("mprotect guard page");
    return s;
  }
  ChildStack(ChildStack&& o) noexcept : base_(std::exchange(o.base_, nullptr)) {}
  ChildStack& operator=(ChildStack&&) = delete;
  ~ChildStack() {
    if (base_) ::munmap(base_, kSize);
  }
  void* top() const { return base_ + kSize; }

 private:
  ChildStack() = default;
  static constexpr size_t kSize = 256 << 10, kGuard = 4096;
  char* base_ = nullptr;
};

}  // namespace

Result<Launched> Launch(const SandboxSpec& spec, const std::vector<int>& pass_fds,
                        const LaunchOptions& options) {
  const auto t0 = Clock::now();
  COVE_TRY(ValidateSpec(spec));
  if (pass_fds.size() > static_cast<size_t>(internal::kMaxPassFds))
    return MakeError(ErrorCode::kInvalidArgument, "too many fds to pass");
  COVE_TRY(MkdirOurs(spec.sandbox_dir + "/root"));
  COVE_TRY(MkdirOurs(spec.sandbox_dir + "/lower"));
  for (size_t i = 0; i < spec.image.lower_dirs.size(); ++i) COVE_TRY(MkdirOurs(LowerStage(spec, i)));
  if (options.volatile_upper) {
    // overlayfs leaves work/work/incompat/volatile behind and refuses to mount
    // the layer again while it exists. Removing it accepts that writes from
    // the last moments before a host crash may be lost (see launcher.h).
    COVE_TRY(sys::RemoveTree(spec.sandbox_dir + "/work/work/incompat"));
  }
  COVE_TRY(MakeHostDirLayers(spec, options.volatile_upper));
  COVE_ASSIGN_OR_RETURN(ChildPlan plan, BuildPlan(spec, pass_fds, options.volatile_upper));

  UniqueFd agent_fd;
  if (!spec.agent_path.empty()) {
    agent_fd.Reset(::open(spec.agent_path.c_str(), O_PATH | O_CLOEXEC));
    if (!agent_fd) return SysError("open agent " + spec.agent_path);
  }
  UniqueFd null_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null_fd) return SysError("open /dev/null");
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return SysError("socketpair");
  UniqueFd parent_sock(sv[0]), child_sock(sv[1]);
  plan.sync_fd = child_sock.get();
  plan.parent_sync_fd = parent_sock.get();
  plan.agent_fd = agent_fd.get();
  plan.null_fd = null_fd.get();

  COVE_ASSIGN_OR_RETURN(ChildStack stack, ChildStack::Make());
  // A pooled network namespace is joined by this thread for the clone only
  // (setns(CLONE_NEWNET) is per thread), so the child is born inside it.
  UniqueFd saved_netns;
  if (spec.netns_fd >= 0) {
    saved_netns.Reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!saved_netns) return SysError("open own netns");
    if (::setns(spec.netns_fd, CLONE_NEWNET) != 0) return SysError("setns to sandbox netns");
  }
  int flags = CLONE_VM | CLONE_PIDFD | CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC |
              SIGCHLD;
  if (spec.netns_fd < 0) flags |= CLONE_NEWNET;
  int pidfd = -1;
  const auto t1 = Clock::now();
  // CLONE_VM: the child runs on its own stack in our address space until it
  // execs, so no page tables are copied however large coved is (a fork of a
  // big multi-threaded process costs milliseconds, and copy-on-write faults
  // afterwards). Hence clone(2), which takes the child's entry point and
  // stack, rather than clone3 and CLONE_INTO_CGROUP.
  pid_t rc = ::clone(internal::ChildMain, stack.top(), flags, &plan, &pidfd);
  int clone_errno = errno;
  const auto t2 = Clock::now();
  if (saved_netns && ::setns(saved_netns.get(), CLONE_NEWNET) != 0) {
    // This thread is stuck in the sandbox's namespace: a bug we must not hide.
    log::Error("cannot restore network namespace of launching thread: {}", std::strerror(errno));
  }
  if (rc < 0) return SysError("clone", clone_errno);

  Launched out;
  out.pid = static_cast<pid_t>(rc);
  out.pidfd.Reset(pidfd);
  child_sock.Reset();
  ScopeExit kill_child([&] {
    (void)sys::PidfdSignal(out.pidfd.get(), SIGKILL);
    siginfo_t si;
    while (::waitid(P_PIDFD, static_cast<id_t>(out.pidfd.get()), &si, WEXITED) != 0 && errno == EINTR) {
    }
  });
  if (saved_netns && ::setns(saved_netns.get(), CLONE_NEWNET) != 0)
    return SysError("restore network namespace of launching thread");

  COVE_ASSIGN_OR_RETURN(sys::ProcStat stat, sys::ReadProcStat(out.pid));
  out.start_time_ticks = stat.start_time_ticks;
  const std::string proc = "/proc/" + std::to_string(out.pid);
  const std::string map = IdMapLine(spec.host_id_base);
  COVE_TRY(WriteProcFile(proc + "/uid_map", map));
  COVE_TRY(WriteProcFile(proc + "/gid_map", map));
  if (options.cgroup) COVE_TRY(options.cgroup->Attach(out.pid));
  // RLIMIT_NOFILE 65536, capped at our own hard limit: raising it needs
  // CAP_SYS_RESOURCE, which some hosts (containers) do not give even to root.
  rlimit own{};
  ::getrlimit(RLIMIT_NOFILE, &own);
  rlim_t n = std::min<rlim_t>(kNoFile, own.rlim_max);
  rlimit nofile{n, n};
  if (::prlimit(out.pid, RLIMIT_NOFILE, &nofile, nullptr) != 0) return SysError("prlimit NOFILE");
  std::vector<UniqueFd> idmapped;
  if (options.idmap_image) idmapped = MakeIdmappedMounts(out.pid, spec);
  const bool used_idmap = !idmapped.empty();
  COVE_TRY(SendGo(parent_sock.get(), idmapped));
  idmapped.clear();
  const auto t3 = Clock::now();
  COVE_TRY(AwaitExec(parent_sock.get()));
  const auto t4 = Clock::now();
  kill_child.Release();
  if (options.timings) {
    options.timings->prepare_us = Us(t0, t1);
    options.timings->clone_us = Us(t1, t2);
    options.timings->parent_us = Us(t2, t3);
    options.timings->child_us = Us(t3, t4);
    options.timings->total_us = Us(t0, t4);
    options.timings->idmapped = used_idmap;
  }
  return out;
}

}  // namespace cove::isolation
