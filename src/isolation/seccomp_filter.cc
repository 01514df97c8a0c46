#include "isolation/seccomp_filter.h"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/syscall.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <mutex>
#include <vector>

#include "sys/io.h"
#include "sys/unique_fd.h"

namespace cove::isolation {

namespace {

// Calls that fail with EPERM unconditionally.
constexpr const char* kDenied[] = {
    // kernel modules and replacing the kernel
    "init_module", "finit_module", "delete_module", "create_module", "get_kernel_syms",
    "query_module", "kexec_load", "kexec_file_load",
    // kernel programmability and introspection
    "bpf", "perf_event_open", "lookup_dcookie", "syslog", "kcmp",
    // keyrings are not namespaced
    "keyctl", "add_key", "request_key",
    // every way to change the mount table
    "mount", "umount", "umount2", "pivot_root", "fsopen", "fsmount", "move_mount", "open_tree",
    "fsconfig", "fspick", "mount_setattr",
    // host-wide state
    "reboot", "swapon", "swapoff", "iopl", "ioperm", "acct", "settimeofday", "stime",
    "clock_settime", "adjtimex", "clock_adjtime", "quotactl", "quotactl_fd", "nfsservctl",
    "vhangup", "sysfs", "_sysctl", "ustat", "uselib", "vm86", "vm86old",
    // namespaces: joining is never allowed (creation is filtered by flags below)
    "setns",
    // handle-based opens bypass the mount-namespace view
    "name_to_handle_at", "open_by_handle_at",
    // large, frequently exploited kernel surfaces
    "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "fanotify_init", "lsm_set_self_attr",
};

constexpr uint64_t kNamespaceFlags[] = {
    CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWUTS,
    CLONE_NEWIPC, CLONE_NEWCGROUP, 0x00000080 /* CLONE_NEWTIME */};

struct Program {
  std::vector<sock_filter> insns;
  sock_fprog prog{};
  std::vector<sock_filter> personality_insns;
  sock_fprog personality_prog{};
  SeccompPrograms both;
  Error error;
  bool ok = false;
};

// personality(2) may only be called with the values Docker allows (PER_LINUX,
// PER_LINUX32, their UNAME26 variants, and the query 0xffffffff). libseccomp
// 2.5 allows one comparison per argument per rule, so this check is a second,
// hand-written filter; the kernel applies the stricter result of both.
std::vector<sock_filter> PersonalityFilter() {
  constexpr uint32_t kAllow = SECCOMP_RET_ALLOW;
  constexpr uint32_t kDeny = SECCOMP_RET_ERRNO | EPERM;
  return {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, kAllow),  // other arches: the main filter kills
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_personality, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, kAllow),
      // The kernel takes the argument as unsigned int: the low word decides.
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x0, 5, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x8, 4, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x20000, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x20008, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xffffffff, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, kDeny),
      BPF_STMT(BPF_RET | BPF_K, kAllow),
  };
}

Status Add(scmp_filter_ctx ctx, uint32_t action, const char* name, unsigned n = 0,
           const scmp_arg_cmp* args = nullptr) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) return OkStatus();  // unknown on this arch (e.g. vm86 on x86_64)
  int rc = seccomp_rule_add_array(ctx, action, nr, n, args);
  if (rc < 0) return SysError(std::string("seccomp_rule_add ") + name, -rc);
  return OkStatus();
}

Status Build(Program* p) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) return MakeError(ErrorCode::kInternal, "seccomp_init failed");
  struct Release { scmp_filter_ctx c; ~Release() { seccomp_release(c); } } release{ctx};
  // Any non-native architecture (i386 via int 0x80, x32 syscall numbers) kills the process.
  if (int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc < 0)
    return SysError("seccomp badarch", -rc);
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  for (const char* name : kDenied) COVE_TRY(Add(ctx, eperm, name));

  // unshare(2) and clone(2) with any namespace flag; clone3 has its flags in
  // memory that seccomp cannot read, so it reports ENOSYS and libc falls back to clone.
  for (uint64_t f : kNamespaceFlags) {
    scmp_arg_cmp a = SCMP_A0_64(SCMP_CMP_MASKED_EQ, f, f);
    COVE_TRY(Add(ctx, eperm, "unshare", 1, &a));
    COVE_TRY(Add(ctx, eperm, "clone", 1, &a));
  }
  COVE_TRY(Add(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3"));

  // Terminal input injection into a shared tty.
  for (uint64_t req : {uint64_t{TIOCSTI}, uint64_t{TIOCLINUX}}) {
    scmp_arg_cmp a = SCMP_A1_64(SCMP_CMP_EQ, req);
    COVE_TRY(Add(ctx, eperm, "ioctl", 1, &a));
  }

  UniqueFd mem(::memfd_create("cove-seccomp", MFD_CLOEXEC));
  if (!mem) return SysError("memfd_create");
  if (int rc = seccomp_export_bpf(ctx, mem.get()); rc < 0) return SysError("seccomp_export_bpf", -rc);
  if (::lseek(mem.get(), 0, SEEK_SET) != 0) return SysError("lseek");
  COVE_ASSIGN_OR_RETURN(std::string bytes, sys::ReadAll(mem.get(), 1 << 20));
  if (bytes.empty() || bytes.size() % sizeof(sock_filter) != 0)
    return MakeError(ErrorCode::kInternal, "seccomp program has odd size");
  p->insns.resize(bytes.size() / sizeof(sock_filter));
  std::memcpy(p->insns.data(), bytes.data(), bytes.size());
  p->prog.len = static_cast<unsigned short>(p->insns.size());
  p->prog.filter = p->insns.data();
  p->personality_insns = PersonalityFilter();
  p->personality_prog.len = static_cast<unsigned short>(p->personality_insns.size());
  p->personality_prog.filter = p->personality_insns.data();
  p->both.main = &p->prog;
  p->both.personality = &p->personality_prog;
  return OkStatus();
}

}  // namespace

Result<const SeccompPrograms*> SandboxSeccompPrograms() {
  static Program* program = [] {
    auto* p = new Program();
    Status s = Build(p);
    if (s.ok()) p->ok = true;
    else p->error = std::move(s).error();
    return p;
  }();
  if (!program->ok) return program->error;
  return &program->both;
}

}  // namespace cove::isolation
