#include "isolation/child_setup.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "isolation/capabilities.h"

// Everything in this file runs in the child between clone3 and exec: only
// system calls and code that neither allocates nor takes libc locks. The
// credential calls use raw syscalls on purpose: glibc's setgroups/setres[ug]id
// broadcast to all threads it believes exist, which would hang here.

namespace cove::isolation::internal {

namespace {

[[noreturn]] void Die(const ChildPlan& p, const char* step, int err) {
  ChildMsg m;
  m.kind = ChildMsg::kError;
  m.err = err;
  size_t i = 0;
  for (; step[i] != '\0' && i + 1 < sizeof m.step; ++i) m.step[i] = step[i];
  m.step[i] = '\0';
  ::send(p.sync_fd, &m, sizeof m, MSG_NOSIGNAL);
  ::_exit(127);
}

#define CHECK_OR_DIE(expr, step)          \
  do {                                    \
    if ((expr) < 0) Die(p, step, errno);  \
  } while (0)

int Openat2(int dirfd, const char* path, uint64_t flags, uint64_t resolve) {
  open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = flags;
  how.resolve = resolve;
  return static_cast<int>(::syscall(SYS_openat2, dirfd, path, &how, sizeof how));
}

// Moves fd to a number >= floor (close-on-exec). Returns the new fd or -1.
int Lift(int fd, int floor) {
  if (fd < 0) return fd;
  return ::fcntl(fd, F_DUPFD_CLOEXEC, floor);
}

// Opens (creating as needed) `rel` below root_fd, resolving symlinks as if
// root_fd were "/". The last component is a directory or, if !dir, a file.
int OpenTargetInRoot(int root_fd, const char* rel, bool dir) {
  char buf[1024];
  size_t len = std::strlen(rel);
  if (len >= sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  const uint64_t resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  size_t pos = 0;
  for (;;) {
    size_t end = pos;
    while (end < len && rel[end] != '/') ++end;
    bool last = end >= len;
    std::memcpy(buf, rel, end);
    buf[end] = '\0';
    int fd = Openat2(root_fd, buf, O_PATH | O_CLOEXEC, resolve);
    if (fd < 0 && errno == ENOENT) {
      // Create this component inside its (already resolved) parent.
      int parent = root_fd;
      if (pos > 0) {
        buf[pos - 1] = '\0';
        parent = Openat2(root_fd, buf, O_PATH | O_DIRECTORY | O_CLOEXEC, resolve);
        if (parent < 0) return -1;
        buf[pos - 1] = '/';
      }
      const char* name = rel + pos;
      char comp[256];
      size_t clen = end - pos;
      if (clen >= sizeof comp) {
        errno = ENAMETOOLONG;
        return -1;
      }
      std::memcpy(comp, name, clen);
      comp[clen] = '\0';
      int rc;
      if (last && !dir) {
        int f = ::openat(parent, comp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
        rc = f < 0 ? -1 : 0;
        if (f >= 0) ::close(f);
      } else {
        rc = ::mkdirat(parent, comp, 0755);
      }
      int saved = errno;
      if (parent != root_fd) ::close(parent);
      if (rc < 0 && saved != EEXIST) {
        errno = saved;
        return -1;
      }
      fd = Openat2(root_fd, buf, O_PATH | O_CLOEXEC, resolve);
    }
    if (fd < 0) return -1;
    if (last) return fd;
    ::close(fd);
    pos = end + 1;
  }
}

// Opens root/<name> as a real directory (no symlink anywhere), creating it.
int OpenPlainDir(int root_fd, const char* name) {
  const uint64_t resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV;
  int fd = Openat2(root_fd, name, O_PATH | O_DIRECTORY | O_CLOEXEC, resolve);
  if (fd < 0 && errno == ENOENT) {
    if (::mkdirat(root_fd, name, 0755) != 0 && errno != EEXIST) return -1;
    fd = Openat2(root_fd, name, O_PATH | O_DIRECTORY | O_CLOEXEC, resolve);
  }
  return fd;
}

void ResetSignals() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < 65; ++sig) ::sigaction(sig, &sa, nullptr);  // EINVAL for some: fine
  sigset_t none;
  sigemptyset(&none);
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, 8);
}

void BindMountsAndProc(const ChildPlan& p, int root_fd, const int* idmap_fds, bool idmapped) {
  // Image binds (/usr etc.), read-only, nosuid, nodev.
  for (size_t i = 0; i < p.binds.size(); ++i) {
    const ChildBind& b = p.binds[i];
    int target = OpenTargetInRoot(root_fd, b.rel_target.c_str(), b.is_dir);
    if (target < 0) Die(p, "bind target", errno);
    int tree = idmapped ? idmap_fds[1 + i] : -1;
    if (tree < 0) {
      tree = static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, b.host_path.c_str(),
                                        OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
      if (tree < 0) Die(p, "open_tree bind source", errno);
      mount_attr attr;
      std::memset(&attr, 0, sizeof attr);
      attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
      CHECK_OR_DIE(::syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr),
                   "bind read-only");
    }
    CHECK_OR_DIE(::syscall(SYS_move_mount, tree, "", target, "",
                           MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH),
                 "move bind into root");
    ::close(tree);
    ::close(target);
  }

