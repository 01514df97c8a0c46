#include "agent/sessions.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "agent/limits.h"
#include "agent/proc.h"
#include "agent/shell_command.h"
#include "agent/util.h"
#include "base/log.h"
#include "base/shell_quote.h"
#include "base/time.h"
#include "sys/io.h"

namespace cove::agent {
namespace {

constexpr int kMarkerFd = 9;

}  // namespace

Sessions::Sessions(const PartEnv& env, Commands& commands) : Part(env), commands_(commands) {}

Sessions::~Sessions() = default;

void Sessions::Handle(const Chan& c, AnyOp& op) {
  if (auto* exec = std::get_if<ExecOp>(&op)) return HandleExec(c, *exec);
  if (auto* create = std::get_if<SessionCreateOp>(&op)) return Reply(c, CreateSession(*create));
  if (auto* del = std::get_if<SessionDeleteOp>(&op)) return Reply(c, DeleteSession(*del));
  if (std::holds_alternative<SessionListOp>(op)) return Reply(c, json{{"sessions", Ids()}});
  Part::Handle(c, op);
}

void Sessions::Shutdown() {
  for (auto& [id, s] : sessions_) CloseShell(s.get(), true);
}

json Sessions::Ids() const {
  json ids = json::array();
  for (auto& [id, s] : sessions_) ids.push_back(id);
  return ids;
}

SessionContext Sessions::Context(const std::string& session_id) {
  SessionContext ctx;
  ctx.cwd = SessionCwd(session_id);
  Session* s = GetOrCreateSession(session_id);
  ctx.ident = s->spec.ident;
  ctx.env = s->spec.env;
  return ctx;
}

Sessions::Session* Sessions::GetOrCreateSession(const std::string& id) {
  auto it = sessions_.find(id);
  if (it != sessions_.end()) return it->second.get();
  auto s = std::make_unique<Session>();
  s->id = id;
  s->spec.cwd = cfg_.workspace;
  json ignored;  // an unknown default user leaves the session as root
  if (!cfg_.default_user.empty()) ParseIdentity(cfg_.default_user, &s->spec.ident, &ignored);
  Session* p = s.get();
  sessions_.emplace(id, std::move(s));
  return p;
}

json Sessions::CreateSession(SessionCreateOp& op) {
  json err;
  const std::string& id = op.id;
  std::string cwd = op.cwd.value_or(""), user = op.user.value_or("");
  SessionSpec spec;
  if (op.env) spec.env.assign(op.env->begin(), op.env->end());
  spec.default_timeout_ms = std::min<uint64_t>(op.command_timeout_ms.value_or(0), 365ull * 24 * 3600 * 1000);
  if (id == kNoSession) return ValidationError("invalid session id", "id");
  if (sessions_.count(id))
    return ErrorReply("SESSION_ALREADY_EXISTS", "session '" + id + "' already exists",
                      json{{"sessionId", id}});
  if (!ParseIdentity(user.empty() ? cfg_.default_user : user, &spec.ident, &err)) return err;
  spec.cwd = cwd.empty() ? cfg_.workspace : ResolvePath(cfg_.workspace, cwd);
  if (!IsDirectory(spec.cwd))
    return ErrorReply("FILE_NOT_FOUND", "session cwd is not a directory: " + spec.cwd,
                      json{{"path", spec.cwd}, {"operation", "session.create"}});
  Session* s = GetOrCreateSession(id);
  s->spec = std::move(spec);
  if (auto st = SpawnShell(s); !st.ok()) {
    sessions_.erase(id);
    return ErrorReply("COMMAND_EXECUTION_ERROR", "cannot start session shell: " + st.error().ToString(),
                      json{{"sessionId", id}});
  }
  return json{{"id", id}};
}

json Sessions::DeleteSession(const SessionDeleteOp& op) {
  const std::string& id = op.id;
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return json{{"id", id}, {"existed", false}};
  Session* s = it->second.get();
  CloseShell(s, true);
  json gone = ErrorReply("SESSION_DESTROYED", "session '" + id + "' was deleted", json{{"sessionId", id}});
  if (s->cur) Reply(s->cur->chan, gone);
  for (auto& j : s->queue) Reply(j.chan, gone);
  if (s->timer) loop_.CancelTimer(s->timer);
  if (!s->cmd_file.empty()) unlink(s->cmd_file.c_str());
  sessions_.erase(it);
  return json{{"id", id}};
}

Status Sessions::SpawnShell(Session* s) {
  UniqueFd in_r, in_w, out_r, out_w, err_r, err_w, mark_r, mark_w;
  if (!MakePipe(&in_r, &in_w, false) || !MakePipe(&out_r, &out_w, true) ||
      !MakePipe(&err_r, &err_w, true) || !MakePipe(&mark_r, &mark_w, true))
    return SysError("pipe2");
  fcntl(in_w.get(), F_SETFL, O_NONBLOCK);
  SpawnSpec sp;
  s->bash = !cfg_.bash.empty();
  sp.path = s->bash ? cfg_.bash : cfg_.sh;
  sp.argv = s->bash ? std::vector<std::string>{"bash", "--norc", "--noprofile"}
                    : std::vector<std::string>{"sh"};
  sp.env = BuildEnv(s->spec.env, &s->spec.ident);
  sp.cwd = IsDirectory(s->spec.cwd) ? s->spec.cwd : (IsDirectory(cfg_.workspace) ? cfg_.workspace : "/");
  sp.fds = {{in_r.get(), 0}, {out_w.get(), 1}, {err_w.get(), 2}, {mark_w.get(), kMarkerFd}};
  if (s->spec.ident.set) {
    sp.set_ids = true;
    sp.uid = s->spec.ident.uid;
    sp.gid = s->spec.ident.gid;
    sp.groups = s->spec.ident.groups;
  }
  COVE_ASSIGN_OR_RETURN(pid_t pid, Spawn(sp));
  s->pid = pid;
  s->in = std::move(in_w);
  s->out = std::move(out_r);
  s->err = std::move(err_r);
  s->mark = std::move(mark_r);
  s->mark_buf.clear();
  std::string id = s->id;
  children_.Add(pid, [this, id](int status) { OnShellExit(id, status); });
  s->out_tok = loop_.Watch(s->out.get(), EPOLLIN, [this, id](uint32_t) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    Session* x = it->second.get();
    OnOutputReadable(&x->out_tok, x->out.get(), "stdout", &x->out_dec, x->cur ? &x->cur->chan : nullptr);
  });
  s->err_tok = loop_.Watch(s->err.get(), EPOLLIN, [this, id](uint32_t) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    Session* x = it->second.get();
    OnOutputReadable(&x->err_tok, x->err.get(), "stderr", &x->err_dec, x->cur ? &x->cur->chan : nullptr);
  });
  s->mark_tok = loop_.Watch(s->mark.get(), EPOLLIN, [this, id](uint32_t) { OnMarker(id); });
  if (s->bash) {
    std::string init = "shopt -s expand_aliases 2>/dev/null\n";
    ssize_t unused = write(s->in.get(), init.data(), init.size());
    (void)unused;
  }
  return OkStatus();
}

