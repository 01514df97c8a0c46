#include "agent/proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
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

[[noreturn]] void ChildFail(int err_fd, int stage, int err) {
  int msg[2] = {stage, err};
  ssize_t unused = ::write(err_fd, msg, sizeof msg);
  (void)unused;
  _exit(127);
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
  // Everything the child needs is prepared before fork.
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  int ep[2];
  if (::pipe2(ep, O_CLOEXEC) != 0) return SysError("pipe2");
  UniqueFd err_r(ep[0]), err_w(ep[1]);

  pid_t pid = ::fork();
  if (pid < 0) return SysError("fork");
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGXFSZ, SIG_DFL);
    if (spec.setsid) setsid();
    // Move sources out of the way first so no dup2 clobbers a later source.
    std::vector<int> moved;
    for (auto [src, dst] : spec.fds) {
      int m = fcntl(src, F_DUPFD_CLOEXEC, 100);
      if (m < 0) ChildFail(err_w.get(), 1, errno);
      moved.push_back(m);
    }
    for (size_t i = 0; i < spec.fds.size(); ++i) {
      if (dup2(moved[i], spec.fds[i].second) < 0) ChildFail(err_w.get(), 1, errno);
    }
    if (spec.ctty && ioctl(0, TIOCSCTTY, 0) != 0) ChildFail(err_w.get(), 1, errno);
    if (!spec.cwd.empty() && chdir(spec.cwd.c_str()) != 0) ChildFail(err_w.get(), 2, errno);
    if (spec.set_ids) {
      if (setgroups(spec.groups.size(), spec.groups.data()) != 0 && errno != EPERM)
        ChildFail(err_w.get(), 3, errno);
      if (setgid(spec.gid) != 0) ChildFail(err_w.get(), 3, errno);
      if (setuid(spec.uid) != 0) ChildFail(err_w.get(), 3, errno);
    }
    execve(spec.path.c_str(), argv.data(), envp.data());
    ChildFail(err_w.get(), 4, errno);
  }
  err_w.Reset();
  int msg[2];
  ssize_t n;
  do {
    n = ::read(err_r.get(), msg, sizeof msg);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof msg)) {
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    static const char* kStage[] = {"", "set up fds", "chdir", "switch user", "exec"};
    std::string what = msg[0] >= 1 && msg[0] <= 4 ? kStage[msg[0]] : "spawn";
    if (msg[0] == 2) what += " " + spec.cwd;
    if (msg[0] == 4) what += " " + spec.path;
    return SysError(what, msg[1]);
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
