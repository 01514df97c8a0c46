#include "agent/proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "sys/proc_stat.h"
#include "sys/unique_fd.h"

namespace cove::agent {
namespace {

// What the child of Spawn reads and writes. It shares the agent's memory
// (CLONE_VM) while the agent waits (CLONE_VFORK), so it reports a failure
// here rather than through a pipe, and allocates nothing.
struct SpawnChild {
  const SpawnSpec* spec;
  char** argv;
  char** envp;
  int* moved;  // spec->fds.size() slots
  int stage = 0;  // 0 = exec'd; else the step that failed (kStage)
  int err = 0;
};

constexpr const char* kStage[] = {"", "set up fds", "chdir", "switch user", "exec"};

[[noreturn]] void ChildFail(SpawnChild* c, int stage) {
  c->stage = stage;
  c->err = errno;
  _exit(127);
}

// Runs in the child on its own stack; returns only through exec or _exit.
// Only raw system calls: credentials change with syscall(2) so glibc's
// all-threads set-id machinery is not involved.
int ChildMain(void* arg) {
  auto* c = static_cast<SpawnChild*>(arg);
  const SpawnSpec& spec = *c->spec;
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);  // the child has its own copy of the dispositions (no CLONE_SIGHAND)
  signal(SIGXFSZ, SIG_DFL);
  if (spec.setsid) setsid();
  // Move sources out of the way first so no dup2 clobbers a later source.
  for (size_t i = 0; i < spec.fds.size(); ++i) {
    c->moved[i] = fcntl(spec.fds[i].first, F_DUPFD_CLOEXEC, 100);
    if (c->moved[i] < 0) ChildFail(c, 1);
  }
  for (size_t i = 0; i < spec.fds.size(); ++i)
    if (dup2(c->moved[i], spec.fds[i].second) < 0) ChildFail(c, 1);
  if (spec.ctty && ioctl(0, TIOCSCTTY, 0) != 0) ChildFail(c, 1);
  if (!spec.cwd.empty() && chdir(spec.cwd.c_str()) != 0) ChildFail(c, 2);
  if (spec.set_ids) {
    if (syscall(SYS_setgroups, spec.groups.size(), spec.groups.data()) != 0 && errno != EPERM) ChildFail(c, 3);
    if (syscall(SYS_setgid, spec.gid) != 0) ChildFail(c, 3);
    if (syscall(SYS_setuid, spec.uid) != 0) ChildFail(c, 3);
  }
  execve(spec.path.c_str(), c->argv, c->envp);
  ChildFail(c, 4);
}

}  // namespace

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool IsExecutable(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

std::string FindOnPath(const std::string& name, const std::string& search_path) {
  size_t pos = 0;
  while (pos <= search_path.size()) {
    size_t end = search_path.find(':', pos);
    if (end == std::string::npos) end = search_path.size();
    std::string dir = search_path.substr(pos, end - pos);
    if (!dir.empty() && dir[0] == '/' && IsExecutable(dir + "/" + name)) return dir + "/" + name;
    pos = end + 1;
  }
  return "";
}

Result<pid_t> Spawn(const SpawnSpec& spec) {
  // Everything the child needs is prepared before clone.
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  std::vector<int> moved(spec.fds.size());
  SpawnChild child{&spec, argv.data(), envp.data(), moved.data()};

  // A vfork: no page tables copied, no copy-on-write faults in either
  // process (a fork of the agent cost about a third of what `bash -c true`
  // itself does). The agent is single-threaded and suspended until the child
  // has exec'd or exited, so one stack serves every child.
  alignas(16) static char stack[64 << 10];
  pid_t pid = ::clone(ChildMain, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &child);
  if (pid < 0) return SysError("clone");
  if (child.stage != 0) {
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    std::string what = child.stage >= 1 && child.stage <= 4 ? kStage[child.stage] : "spawn";
    if (child.stage == 2) what += " " + spec.cwd;
    if (child.stage == 4) what += " " + spec.path;
    return SysError(what, child.err);
  }
  return pid;
}

std::vector<ProcInfo> Descendants(pid_t root) {
  std::unordered_multimap<pid_t, ProcInfo> children;
  DIR* d = opendir("/proc");
  if (!d) return {};
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    auto s = sys::ReadProcStat(e->d_name);
    if (!s.ok()) continue;
    children.emplace(s->ppid, ProcInfo{static_cast<pid_t>(atoi(e->d_name)), s->start_time_ticks});
  }
  closedir(d);
  std::vector<ProcInfo> out;
  std::vector<pid_t> stack = {root};
  while (!stack.empty()) {
    pid_t p = stack.back();
    stack.pop_back();
    auto [b, end] = children.equal_range(p);
    for (auto it = b; it != end; ++it) {
      out.push_back(it->second);
      stack.push_back(it->second.pid);
    }
  }
  return out;
}

int KillDescendants(pid_t root, unsigned long long min_start_ticks) {
  int killed = 0;
  for (int round = 0; round < 3; ++round) {
    int n = 0;
    for (const auto& p : Descendants(root)) {
      if (p.start_ticks < min_start_ticks) continue;
      if (::kill(p.pid, SIGKILL) == 0) ++n;
    }
    killed += n;
    if (n == 0) break;
  }
  return killed;
}

unsigned long long StartTicksOf(pid_t pid) {
  auto s = sys::ReadProcStat(pid);
  return s.ok() ? s->start_time_ticks : 0;
}

std::vector<ProcInfo> ProcessesWithEnv(const std::string& kv) {
  std::vector<ProcInfo> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  std::string needle = std::string(1, '\0') + kv + std::string(1, '\0');
  std::string buf;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::string path = std::string("/proc/") + e->d_name + "/environ";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    buf.assign(1, '\0');
    char tmp[16384];
    for (;;) {
      ssize_t n = ::read(fd, tmp, sizeof tmp);
      if (n <= 0 || buf.size() > (1 << 20)) break;
      buf.append(tmp, static_cast<size_t>(n));
    }
    ::close(fd);
    if (buf.back() != '\0') buf.push_back('\0');
    if (buf.find(needle) == std::string::npos) continue;
    if (auto s = sys::ReadProcStat(e->d_name); s.ok())
      out.push_back(ProcInfo{static_cast<pid_t>(atoi(e->d_name)), s->start_time_ticks});
  }
  closedir(d);
  return out;
}

unsigned long long BootTicksNow() {
  static const long hz = sysconf(_SC_CLK_TCK);
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<unsigned long long>(ts.tv_sec) * static_cast<unsigned long long>(hz) +
         static_cast<unsigned long long>(ts.tv_nsec) / (1000000000ULL / static_cast<unsigned long long>(hz));
}

std::string ProcessCwd(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/cwd", static_cast<int>(pid));
  char buf[4096];
  ssize_t n = readlink(path, buf, sizeof buf);
  if (n <= 0 || n == static_cast<ssize_t>(sizeof buf)) return "";
  std::string s(buf, static_cast<size_t>(n));
  // A deleted cwd reads "PATH (deleted)"; still the best base we have.
  return s;
}

}  // namespace cove::agent