void Sessions::CloseShell(Session* s, bool kill) {
  if (s->pid > 0) {
    if (kill) {
      KillDescendants(s->pid, 0);
      ::kill(s->pid, SIGKILL);
    }
    // Its exit status is no longer ours to report: reap it as an orphan.
    children_.Forget(s->pid);
  }
  s->pid = -1;
  loop_.Unwatch(s->out_tok);
  loop_.Unwatch(s->err_tok);
  loop_.Unwatch(s->mark_tok);
  s->out_tok = s->err_tok = s->mark_tok = 0;
  s->in.Reset();
  s->out.Reset();
  s->err.Reset();
  s->mark.Reset();
  s->mark_buf.clear();
}

void Sessions::StartNext(Session* s) {
  while (!s->exiting && !s->cur && !s->queue.empty()) {
    if (s->pid < 0) {
      if (auto st = SpawnShell(s); !st.ok()) {
        ExecJob j = std::move(s->queue.front());
        s->queue.pop_front();
        Reply(j.chan, ErrorReply("COMMAND_EXECUTION_ERROR",
                                 "cannot start session shell: " + st.error().ToString(),
                                 json{{"sessionId", s->id}}));
        continue;
      }
    }
    s->cur = std::move(s->queue.front());
    s->queue.pop_front();
    ExecJob& j = *s->cur;
    s->cur_seq = ++s->seq;
    s->kill = Kill::kNone;
    s->out_dec = Utf8JsonStream();
    s->err_dec = Utf8JsonStream();

    std::string body;  // what eval runs
    if (j.command.size() > kInlineCommandMax) {
      std::string dir = RunDir();
      std::string path = dir + "/cmd-" + std::to_string(getpid()) + "-" + std::to_string(s->cur_seq) +
                         "-" + std::to_string(reinterpret_cast<uintptr_t>(s) & 0xffffff);
      UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0400));
      int err = fd ? 0 : errno;
      if (fd) {
        if (auto st = sys::WriteAll(fd.get(), j.command); !st.ok()) err = st.error().sys_errno;
      }
      if (err != 0) {
        unlink(path.c_str());
        // A full disk is the caller's to fix, like a failed file write.
        const char* code = err == EDQUOT || err == ENOSPC ? FileCodeForErrno(err) : "COMMAND_EXECUTION_ERROR";
        Reply(j.chan, ErrorReply(code, std::string("cannot stage command script: ") + strerror(err),
                                 json{{"sessionId", s->id}, {"errno", err}}));
        s->cur.reset();
        continue;
      }
      if (s->spec.ident.set && fchown(fd.get(), s->spec.ident.uid, s->spec.ident.gid) != 0) {
        // The shell then cannot read it and reports the error itself.
      }
      s->cmd_file = path;
      body = s->bash ? "builtin eval \"$(< " + ShellQuote(path) + ")\""
                     : "eval \"$(cat " + ShellQuote(path) + ")\"";
    } else {
      body = (s->bash ? "builtin eval " : "eval ") + ShellQuote(j.command);
    }
    if (j.has_cwd || !j.env.empty()) {
      // Per-command cwd/env: a subshell, so nothing persists.
      std::string pre;
      if (j.has_cwd) pre += "cd -- " + ShellQuote(j.cwd) + " || exit 1; ";
      for (auto& [k, v] : j.env) pre += "export " + k + "=" + ShellQuote(v) + "; ";
      body = "( " + pre + body + "\n)";
    }
    std::string line = "{ " + body + "\n} </dev/null " + std::to_string(kMarkerFd) + ">&-; " +
                       (s->bash ? "builtin printf" : "printf") + " '%s %s\\n' " +
                       std::to_string(s->cur_seq) + " \"$?\" >&" + std::to_string(kMarkerFd) + "\n";
    s->start_ticks = BootTicksNow();
    s->started_ns = MonotonicNs();
    // The shell has consumed everything written before (it printed the last
    // marker), so the pipe is empty and this small write does not block.
    if (!sys::WriteAll(s->in.get(), line).ok()) {
      // The shell is gone; its SIGCHLD completes this command.
    }
    std::string id = s->id;
    uint64_t timeout = j.timeout_ms.value_or(s->spec.default_timeout_ms);
    if (timeout > 0) {
      s->timer = loop_.AddTimer(s->started_ns + static_cast<int64_t>(timeout) * 1000000,
                                [this, id] { KillSessionCommand(id, Kill::kTimeout); });
    }
    uint64_t gen = j.chan.gen;
    uint32_t cid = j.chan.id;
    SetCancel(j.chan, [this, id, cid, gen] { CancelSessionJob(id, cid, gen); });
  }
}

