#include "isolation/child_setup.h"

#include <fcntl.h>
#include <linux/capability.h>
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

#include <cstring>

#include "isolation/capabilities.h"
#include "isolation/raw_syscall.h"

// Everything in this file runs in the sandbox's first process between clone
// and exec, on its own small stack but in the launcher's address space
// (CLONE_VM): it reads the plan, writes only its own stack, and makes raw
// system calls (no errno, no allocation, no libc locks, no sanitizer runtime).

namespace cove::isolation::internal {

namespace {

struct Ctx {
  const ChildPlan* plan;
  int sync_fd;  // the lifted socket once fds are shuffled
};

[[noreturn]] void Exit(int code) {
  for (;;) Sys(SYS_exit_group, code);
}

[[noreturn]] void Die(const Ctx& c, const char* step, long neg_err) {
  ChildMsg m;
  m.kind = ChildMsg::kError;
  m.err = static_cast<int32_t>(-neg_err);
  size_t i = 0;
  for (; step[i] != '\0' && i + 1 < sizeof m.step; ++i) m.step[i] = step[i];
  m.step[i] = '\0';
  Sys(SYS_sendto, c.sync_fd, &m, sizeof m, MSG_NOSIGNAL, 0, 0);
  Exit(127);
}

// Runs a raw call; on failure reports the step and exits.
#define CHECK(c, step, call)                    \
  do {                                          \
    long cove_rc = (call);                      \
    if (cove_rc < 0) Die(c, step, cove_rc);     \
  } while (0)

long Openat2(int dirfd, const char* path, uint64_t flags, uint64_t resolve) {
  open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = flags;
  how.resolve = resolve;
  return Sys(SYS_openat2, dirfd, path, &how, sizeof how);
}

// Moves fd to a number >= floor (close-on-exec). Returns the new fd or -errno.
long Lift(int fd, int floor) {
  if (fd < 0) return fd;
  return Sys(SYS_fcntl, fd, F_DUPFD_CLOEXEC, floor);
}

// Opens (creating as needed) `rel` below root_fd, resolving symlinks as if
// root_fd were "/". The last component is a directory or, if !dir, a file.
// Returns an O_PATH fd or -errno.
long OpenTargetInRoot(int root_fd, const char* rel, bool dir) {
  char buf[1024];
  size_t len = std::strlen(rel);
  if (len >= sizeof buf) return -ENAMETOOLONG;
  const uint64_t resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  size_t pos = 0;
  for (;;) {
    size_t end = pos;
    while (end < len && rel[end] != '/') ++end;
    bool last = end >= len;
    std::memcpy(buf, rel, end);
    buf[end] = '\0';
    long fd = Openat2(root_fd, buf, O_PATH | O_CLOEXEC, resolve);
    if (fd == -ENOENT) {
      // Create this component inside its (already resolved) parent.
      long parent = root_fd;
      if (pos > 0) {
        buf[pos - 1] = '\0';
        parent = Openat2(root_fd, buf, O_PATH | O_DIRECTORY | O_CLOEXEC, resolve);
        if (parent < 0) return parent;
        buf[pos - 1] = '/';
      }
      char comp[256];
      size_t clen = end - pos;
      if (clen >= sizeof comp) return -ENAMETOOLONG;
      std::memcpy(comp, rel + pos, clen);
      comp[clen] = '\0';
      long rc;
      if (last && !dir) {
        rc = Sys(SYS_openat, parent, comp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (rc >= 0) Sys(SYS_close, rc);
      } else {
        rc = Sys(SYS_mkdirat, parent, comp, 0755);
      }
      if (parent != root_fd) Sys(SYS_close, parent);
      if (rc < 0 && rc != -EEXIST) return rc;
      fd = Openat2(root_fd, buf, O_PATH | O_CLOEXEC, resolve);
    }
    if (fd < 0 || last) return fd;
    Sys(SYS_close, fd);
    pos = end + 1;
  }
}

// Opens root/<name> as a real directory (no symlink anywhere), creating it.
long OpenPlainDir(int root_fd, const char* name) {
  const uint64_t resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV;
  long fd = Openat2(root_fd, name, O_PATH | O_DIRECTORY | O_CLOEXEC, resolve);
  if (fd == -ENOENT) {
    long rc = Sys(SYS_mkdirat, root_fd, name, 0755);
    if (rc < 0 && rc != -EEXIST) return rc;
    fd = Openat2(root_fd, name, O_PATH | O_DIRECTORY | O_CLOEXEC, resolve);
  }
  return fd;
}

// The kernel's struct sigaction for rt_sigaction (no restorer needed for SIG_DFL).
struct KernelSigaction {
  void* handler;
  unsigned long flags;
  void* restorer;
  unsigned long mask;
};

void ResetSignals() {
  KernelSigaction dfl{};  // SIG_DFL == nullptr
  for (int sig = 1; sig <= 64; ++sig) Sys(SYS_rt_sigaction, sig, &dfl, 0, sizeof(unsigned long));
  unsigned long none = 0;
  Sys(SYS_rt_sigprocmask, SIG_SETMASK, &none, 0, sizeof none);
}

void MountReadOnly(const Ctx& c, const char* path, const char* step) {
  mount_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
  CHECK(c, step, Sys(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof attr));
}

void SetOverlayOption(const Ctx& c, int fs, const char* key, const char* value) {
  CHECK(c, "configure host dir overlay",
        Sys(SYS_fsconfig, fs, value ? FSCONFIG_SET_STRING : FSCONFIG_SET_FLAG, key, value, 0));
}

// idmap_fds: the host dirs' idmapped trees, then the binds' (when idmapped).
void HostMountsAndProc(const Ctx& c, int root_fd, const int* idmap_fds, bool idmapped) {
  const ChildPlan& p = *c.plan;
  // Host dirs (/usr etc.): each an overlay whose upper is in the sandbox's
  // layer, mounted through an fd resolved inside the root (a symlink the
  // sandbox left in its layer cannot send it elsewhere).
  for (size_t i = 0; i < p.host_dirs.size(); ++i) {
    const ChildHostDir& d = p.host_dirs[i];
    if (idmapped)
      CHECK(c, "attach idmapped host dir",
            Sys(SYS_move_mount, idmap_fds[i], "", AT_FDCWD, d.lower_stage.c_str(), MOVE_MOUNT_F_EMPTY_PATH));
    long target = OpenTargetInRoot(root_fd, d.rel_target.c_str(), true);
    if (target < 0) Die(c, "host dir target", target);
    long fs = Sys(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
    if (fs < 0) Die(c, "fsopen overlay", fs);
    const int f = static_cast<int>(fs);
    SetOverlayOption(c, f, "lowerdir", idmapped ? d.lower_stage.c_str() : d.host_path.c_str());
    SetOverlayOption(c, f, "upperdir", d.upper.c_str());
    SetOverlayOption(c, f, "workdir", d.work.c_str());
    SetOverlayOption(c, f, "userxattr", nullptr);
    if (p.volatile_upper) SetOverlayOption(c, f, "volatile", nullptr);
    CHECK(c, "create host dir overlay", Sys(SYS_fsconfig, f, FSCONFIG_CMD_CREATE, 0, 0, 0));
    long mnt = Sys(SYS_fsmount, f, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    if (mnt < 0) Die(c, "fsmount host dir overlay", mnt);
    CHECK(c, "move host dir into root",
          Sys(SYS_move_mount, mnt, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH));
    Sys(SYS_close, mnt);
    Sys(SYS_close, fs);
    Sys(SYS_close, target);
  }
  // Read-only binds (cove's own files), nosuid, nodev.
  for (size_t i = 0; i < p.binds.size(); ++i) {
    const ChildBind& b = p.binds[i];
    long target = OpenTargetInRoot(root_fd, b.rel_target.c_str(), true);
    if (target < 0) Die(c, "bind target", target);
    long tree = idmapped ? idmap_fds[p.host_dirs.size() + i] : -1;
    if (tree < 0) {
      tree = Sys(SYS_open_tree, AT_FDCWD, b.host_path.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
      if (tree < 0) Die(c, "open_tree bind source", tree);
      mount_attr attr;
      std::memset(&attr, 0, sizeof attr);
      attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
      CHECK(c, "bind read-only", Sys(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr));
    }
    CHECK(c, "move bind into root",
          Sys(SYS_move_mount, tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH));
    Sys(SYS_close, tree);
    Sys(SYS_close, target);
  }

  // Fresh /proc for the new pid namespace, with Docker's masks.
  long proc = OpenPlainDir(root_fd, "proc");
  if (proc < 0) Die(c, "mkdir /proc", proc);
  Sys(SYS_close, proc);
  CHECK(c, "mount /proc", Sys(SYS_mount, "proc", p.proc_dir.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, 0));
  for (const std::string& f : p.proc_masked_files) {
    long rc = Sys(SYS_mount, "/dev/null", f.c_str(), 0, MS_BIND, 0);
    if (rc < 0 && rc != -ENOENT) Die(c, "mask /proc file", rc);
  }
  for (const std::string& d : p.proc_masked_dirs) {
    long rc = Sys(SYS_mount, "tmpfs", d.c_str(), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0");
    if (rc < 0 && rc != -ENOENT) Die(c, "mask /proc dir", rc);
  }
  for (const std::string& r : p.proc_readonly) {
    long rc = Sys(SYS_mount, r.c_str(), r.c_str(), 0, MS_BIND | MS_REC, 0);
    if (rc == -ENOENT) continue;
    if (rc < 0) Die(c, "bind /proc read-only path", rc);
    MountReadOnly(c, r.c_str(), "remount /proc path read-only");
  }
}

void MountDev(const Ctx& c, int root_fd) {
  const ChildPlan& p = *c.plan;
  long dev = OpenPlainDir(root_fd, "dev");
  if (dev < 0) Die(c, "mkdir /dev", dev);
  Sys(SYS_close, dev);
  CHECK(c, "mount /dev tmpfs",
        Sys(SYS_mount, "tmpfs", p.dev_dir.c_str(), "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k,nr_inodes=4096"));
  for (const auto& [host, file] : p.dev_nodes) {
    long f = Sys(SYS_openat, AT_FDCWD, file.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (f < 0) Die(c, "create /dev node file", f);
    Sys(SYS_close, f);
    CHECK(c, "bind /dev node", Sys(SYS_mount, host.c_str(), file.c_str(), 0, MS_BIND, 0));
  }
  CHECK(c, "mkdir /dev/pts", Sys(SYS_mkdirat, AT_FDCWD, p.dev_pts.c_str(), 0755));
  CHECK(c, "mount devpts", Sys(SYS_mount, "devpts", p.dev_pts.c_str(), "devpts", MS_NOSUID | MS_NOEXEC,
                               "newinstance,ptmxmode=0666,mode=620,gid=5"));
  CHECK(c, "mkdir /dev/shm", Sys(SYS_mkdirat, AT_FDCWD, p.dev_shm.c_str(), 01777));
  CHECK(c, "mount /dev/shm",
        Sys(SYS_mount, "shm", p.dev_shm.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777"));
  CHECK(c, "symlink /dev/ptmx", Sys(SYS_symlinkat, "pts/ptmx", AT_FDCWD, p.dev_ptmx.c_str()));
  CHECK(c, "symlink /dev/fd", Sys(SYS_symlinkat, "/proc/self/fd", AT_FDCWD, p.dev_fd.c_str()));
  CHECK(c, "symlink /dev/stdin", Sys(SYS_symlinkat, "/proc/self/fd/0", AT_FDCWD, p.dev_stdin.c_str()));
  CHECK(c, "symlink /dev/stdout", Sys(SYS_symlinkat, "/proc/self/fd/1", AT_FDCWD, p.dev_stdout.c_str()));
  CHECK(c, "symlink /dev/stderr", Sys(SYS_symlinkat, "/proc/self/fd/2", AT_FDCWD, p.dev_stderr.c_str()));
}

void MountSys(const Ctx& c, int root_fd) {
  const ChildPlan& p = *c.plan;
  long sys = OpenPlainDir(root_fd, "sys");
  if (sys < 0) Die(c, "mkdir /sys", sys);
  Sys(SYS_close, sys);
  // sysfs needs a network namespace owned by our user namespace; with a
  // pooled (host-owned) one it is refused, and /sys stays an empty directory.
  if (Sys(SYS_mount, "sysfs", p.sys_dir.c_str(), "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, 0) == 0) {
    long rc = Sys(SYS_mount, "tmpfs", p.sys_firmware.c_str(), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "size=0");
    if (rc < 0 && rc != -ENOENT) Die(c, "mask /sys/firmware", rc);
  }
}

void LoopbackUp(const Ctx& c) {
  long s = Sys(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) Die(c, "socket for loopback", s);
  ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  std::memcpy(ifr.ifr_name, "lo", 3);
  CHECK(c, "get lo flags", Sys(SYS_ioctl, s, SIOCGIFFLAGS, &ifr));
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  CHECK(c, "bring lo up", Sys(SYS_ioctl, s, SIOCSIFFLAGS, &ifr));
  Sys(SYS_close, s);
}

// Bounding set, ambient and inheritable cleared, permitted = effective = the sandbox's set.
void Capabilities(const Ctx& c) {
  const uint64_t keep = SandboxCapMask();
  for (int cap = 0; cap < 64; ++cap) {
    if (keep & (uint64_t{1} << cap)) continue;
    long rc = Sys(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0);
    if (rc < 0 && rc != -EINVAL) Die(c, "drop bounding capability", rc);
  }
  long rc = Sys(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (rc < 0 && rc != -EINVAL) Die(c, "clear ambient capabilities", rc);
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  data[0].effective = data[0].permitted = static_cast<uint32_t>(keep);
  data[1].effective = data[1].permitted = static_cast<uint32_t>(keep >> 32);
  CHECK(c, "capset", Sys(SYS_capset, &hdr, data));
}

[[noreturn]] void Run(const ChildPlan& p) {
  Ctx c{&p, p.sync_fd};
  ResetSignals();
  Sys(SYS_close, p.parent_sync_fd);
  // A session of its own, away from the launcher's terminal and process group
  // (cove-jail keeps them so that an interactive command has its terminal).
  if (!p.inherit_stdio) Sys(SYS_setsid);
  if (p.die_with_parent) Sys(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);

  // 1. File descriptors: lift everything we need above the range 3..3+n.
  const int npass = static_cast<int>(p.pass_fds.size());
  const int floor = 3 + npass;
  long sync_fd = Lift(p.sync_fd, floor);
  if (sync_fd < 0) Exit(127);
  c.sync_fd = static_cast<int>(sync_fd);
  long agent_fd = Lift(p.agent_fd, floor);
  long null_fd = Lift(p.null_fd, floor);
  if (agent_fd < -1 || null_fd < 0) Die(c, "lift fds", agent_fd < -1 ? agent_fd : null_fd);
  int lifted[kMaxPassFds];
  for (int i = 0; i < npass; ++i) {
    long l = Lift(p.pass_fds[i], floor);
    if (l < 0) Die(c, "lift passed fd", l);
    lifted[i] = static_cast<int>(l);
  }

  // 2. Wait for the parent: id maps written, cgroups joined, rlimits set.
  GoMsg go;
  int received[kMaxIdmapFds];
  for (int& r : received) r = -1;
  {
    iovec iov{&go, sizeof go};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxIdmapFds)];
    msghdr msg;
    std::memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    long n;
    do n = Sys(SYS_recvmsg, c.sync_fd, &msg, MSG_CMSG_CLOEXEC);
    while (n == -EINTR);
    if (n != static_cast<long>(sizeof go) || go.go != 1) Exit(127);  // the parent gave up
    for (cmsghdr* h = CMSG_FIRSTHDR(&msg); h != nullptr; h = CMSG_NXTHDR(&msg, h)) {
      if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      if (k > kMaxIdmapFds) k = kMaxIdmapFds;
      std::memcpy(received, CMSG_DATA(h), k * sizeof(int));
    }
  }
  const size_t nlowers = p.lower_stages.size();
  const bool idmapped = go.idmapped != 0 && go.nfds == nlowers + p.host_dirs.size() + p.binds.size() &&
                        received[go.nfds - 1] >= 0;
  for (int& r : received) {
    if (r < 0) continue;
    long l = Lift(r, floor);
    Sys(SYS_close, r);
    r = static_cast<int>(l);
  }

  // 3. Passed fds to 3.., stdio, and close-on-exec for everything else.
  for (int i = 0; i < npass; ++i) CHECK(c, "dup2 passed fd", Sys(SYS_dup2, lifted[i], 3 + i));
  if (!p.inherit_stdio)
    for (int s = 0; s < 3; ++s) CHECK(c, "dup2 /dev/null", Sys(SYS_dup2, null_fd, s));
  CHECK(c, "close_range", Sys(SYS_close_range, floor, ~0U, CLOSE_RANGE_CLOEXEC));

  // 4. Become root of the new user namespace, dropping the host's supplementary groups.
  CHECK(c, "setgroups", Sys(SYS_setgroups, 0, 0));
  CHECK(c, "setresgid", Sys(SYS_setresgid, 0, 0, 0));
  CHECK(c, "setresuid", Sys(SYS_setresuid, 0, 0, 0));
  // The parent has put us into the sandbox cgroups: make them our cgroup root.
  CHECK(c, "unshare cgroup namespace", Sys(SYS_unshare, CLONE_NEWCGROUP));

  // 5. Mount namespace: nothing propagates back to the host.
  CHECK(c, "make / rprivate", Sys(SYS_mount, 0, "/", 0, MS_REC | MS_PRIVATE, 0));
  for (size_t i = 0; idmapped && i < nlowers; ++i)
    CHECK(c, "attach idmapped lower layer",
          Sys(SYS_move_mount, received[i], "", AT_FDCWD, p.lower_stages[i].c_str(), MOVE_MOUNT_F_EMPTY_PATH));
  CHECK(c, "mount overlay root",
        Sys(SYS_mount, "overlay", p.root.c_str(), "overlay", MS_NOSUID | MS_NODEV,
            idmapped ? p.overlay_opts_idmapped.c_str() : p.overlay_opts.c_str()));
  long root_fd = Sys(SYS_openat, AT_FDCWD, p.root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) Die(c, "open new root", root_fd);
  HostMountsAndProc(c, static_cast<int>(root_fd), received + nlowers, idmapped);
  MountDev(c, static_cast<int>(root_fd));
  MountSys(c, static_cast<int>(root_fd));

  // 6. Switch root and drop the host's mount tree.
  CHECK(c, "chdir new root", Sys(SYS_fchdir, root_fd));
  CHECK(c, "pivot_root", Sys(SYS_pivot_root, ".", "."));
  CHECK(c, "detach old root", Sys(SYS_umount2, ".", MNT_DETACH));
  CHECK(c, "chdir /", Sys(SYS_chdir, "/"));
  Sys(SYS_close, root_fd);

  // 7. Identity and network.
  CHECK(c, "sethostname", Sys(SYS_sethostname, p.hostname.data(), p.hostname.size()));
  if (p.new_netns) LoopbackUp(c);
  if (Sys(SYS_chdir, p.cwd.c_str()) < 0) CHECK(c, "chdir cwd", Sys(SYS_chdir, "/"));

  // 8. Privileges: capabilities, no_new_privs, then seccomp as the very last step.
  Capabilities(c);
  CHECK(c, "no_new_privs", Sys(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
  ChildMsg ready;
  ready.kind = ChildMsg::kReady;
  Sys(SYS_sendto, c.sync_fd, &ready, sizeof ready, MSG_NOSIGNAL, 0, 0);
  CHECK(c, "seccomp personality", Sys(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, p.seccomp_personality));
  CHECK(c, "seccomp", Sys(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, p.seccomp));

  // 9. Exec: the agent through its fd (it need not exist in the image), or a
  //    command looked up inside the sandbox.
  if (agent_fd >= 0) {
    long rc = Sys(SYS_execveat, agent_fd, "", p.argv.data(), p.envp.data(), AT_EMPTY_PATH);
    Die(c, "execveat agent", rc);
  }
  long err = -ENOENT;
  for (const std::string& cand : p.exec_candidates) {
    long rc = Sys(SYS_execve, cand.c_str(), p.argv.data(), p.envp.data());
    if (rc == -ENOENT || rc == -ENOTDIR) continue;
    err = rc;  // like execvp: remember EACCES but keep looking; stop on anything else
    if (rc != -EACCES) break;
  }
  Die(c, "exec command", err);
}

}  // namespace

int ChildMain(void* plan) { Run(*static_cast<const ChildPlan*>(plan)); }

}  // namespace cove::isolation::internal