  // Fresh /proc for the new pid namespace, with Docker's masks.
  int proc = OpenPlainDir(root_fd, "proc");
  if (proc < 0) Die(p, "mkdir /proc", errno);
  ::close(proc);
  CHECK_OR_DIE(::mount("proc", p.proc_dir.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr),
               "mount /proc");
  for (const std::string& f : p.proc_masked_files)
    if (::mount("/dev/null", f.c_str(), nullptr, MS_BIND, nullptr) != 0 && errno != ENOENT)
      Die(p, "mask /proc file", errno);
  for (const std::string& d : p.proc_masked_dirs)
    if (::mount("tmpfs", d.c_str(), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0") != 0 &&
        errno != ENOENT)
      Die(p, "mask /proc dir", errno);
  for (const std::string& r : p.proc_readonly) {
    if (::mount(r.c_str(), r.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      if (errno == ENOENT) continue;
      Die(p, "bind /proc read-only path", errno);
    }
    mount_attr attr;
    std::memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    CHECK_OR_DIE(::syscall(SYS_mount_setattr, AT_FDCWD, r.c_str(), AT_RECURSIVE, &attr, sizeof attr),
                 "remount /proc path read-only");
  }
}

void MountDev(const ChildPlan& p, int root_fd) {
  int dev = OpenPlainDir(root_fd, "dev");
  if (dev < 0) Die(p, "mkdir /dev", errno);
  ::close(dev);
  CHECK_OR_DIE(::mount("tmpfs", p.dev_dir.c_str(), "tmpfs", MS_NOSUID | MS_NOEXEC,
                       "mode=755,size=65536k,nr_inodes=4096"),
               "mount /dev tmpfs");
  for (const auto& [host, file] : p.dev_nodes) {
    int f = ::open(file.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (f < 0) Die(p, "create /dev node file", errno);
    ::close(f);
    CHECK_OR_DIE(::mount(host.c_str(), file.c_str(), nullptr, MS_BIND, nullptr), "bind /dev node");
  }
  CHECK_OR_DIE(::mkdir(p.dev_pts.c_str(), 0755), "mkdir /dev/pts");
  CHECK_OR_DIE(::mount("devpts", p.dev_pts.c_str(), "devpts", MS_NOSUID | MS_NOEXEC,
                       "newinstance,ptmxmode=0666,mode=620,gid=5"),
               "mount devpts");
  CHECK_OR_DIE(::mkdir(p.dev_shm.c_str(), 01777), "mkdir /dev/shm");
  CHECK_OR_DIE(::mount("shm", p.dev_shm.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777"),
               "mount /dev/shm");
  CHECK_OR_DIE(::symlink("pts/ptmx", p.dev_ptmx.c_str()), "symlink /dev/ptmx");
  CHECK_OR_DIE(::symlink("/proc/self/fd", p.dev_fd.c_str()), "symlink /dev/fd");
  CHECK_OR_DIE(::symlink("/proc/self/fd/0", p.dev_stdin.c_str()), "symlink /dev/stdin");
  CHECK_OR_DIE(::symlink("/proc/self/fd/1", p.dev_stdout.c_str()), "symlink /dev/stdout");
  CHECK_OR_DIE(::symlink("/proc/self/fd/2", p.dev_stderr.c_str()), "symlink /dev/stderr");
}

void MountSys(const ChildPlan& p, int root_fd) {
  int sys = OpenPlainDir(root_fd, "sys");
  if (sys < 0) Die(p, "mkdir /sys", errno);
  ::close(sys);
  // sysfs needs a network namespace owned by our user namespace; with a
  // pooled (host-owned) one it is refused, and /sys stays an empty directory.
  if (::mount("sysfs", p.sys_dir.c_str(), "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              nullptr) == 0) {
    if (::mount("tmpfs", p.sys_firmware.c_str(), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                "size=0") != 0 && errno != ENOENT)
      Die(p, "mask /sys/firmware", errno);
  }
}

void LoopbackUp(const ChildPlan& p) {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) Die(p, "socket for loopback", errno);
  ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  std::memcpy(ifr.ifr_name, "lo", 3);
  CHECK_OR_DIE(::ioctl(s, SIOCGIFFLAGS, &ifr), "get lo flags");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  CHECK_OR_DIE(::ioctl(s, SIOCSIFFLAGS, &ifr), "bring lo up");
  ::close(s);
}

}  // namespace

void RunChild(ChildPlan& p) {
  ResetSignals();
  ::close(p.parent_sync_fd);
  // A session of its own, away from the launcher's terminal and process group
  // (cove-jail keeps them so that an interactive command has its terminal).
  if (!p.inherit_stdio) ::setsid();
  if (p.die_with_parent) ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);

  // 1. File descriptors: lift everything we need above the range 3..3+n.
  const int npass = static_cast<int>(p.pass_fds.size());
  const int floor = 3 + npass;
  int sync_fd = Lift(p.sync_fd, floor);
  if (sync_fd < 0) ::_exit(127);
  p.sync_fd = sync_fd;  // Die() reports on the lifted socket from here on
  int agent_fd = Lift(p.agent_fd, floor);
  int null_fd = Lift(p.null_fd, floor);
  int lifted[kMaxPassFds];
  for (int i = 0; i < npass; ++i) {
    lifted[i] = Lift(p.pass_fds[i], floor);
    if (lifted[i] < 0) Die(p, "lift passed fd", errno);
  }

  // 2. Wait for the parent: id maps written, cgroups joined, rlimits set.
  GoMsg go;
  int received[1 + kMaxBinds];
  for (int& r : received) r = -1;
  {
    iovec iov{&go, sizeof go};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * (1 + kMaxBinds))];
    msghdr msg;
    std::memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    ssize_t n;
    do n = ::recvmsg(sync_fd, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(sizeof go) || go.go != 1) ::_exit(127);  // parent gave up
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      if (k > 1 + kMaxBinds) k = 1 + kMaxBinds;
      std::memcpy(received, CMSG_DATA(c), k * sizeof(int));
    }
  }
  const bool idmapped = go.idmapped != 0 && go.nfds == 1 + p.binds.size() && received[go.nfds - 1] >= 0;
  for (int& r : received) {
    if (r < 0) continue;
    int l = Lift(r, floor);
    ::close(r);
    r = l;
  }

  // 3. Passed fds to 3.., stdio, and close-on-exec for everything else.
  for (int i = 0; i < npass; ++i) CHECK_OR_DIE(::dup2(lifted[i], 3 + i), "dup2 passed fd");
  if (!p.inherit_stdio)
    for (int s = 0; s < 3; ++s) CHECK_OR_DIE(::dup2(null_fd, s), "dup2 /dev/null");
  CHECK_OR_DIE(::syscall(SYS_close_range, floor, ~0U, CLOSE_RANGE_CLOEXEC), "close_range");

  // 4. Become root of the new user namespace, dropping the host's supplementary groups.
  CHECK_OR_DIE(::syscall(SYS_setgroups, 0, nullptr), "setgroups");
  CHECK_OR_DIE(::syscall(SYS_setresgid, 0, 0, 0), "setresgid");
  CHECK_OR_DIE(::syscall(SYS_setresuid, 0, 0, 0), "setresuid");
  // The parent has put us into the sandbox cgroups: make them our cgroup root.
  CHECK_OR_DIE(::unshare(CLONE_NEWCGROUP), "unshare cgroup namespace");

  // 5. Mount namespace: nothing propagates back to the host.
  CHECK_OR_DIE(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "make / rprivate");
  if (idmapped)
    CHECK_OR_DIE(::syscall(SYS_move_mount, received[0], "", AT_FDCWD, p.lower_stage.c_str(),
                           MOVE_MOUNT_F_EMPTY_PATH),
                 "attach idmapped lower layer");
  CHECK_OR_DIE(::mount("overlay", p.root.c_str(), "overlay", MS_NOSUID | MS_NODEV,
                       idmapped ? p.overlay_opts_idmapped.c_str() : p.overlay_opts.c_str()),
               "mount overlay root");
  int root_fd = ::open(p.root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) Die(p, "open new root", errno);
  BindMountsAndProc(p, root_fd, received, idmapped);
  MountDev(p, root_fd);
  MountSys(p, root_fd);

  // 6. Switch root and drop the host's mount tree.
  CHECK_OR_DIE(::fchdir(root_fd), "chdir new root");
  CHECK_OR_DIE(::syscall(SYS_pivot_root, ".", "."), "pivot_root");
  CHECK_OR_DIE(::umount2(".", MNT_DETACH), "detach old root");
  CHECK_OR_DIE(::chdir("/"), "chdir /");
  ::close(root_fd);

  // 7. Identity and network.
  CHECK_OR_DIE(::sethostname(p.hostname.data(), p.hostname.size()), "sethostname");
  if (p.new_netns) LoopbackUp(p);
  if (::chdir(p.cwd.c_str()) != 0) CHECK_OR_DIE(::chdir("/"), "chdir cwd");

  // 8. Privileges: capabilities, no_new_privs, then seccomp as the very last step.
  if (int err = ApplySandboxCapabilities(); err != 0) Die(p, "capabilities", err);
  CHECK_OR_DIE(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs");
  ChildMsg ready;
  ready.kind = ChildMsg::kReady;
  ::send(sync_fd, &ready, sizeof ready, MSG_NOSIGNAL);
  CHECK_OR_DIE(::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, p.seccomp_personality), "seccomp personality");
  CHECK_OR_DIE(::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, p.seccomp), "seccomp");

  // 9. Exec: the agent through its fd (it need not exist in the image), or a
  //    command looked up inside the sandbox.
  if (agent_fd >= 0) {
    ::syscall(SYS_execveat, agent_fd, "", p.argv.data(), p.envp.data(), AT_EMPTY_PATH);
    Die(p, "execveat agent", errno);
  }
  int err = ENOENT;
  for (const std::string& c : p.exec_candidates) {
    ::execve(c.c_str(), p.argv.data(), p.envp.data());
    if (errno == ENOENT || errno == ENOTDIR) continue;
    err = errno;  // like execvp: remember EACCES but keep looking; stop on anything else
    if (errno != EACCES) break;
  }
  Die(p, "exec command", err);
}

}  // namespace cove::isolation::internal
