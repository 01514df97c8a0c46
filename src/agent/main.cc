// cove-agent: pid 1 inside every sandbox. See agent.h and docs/agent-protocol.md.
//
// Started by coved with fd 3 = a listening unix stream socket. Environment:
//   COVE_AGENT_WORKSPACE  default cwd of sessions and commands (default /workspace)
//   COVE_AGENT_RUNDIR     private directory for staged command scripts (default /run/cove-agent)
//   COVE_AGENT_LOG        debug|info|warn|error (default info)
//   COVE_AGENT_USER       user of implicit sessions and sessionless commands (default root)
//   COVE_AGENT_SHELL      session shell override (tests; default bash, else /bin/sh)
//   COVE_AGENT_PROCESS_BUFFER  bytes held in memory per stream of a background process (default 1 MiB)
//   COVE_AGENT_PROCESS_LOG_LIMIT  bytes of a background process's output kept on disk beyond that
//                         (default 128 MiB; 0: none)
//   COVE_AGENT_KILL_GRACE_MS   process.kill: SIGTERM to SIGKILL delay (default 5000)
//   COVE_AGENT_INTERPRETER_DIR code-interpreter runners (default /opt/cove/interpreter)
// Every other variable is passed on to sessions and commands; COVE_* ones are not.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "agent/agent.h"
#include "base/log.h"

extern char** environ;

namespace {

bool Executable(const std::string& p) { return access(p.c_str(), X_OK) == 0; }

void CloseFdsFrom(int first) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, first, ~0U, 0) == 0) return;
#endif
  for (int fd = first; fd < 65536; ++fd) close(fd);
}

}  // namespace

int main() {
  using cove::agent::AgentConfig;
  // Not dumpable: processes in the sandbox (which lack CAP_SYS_PTRACE) cannot
  // ptrace the agent, read its memory or take its fds through /proc/1.
  prctl(PR_SET_DUMPABLE, 0);
  // Buffers of file transfers and output (up to a 64 MiB frame from coved:
  // no mmap of their own, as glibc caps its mmap threshold at 32 MiB) come
  // from the heap, which keeps them while the agent is busy and is trimmed
  // when it goes idle (Agent::NoteActivity), so a burst does not pay mmap,
  // munmap and a page fault per 4 KiB for every buffer, and an idle agent
  // stays small.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 160 << 20);  // above what one 32 MiB transfer holds at once

  // 0-2 must be open so that pipes never land on them.
  for (int fd = 0; fd < 3; ++fd) {
    if (fcntl(fd, F_GETFD) < 0) {
      int n = open("/dev/null", O_RDWR);
      if (n >= 0 && n != fd) {
        dup2(n, fd);
        close(n);
      }
    }
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGXFSZ, SIG_IGN);  // a file-size limit fails the write instead of killing us
  if (getpid() != 1) prctl(PR_SET_CHILD_SUBREAPER, 1);  // orphans come to us, as to pid 1

  AgentConfig cfg;
  int accepting = 0;
  socklen_t len = sizeof accepting;
  if (getsockopt(cfg.listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || !accepting) {
    const char msg[] = "cove-agent: fd 3 must be a listening unix socket\n";
    ssize_t unused = write(2, msg, sizeof msg - 1);
    (void)unused;
    return 2;
  }
  fcntl(cfg.listen_fd, F_SETFD, FD_CLOEXEC);
  fcntl(cfg.listen_fd, F_SETFL, fcntl(cfg.listen_fd, F_GETFL) | O_NONBLOCK);
  CloseFdsFrom(cfg.listen_fd + 1);  // nothing of coved's leaks into the sandbox

  if (const char* l = getenv("COVE_AGENT_LOG")) {
    using cove::log::Level;
    std::string s = l;
    cove::log::SetLevel(s == "debug" ? Level::kDebug
                        : s == "warn" ? Level::kWarn
                        : s == "error" ? Level::kError
                                       : Level::kInfo);
  }
  if (const char* w = getenv("COVE_AGENT_WORKSPACE"); w && *w) cfg.workspace = w;
  if (const char* r = getenv("COVE_AGENT_RUNDIR"); r && *r) cfg.run_dir = r;
  if (const char* u = getenv("COVE_AGENT_USER"); u && *u) cfg.default_user = u;
  if (const char* d = getenv("COVE_AGENT_INTERPRETER_DIR"); d && *d) cfg.interpreter_dir = d;
  if (const char* b = getenv("COVE_AGENT_PROCESS_BUFFER"); b && *b) {
    long long v = atoll(b);
    if (v > 0) cfg.process_buffer = static_cast<size_t>(v);
  }
  if (const char* l = getenv("COVE_AGENT_PROCESS_LOG_LIMIT"); l && *l) {
    long long v = atoll(l);
    if (v >= 0) cfg.process_log_limit = static_cast<uint64_t>(v);
  }
  if (const char* g = getenv("COVE_AGENT_KILL_GRACE_MS"); g && *g) {
    long long v = atoll(g);
    if (v >= 0) cfg.process_kill_grace_ms = v;
  }
  for (char** e = environ; *e; ++e) {
    if (strncmp(*e, "COVE_", 5) == 0) continue;
    cfg.env.emplace_back(*e);
  }
  if (const char* sh = getenv("COVE_AGENT_SHELL"); sh && *sh) {
    // Test override: a path whose name contains "bash" is used as bash.
    if (strstr(sh, "bash")) {
      cfg.bash = sh;
    } else {
      cfg.sh = sh;
    }
  } else {
    for (const char* p : {"/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"}) {
      if (Executable(p)) {
        cfg.bash = p;
        break;
      }
    }
    if (!Executable(cfg.sh)) cfg.sh = "/usr/bin/sh";
  }
  if (!cfg.workspace.empty() && cfg.workspace[0] == '/') mkdir(cfg.workspace.c_str(), 0755);

  cove::agent::Agent agent(std::move(cfg));
  return agent.Run();
}