void Sessions::OnMarker(const std::string& id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session* s = it->second.get();
  if (!ReadMarkers(s)) {
    // The shell closed it (exiting); its SIGCHLD does the rest.
    loop_.Unwatch(s->mark_tok);
    s->mark_tok = 0;
  }
}

bool Sessions::ReadMarkers(Session* s) {
  char buf[256];
  ssize_t n = s->mark ? read(s->mark.get(), buf, sizeof buf) : 0;
  if (n <= 0) return n < 0 && errno == EAGAIN;
  s->mark_buf.append(buf, static_cast<size_t>(n));
  size_t nl;
  while ((nl = s->mark_buf.find('\n')) != std::string::npos) {
    std::string line = s->mark_buf.substr(0, nl);
    s->mark_buf.erase(0, nl + 1);
    unsigned long long seq = 0;
    int code = 0;
    if (sscanf(line.c_str(), "%llu %d", &seq, &code) != 2) continue;
    if (s->cur && seq == s->cur_seq) CompleteSession(s, code, false, false);
  }
  return true;
}

void Sessions::CompleteSession(Session* s, int code, bool terminated, bool reset) {
  if (!s->cur) return;
  Chan c = s->cur->chan;
  Drain(s->out.get(), "stdout", &s->out_dec, &c);
  Drain(s->err.get(), "stderr", &s->err_dec, &c);
  FinishStreams(&s->out_dec, &s->err_dec, &c);
  json r = CompleteReply(code, s->kill, s->started_ns);
  if (terminated) r["sessionTerminated"] = true;
  if (reset) r["sessionReset"] = true;
  Reply(c, r);
  if (s->timer) loop_.CancelTimer(s->timer);
  s->timer = 0;
  if (!s->cmd_file.empty()) {
    unlink(s->cmd_file.c_str());
    s->cmd_file.clear();
  }
  s->cur.reset();
  s->kill = Kill::kNone;
  StartNext(s);
}

