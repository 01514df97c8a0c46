#include "agent/commands.h"

#include <signal.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cstring>

#include "agent/proc.h"
#include "agent/shell_command.h"
#include "agent/util.h"
#include "base/time.h"

namespace cove::agent {

Commands::Commands(const PartEnv& env) : Part(env) {}

Commands::~Commands() = default;

void Commands::Shutdown() {
  for (auto& [id, p] : procs_) {
    KillDescendants(p->pid, 0);
    ::kill(-p->pid, SIGKILL);
  }
}

void Commands::RunSessionless(ExecJob job) {
  UniqueFd out_r, out_w, err_r, err_w;
  if (!MakePipe(&out_r, &out_w, true) || !MakePipe(&err_r, &err_w, true))
    return Reply(job.chan, ErrorReply("COMMAND_EXECUTION_ERROR", "pipe2 failed"));
  SpawnSpec sp;
  sp.path = cfg_.bash.empty() ? cfg_.sh : cfg_.bash;
  Identity ident;
  json ignored;
  if (!cfg_.default_user.empty()) ParseIdentity(cfg_.default_user, &ident, &ignored);
  sp.env = BuildEnv(job.env, ident.set ? &ident : nullptr);
  if (ident.set) {
    sp.set_ids = true;
    sp.uid = ident.uid;
    sp.gid = ident.gid;
    sp.groups = ident.groups;
  }
  sp.cwd = job.has_cwd ? ResolvePath(cfg_.workspace, job.cwd)
                       : (IsDirectory(cfg_.workspace) ? cfg_.workspace : "/");
  sp.fds = {{devnull_, 0}, {out_w.get(), 1}, {err_w.get(), 2}};
  UniqueFd script;
  if (auto st = PrepareShellCommand(job.command, !cfg_.bash.empty(), &sp, &script); !st.ok())
    return Reply(job.chan, ErrorReply("COMMAND_EXECUTION_ERROR", "cannot stage command: " + st.error().ToString()));
  auto pid = Spawn(sp);
  script.Reset();
  if (!pid.ok()) {
    if (pid.error().sys_errno != 0 && pid.error().message.rfind("chdir", 0) == 0) {
      // Like the session path (`cd` in a subshell): exit 1 with a message.
      std::string msg = "cove-agent: cd: " + sp.cwd + ": " + strerror(pid.error().sys_errno) + "\n";
      std::string ev = "{\"type\":\"stderr\",\"data\":\"";
      AppendJsonUtf8(msg, &ev);
      ev += "\"}";
      Event(job.chan, ev);
      return Reply(job.chan, json{{"type", "complete"}, {"exitCode", 1}, {"durationMs", 0}});
    }
    return Reply(job.chan, ErrorReply("COMMAND_EXECUTION_ERROR",
                                      "cannot start command: " + pid.error().ToString()));
  }
  auto p = std::make_unique<Proc>();
  uint64_t id = next_proc_++;
  p->id = id;
  p->pid = *pid;
  p->chan = job.chan;
  p->out = std::move(out_r);
  p->err = std::move(err_r);
  p->started_ns = MonotonicNs();
  Proc* raw = p.get();
  procs_.emplace(id, std::move(p));
  children_.Add(raw->pid, [this, id](int status) { OnProcExit(id, status); });
  raw->out_tok = loop_.Watch(raw->out.get(), EPOLLIN, [this, id](uint32_t) {
    auto it = procs_.find(id);
    if (it == procs_.end()) return;
    Proc* x = it->second.get();
    OnOutputReadable(&x->out_tok, x->out.get(), "stdout", &x->out_dec, &x->chan);
  });
  raw->err_tok = loop_.Watch(raw->err.get(), EPOLLIN, [this, id](uint32_t) {
    auto it = procs_.find(id);
    if (it == procs_.end()) return;
    Proc* x = it->second.get();
    OnOutputReadable(&x->err_tok, x->err.get(), "stderr", &x->err_dec, &x->chan);
  });
  if (job.timeout_ms.value_or(0) > 0) {
    raw->timer = loop_.AddTimer(raw->started_ns + static_cast<int64_t>(*job.timeout_ms) * 1000000,
                                [this, id] { KillProc(id, Kill::kTimeout); });
  }
  SetCancel(job.chan, [this, id] { KillProc(id, Kill::kCancel); });
}

void Commands::KillProc(uint64_t id, Kill why) {
  auto it = procs_.find(id);
  if (it == procs_.end()) return;
  Proc* p = it->second.get();
  if (p->kill == Kill::kNone) p->kill = why;
  // Its own process group (setsid), plus anything that left the group.
  KillDescendants(p->pid, 0);
  ::kill(-p->pid, SIGKILL);
}

void Commands::OnProcExit(uint64_t id, int status) {
  auto it = procs_.find(id);
  if (it == procs_.end()) return;
  Proc* p = it->second.get();
  Drain(p->out.get(), "stdout", &p->out_dec, &p->chan);
  Drain(p->err.get(), "stderr", &p->err_dec, &p->chan);
  FinishStreams(&p->out_dec, &p->err_dec, &p->chan);
  Reply(p->chan, CompleteReply(ExitCodeOf(status), p->kill, p->started_ns));
  if (p->timer) loop_.CancelTimer(p->timer);
  loop_.Unwatch(p->out_tok);
  loop_.Unwatch(p->err_tok);
  procs_.erase(it);
}

}  // namespace cove::agent