void Sessions::OnShellExit(const std::string& id, int status) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session* s = it->second.get();
  s->pid = -1;  // already reaped
  // A command that finished just before the shell died completes normally.
  s->exiting = true;
  while (s->mark && ReadMarkers(s) && s->cur) {
    int avail = 0;
    if (ioctl(s->mark.get(), FIONREAD, &avail) != 0 || avail == 0) break;
  }
  s->exiting = false;
  if (s->cur) {
    Chan c = s->cur->chan;
    Drain(s->out.get(), "stdout", &s->out_dec, &c);
    Drain(s->err.get(), "stderr", &s->err_dec, &c);
  }
  bool killed = s->kill != Kill::kNone;
  CloseShell(s, false);
  if (s->cur) {
    // A timed-out/cancelled command whose shell died is a reset; otherwise
    // the command ended the shell (`exit 3`).
    CompleteSession(s, ExitCodeOf(status), !killed, killed);
  } else {
    StartNext(s);
  }
}

void Sessions::KillSessionCommand(const std::string& id, Kill why) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session* s = it->second.get();
  if (!s->cur || s->pid < 0) return;
  if (s->timer) loop_.CancelTimer(s->timer);
  s->kill = why;
  s->kill_started_ns = MonotonicNs();
  s->quiet_rounds = 0;
  KillDescendants(s->pid, s->start_ticks);
  s->timer = loop_.AddTimer(MonotonicNs() + cfg_.kill_check_ms * 1000000, [this, id] { OnKillGrace(id); });
}

void Sessions::OnKillGrace(const std::string& id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session* s = it->second.get();
  s->timer = 0;
  if (!s->cur) return;
  // Still no marker. Kill whatever the command started since; when nothing
  // is left for several checks (the shell itself is busy in a builtin loop
  // or blocked in a builtin), or after a bound, replace the shell.
  if (KillDescendants(s->pid, s->start_ticks) > 0) {
    s->quiet_rounds = 0;
  } else {
    ++s->quiet_rounds;
  }
  bool give_up = s->quiet_rounds >= cfg_.kill_quiet_rounds ||
                 MonotonicNs() - s->kill_started_ns >= cfg_.kill_max_ms * 1000000;
  if (!give_up) {
    s->timer = loop_.AddTimer(MonotonicNs() + cfg_.kill_check_ms * 1000000, [this, id] { OnKillGrace(id); });
    return;
  }
  log::Info("session {}: shell did not finish the killed command; replacing it", id);
  Chan c = s->cur->chan;
  Drain(s->out.get(), "stdout", &s->out_dec, &c);
  Drain(s->err.get(), "stderr", &s->err_dec, &c);
  CloseShell(s, true);
  CompleteSession(s, 137, false, true);
}

void Sessions::CancelSessionJob(const std::string& id, uint32_t chan_id, uint64_t gen) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session* s = it->second.get();
  if (s->cur && s->cur->chan.id == chan_id && s->cur->chan.gen == gen) {
    if (s->kill == Kill::kNone) KillSessionCommand(id, Kill::kCancel);
    return;
  }
  for (auto q = s->queue.begin(); q != s->queue.end(); ++q) {
    if (q->chan.id == chan_id && q->chan.gen == gen) {
      Chan c = q->chan;
      s->queue.erase(q);
      Reply(c, json{{"type", "complete"}, {"exitCode", 130}, {"cancelled", true}});
      return;
    }
  }
}

std::string Sessions::SessionCwd(const std::string& session_id) {
  if (session_id.empty() || session_id == kNoSession) return cfg_.workspace;
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) {
    // Created on first use; a shell starts with the first exec.
    return GetOrCreateSession(session_id)->spec.cwd;
  }
  Session* s = it->second.get();
  if (s->pid > 0) {
    std::string cwd = ProcessCwd(s->pid);
    if (!cwd.empty() && cwd[0] == '/') return cwd;
  }
  return s->spec.cwd;
}

FileCtx Sessions::MakeFileCtx(const std::optional<std::string>& session_id) {
  FileCtx ctx;
  const std::string sid = session_id.value_or("");
  ctx.base = SessionCwd(sid);
  if (!sid.empty()) {
    auto it = sessions_.find(sid);
    if (it != sessions_.end() && it->second->spec.ident.set)
      ctx.owner = std::pair{it->second->spec.ident.uid, it->second->spec.ident.gid};
  }
  return ctx;
}

void Sessions::HandleExec(const Chan& c, ExecOp& op) {
  ExecJob job;
  job.chan = c;
  std::string sid = op.session_id.value_or("");
  job.command = std::move(op.command);  // non-empty, no NUL, within the size limit (ops.h)
  if (op.env) job.env.assign(op.env->begin(), op.env->end());
  job.cwd = op.cwd.value_or("");
  job.has_cwd = !job.cwd.empty();
  if (job.cwd.find('\0') != std::string::npos)
    return Reply(c, ValidationError("cwd contains a NUL byte", "cwd"));
  constexpr uint64_t kMaxExecTimeoutMs = 365ull * 24 * 3600 * 1000;  // no overflow below
  if (op.timeout_ms) job.timeout_ms = std::min<uint64_t>(*op.timeout_ms, kMaxExecTimeoutMs);
  if (sid.empty() || sid == kNoSession) return commands_.RunSessionless(std::move(job));
  Session* s = GetOrCreateSession(sid);
  s->queue.push_back(std::move(job));
  uint64_t gen = c.gen;
  uint32_t cid = c.id;
  SetCancel(c, [this, sid, cid, gen] { CancelSessionJob(sid, cid, gen); });
  StartNext(s);
}

}  // namespace cove::agent
