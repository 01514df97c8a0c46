#include "agent/agent.h"

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "base/json_parse.h"
#include "agent/limits.h"
#include "agent/proc.h"
#include "agent/shell_command.h"
#include "base/log.h"
#include "base/shell_quote.h"
#include "base/time.h"
#include "sys/io.h"

namespace cove::agent {
namespace {

constexpr int kMarkerFd = 9;

}  // namespace

// Parses a JSON object of string values; false on anything else.
bool GetEnvObject(const json& req, const char* key, std::vector<std::pair<std::string, std::string>>* out,
                  json* err) {
  auto it = req.find(key);
  if (it == req.end() || it->is_null()) return true;
  if (!it->is_object()) {
    *err = ValidationError(std::string("field '") + key + "' must be an object of strings", key);
    return false;
  }
  for (auto& [k, v] : it->items()) {
    if (!IsShellName(k)) {
      *err = ValidationError("invalid environment variable name '" + k + "'", key);
      return false;
    }
    if (v.is_string()) {
      std::string s = v.get<std::string>();
      if (s.find('\0') != std::string::npos) {
        *err = ValidationError("environment value of '" + k + "' contains NUL", key);
        return false;
      }
      out->emplace_back(k, std::move(s));
    } else if (v.is_number() || v.is_boolean()) {
      out->emplace_back(k, v.dump());
    } else {
      *err = ValidationError("environment value of '" + k + "' must be a string", key);
      return false;
    }
  }
  return true;
}

Agent::Agent(AgentConfig cfg) : cfg_(std::move(cfg)) {
  start_ns_ = MonotonicNs();
  devnull_.Reset(open("/dev/null", O_RDWR | O_CLOEXEC));
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  sigfd_.Reset(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  loop_.Watch(sigfd_.get(), EPOLLIN, [this](uint32_t) { OnSignal(); });
  listen_tok_ = loop_.Watch(cfg_.listen_fd, EPOLLIN, [this](uint32_t) { OnAccept(); });
}

Agent::~Agent() = default;

int Agent::Run() {
  if (!loop_.ok() || !sigfd_) {
    log::Error("cove-agent: cannot set up epoll/signalfd: {}", strerror(errno));
    return 1;
  }
  log::Info("cove-agent {} pid {} workspace {}", kAgentVersion, getpid(), cfg_.workspace);
  // Spill files of processes of an earlier agent (a restored snapshot) belong to no one.
  std::error_code ec;
  std::filesystem::remove_all(RunDir() + "/logs", ec);
  while (!stop_) {
    // Streaming file reads run between polls while the connection keeps up.
    bool busy = false;
    if (!reads_.empty() && !Blocked()) {
      ReadTask t = std::move(reads_.front());
      reads_.pop_front();
      if (Live(t.chan) && Starved(t.chan)) {
        reads_.push_back(std::move(t));  // its consumer is slow: the others go on
      } else if (Live(t.chan)) {
        auto ch = open_.find(t.chan.id);
        size_t budget = ch == open_.end() ? 1 << 20 : std::clamp<int64_t>(ch->second.credit, 64 << 10, 1 << 20);
        EmitFn data = [&](std::string bytes) { SendFrame(t.chan, FrameType::kData, bytes); };
        auto reply = t.reader->Step([&](std::string ev) { Event(t.chan, ev); }, budget, &data);
        if (reply) {
          Reply(t.chan, *reply);
        } else {
          reads_.push_back(std::move(t));
        }
      }
      busy = std::any_of(reads_.begin(), reads_.end(), [this](const ReadTask& r) { return !Starved(r.chan); });
    }
    if (bg_lagging_ && !Blocked()) PumpAllFollowers();
    if (fs_lagging_ && !Blocked()) PumpAllFsWatches();
    if (pty_lagging_ && !Blocked()) PumpAllPtys();
    Flush();
    loop_.RunOnce(busy ? 0 : -1);
    Flush();
  }
  Shutdown();
  return 0;
}

// ---------------------------------------------------------------------------
// Connection

void Agent::OnAccept() {
  int fd = accept4(cfg_.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      // Out of fds: the socket stays readable, so back off instead of spinning.
      log::Warn("accept: {}", strerror(errno));
      loop_.Pause(listen_tok_);
      loop_.AddTimer(MonotonicNs() + 100000000, [this] { loop_.Resume(listen_tok_); });
    }
    return;
  }
  if (conn_) DropConnection("replaced by a new connection");
  conn_.Reset(fd);
  ++gen_;
  decoder_ = std::make_unique<FrameDecoder>(kMaxCovedFrame);
  out_.clear();
  out_off_ = 0;
  conn_tok_ = loop_.Watch(fd, EPOLLIN, [this](uint32_t ev) { OnConnEvent(ev); });
  log::Info("coved connected");
}

void Agent::DropConnection(const char* why) {
  if (!conn_) return;
  log::Info("coved connection closed: {}", why);
  loop_.Unwatch(conn_tok_);
  conn_tok_ = 0;
  conn_.Reset();
  ++gen_;  // every channel of the old connection is now dead
  decoder_.reset();
  while (!open_.empty()) CloseChannel(open_.begin()->first);
  pending_writes_.clear();
  std::string().swap(out_);
  out_off_ = 0;
  // Output paused for backpressure flows (and is discarded) again.
  for (uint64_t t : paused_) loop_.Resume(t);
  paused_.clear();
  reads_.clear();
  for (auto& [id, p] : bg_) p->followers.clear();
  bg_logs_.clear();
  bg_lagging_ = false;
  DropPtyClients();
  StopAllPortWatches();
  StopAllFsStreams();
  malloc_trim(0);
}

void Agent::OnConnEvent(uint32_t events) {
  uint64_t gen = gen_;
  if (events & EPOLLOUT) Flush();
  if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
  char buf[kReadChunk];
  for (int i = 0; i < 16 && conn_ && gen == gen_; ++i) {
    ssize_t n = read(conn_.get(), buf, sizeof buf);
    if (n == 0) return DropConnection("EOF");
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return DropConnection(strerror(errno));
    }
    if (auto s = decoder_->Feed(std::string_view(buf, static_cast<size_t>(n))); !s.ok()) {
      // Frames decoded before the bad header are still served.
      while (auto f = decoder_->Next()) {
        HandleFrame(std::move(*f));
        if (gen != gen_) return;
      }
      return DropConnection(s.error().message.c_str());
    }
    while (gen == gen_) {
      auto f = decoder_->Next();
      if (!f) break;
      HandleFrame(std::move(*f));
    }
  }
  if (conn_ && gen == gen_) decoder_->ShrinkIfIdle();
}

void Agent::HandleFrame(Frame f) {
  Chan c{gen_, f.channel};
  switch (f.type) {
    case FrameType::kRequest: {
      if (open_.count(f.channel)) return DropConnection("request on an open channel");
      open_[f.channel] = Channel{};
      auto req = ParseJson(f.payload);
      std::string().swap(f.payload);  // free it now (move-assign would keep the buffer)
      if (!req || !req->is_object())
        return Reply(c, ErrorReply("VALIDATION_FAILED", "request is not a JSON object"));
      HandleRequest(c, *req);
      return;
    }
    case FrameType::kCancel: {
      auto it = open_.find(f.channel);
      if (it != open_.end() && it->second.cancel) {
        auto fn = it->second.cancel;
        fn();
      }
      return;
    }
    case FrameType::kWindow:
      return OnWindow(f.channel, f.payload);
    case FrameType::kData: {
      // file.write with contentInData takes one frame, the content; an
      // attached pty.attach channel takes keystrokes.
      auto it = pending_writes_.find(f.channel);
      if (it == pending_writes_.end()) {
        if (PtyInput(f.channel, f.payload)) return;
        log::Debug("ignoring data frame on channel {}", f.channel);
        return;
      }
      PendingWrite w = std::move(it->second);
      pending_writes_.erase(it);
      return Reply(c, FileWrite(w.ctx, w.req, &f.payload));
    }
    default:
      return DropConnection("agent-bound frame of a coved-bound type");
  }
}

void Agent::SendFrame(const Chan& c, FrameType t, std::string_view payload) {
  if (!Live(c)) return;
  if (payload.size() > kMaxAgentFrame) {
    log::Error("dropping oversized frame ({} bytes) on channel {}", payload.size(), c.id);
    if (t != FrameType::kReply) return;
    std::string e = Dump(ErrorReply("INTERNAL_ERROR", "reply too large"));
    EncodeFrame(c.id, t, e, &out_);
  } else {
    EncodeFrame(c.id, t, payload, &out_);
    if (auto it = open_.find(c.id); (t == FrameType::kEvent || t == FrameType::kData) && it != open_.end())
      it->second.credit -= static_cast<int64_t>(payload.size());
  }
  if (Pending() >= (256 << 10)) Flush();
}

void Agent::Reply(const Chan& c, const json& j) {
  if (!Live(c)) return;
  CloseChannel(c.id);
  SendFrame(c, FrameType::kReply, Dump(j));
}

void Agent::ReplyRaw(const Chan& c, std::string_view payload) {
  if (!Live(c)) return;
  CloseChannel(c.id);
  SendFrame(c, FrameType::kReply, payload);
}

void Agent::SetCancel(const Chan& c, std::function<void()> fn) {
  if (!Live(c)) return;
  auto it = open_.find(c.id);
  if (it != open_.end()) it->second.cancel = std::move(fn);
}

bool Agent::Starved(const Chan& c) const {
  if (!Live(c)) return false;
  auto it = open_.find(c.id);
  return it != open_.end() && it->second.credit <= 0;
}

std::optional<int64_t> Agent::Credit(const Chan& c) const {
  if (!Live(c)) return std::nullopt;
  auto it = open_.find(c.id);
  if (it == open_.end()) return std::nullopt;
  return it->second.credit;
}

bool Agent::HoldOutput(uint64_t token, const Chan* c) {
  if (Blocked()) {  // resumed by Flush once coved has taken most of our output
    loop_.Pause(token);
    paused_.push_back(token);
    return true;
  }
  if (!c || !Starved(*c)) return false;
  loop_.Pause(token);  // resumed by the channel's next Window frame, or its end
  open_[c->id].paused.push_back(token);
  return true;
}

void Agent::OnWindow(uint32_t channel, std::string_view payload) {
  auto credit = DecodeWindow(payload);
  if (!credit) return DropConnection("malformed window frame");
  auto it = open_.find(channel);
  if (it == open_.end()) return;  // the channel ended meanwhile
  Channel& ch = it->second;
  ch.credit = std::min<int64_t>(ch.credit + *credit, int64_t{1} << 40);
  if (ch.credit <= 0) return;
  for (uint64_t t : ch.paused) loop_.Resume(t);
  ch.paused.clear();
  // Producers that keep their own queues look again.
  bg_lagging_ = fs_lagging_ = pty_lagging_ = true;
}

void Agent::CloseChannel(uint32_t channel) {
  auto it = open_.find(channel);
  if (it == open_.end()) return;
  for (uint64_t t : it->second.paused) loop_.Resume(t);  // its output is discarded from now on
  open_.erase(it);
}

void Agent::Flush() {
  if (!conn_) return;
  while (out_off_ < out_.size()) {
    ssize_t n = send(conn_.get(), out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      DropConnection(strerror(errno));
      return;
    }
    out_off_ += static_cast<size_t>(n);
  }
  if (out_off_ == out_.size()) {
    if (out_.capacity() > (4 << 20)) {
      std::string().swap(out_);
      malloc_trim(0);
    } else {
      out_.clear();
    }
    out_off_ = 0;
  } else if (out_off_ > (1 << 20) && out_off_ > out_.size() / 2) {
    out_.erase(0, out_off_);
    out_off_ = 0;
  }
  loop_.Modify(conn_tok_, out_.empty() ? uint32_t{EPOLLIN} : uint32_t{EPOLLIN | EPOLLOUT});
  if (!paused_.empty() && Pending() < cfg_.out_low) {
    for (uint64_t t : paused_) loop_.Resume(t);
    paused_.clear();
  }
}

void Agent::HandleRequest(const Chan& c, json& req) {
  auto op_it = req.find("op");
  if (op_it == req.end() || !op_it->is_string())
    return Reply(c, ValidationError("missing field 'op'", "op"));
  const std::string& op = op_it->get_ref<const std::string&>();
  if (op == "hello") {
    json ids = json::array();
    for (auto& [id, s] : sessions_) ids.push_back(id);
    return Reply(c, json{{"version", kAgentVersion},
                         {"pid", getpid()},
                         {"sessions", ids},
                         {"window", kChannelWindow},  // this agent honours Window frames
                         {"uptimeMs", (MonotonicNs() - start_ns_) / 1000000}});
  }
  if (op == "exec") return HandleExec(c, req);
  if (op == "session.create") return Reply(c, CreateSession(req));
  if (op == "session.delete") return Reply(c, DeleteSession(req));
  if (op.rfind("process.", 0) == 0) return HandleProcessOp(c, op, req);
  if (op == "port.watch") return StartPortWatch(c, req);
  if (op == "fs.watch") return StartFsWatch(c, req);
  if (op == "fs.check") return FsCheck(c, req);
  if (op.rfind("pty.", 0) == 0) return HandlePtyOp(c, op, req);
  if (op.rfind("context.", 0) == 0) return HandleContextOp(c, op, req);
  if (op == "session.list") {
    json ids = json::array();
    for (auto& [id, s] : sessions_) ids.push_back(id);
    return Reply(c, json{{"sessions", ids}});
  }
  if (op.rfind("file.", 0) == 0) {
    json err;
    std::string sid;
    if (!GetString(req, "sessionId", false, &sid, &err)) return Reply(c, err);
    FileCtx ctx = MakeFileCtx(req);
    if (op == "file.read") {
      auto r = FileReader::Open(ctx, req);
      if (auto* e = std::get_if<json>(&r)) return Reply(c, *e);
      reads_.push_back(ReadTask{c, std::move(std::get<0>(r))});
      uint64_t gen = c.gen;
      uint32_t id = c.id;
      SetCancel(c, [this, gen, id] {
        for (auto it = reads_.begin(); it != reads_.end(); ++it) {
          if (it->chan.gen == gen && it->chan.id == id) {
            Chan ch = it->chan;
            reads_.erase(it);
            Reply(ch, json{{"type", "complete"}, {"bytesRead", 0}, {"cancelled", true}});
            return;
          }
        }
      });
      return;
    }
    if (op == "file.write") {
      if (auto it = req.find("contentInData"); it != req.end() && it->is_boolean() && it->get<bool>()) {
        // The content follows as a data frame on this channel.
        pending_writes_[c.id] = PendingWrite{std::move(ctx), std::move(req)};
        uint32_t id = c.id;
        SetCancel(c, [this, c, id] {
          if (pending_writes_.erase(id))
            Reply(c, ErrorReply("OPERATION_INTERRUPTED", "file.write cancelled before its data arrived"));
        });
        return;
      }
      return Reply(c, FileWrite(ctx, req));
    }
    if (op == "file.delete") return Reply(c, FileDelete(ctx, req));
    if (op == "file.rename") return Reply(c, FileRename(ctx, req));
    if (op == "file.move") return Reply(c, FileMove(ctx, req));
    if (op == "file.mkdir") return Reply(c, FileMkdir(ctx, req));
    if (op == "file.exists") return Reply(c, FileExists(ctx, req));
    if (op == "file.list") {
      return Reply(c, FileList(ctx, req, [&](std::string ev) { Event(c, ev); }));
    }
  }
  Reply(c, ErrorReply("VALIDATION_FAILED", "unknown op '" + op + "'", json{{"op", op}}));
}

// ---------------------------------------------------------------------------
// Sessions

Agent::Session* Agent::GetOrCreateSession(const std::string& id) {
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

json Agent::CreateSession(const json& req) {
  json err;
  std::string id, cwd, user;
  SessionSpec spec;
  std::optional<uint64_t> timeout;
  if (!GetString(req, "id", true, &id, &err) || !GetString(req, "cwd", false, &cwd, &err) ||
      !GetString(req, "user", false, &user, &err) || !GetEnvObject(req, "env", &spec.env, &err) ||
      !GetUint(req, "commandTimeoutMs", &timeout, &err))
    return err;
  spec.default_timeout_ms = std::min<uint64_t>(timeout.value_or(0), 365ull * 24 * 3600 * 1000);
  if (id.empty() || id == kNoSession) return ValidationError("invalid session id", "id");
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

json Agent::DeleteSession(const json& req) {
  json err;
  std::string id;
  if (!GetString(req, "id", false, &id, &err)) return err;
  if (id.empty() && !GetString(req, "sessionId", true, &id, &err)) return err;
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

Status Agent::SpawnShell(Session* s) {
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

void Agent::CloseShell(Session* s, bool kill) {
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

void Agent::StartNext(Session* s) {
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

void Agent::OnMarker(const std::string& id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session* s = it->second.get();
  if (!ReadMarkers(s)) {
    // The shell closed it (exiting); its SIGCHLD does the rest.
    loop_.Unwatch(s->mark_tok);
    s->mark_tok = 0;
  }
}

bool Agent::ReadMarkers(Session* s) {
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

void Agent::CompleteSession(Session* s, int code, bool terminated, bool reset) {
  if (!s->cur) return;
  Chan c = s->cur->chan;
  Drain(s->out.get(), "stdout", &s->out_dec, &c);
  Drain(s->err.get(), "stderr", &s->err_dec, &c);
  FinishStreams(&s->out_dec, &s->err_dec, &c);
  json r = {{"type", "complete"}, {"exitCode", code}};
  if (s->kill == Kill::kTimeout) {
    r["exitCode"] = 124;
    r["timedOut"] = true;
  } else if (s->kill == Kill::kCancel) {
    r["exitCode"] = 130;
    r["cancelled"] = true;
  }
  if (terminated) r["sessionTerminated"] = true;
  if (reset) r["sessionReset"] = true;
  r["durationMs"] = (MonotonicNs() - s->started_ns) / 1000000;
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

void Agent::OnShellExit(const std::string& id, int status) {
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

void Agent::KillSessionCommand(const std::string& id, Kill why) {
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

void Agent::OnKillGrace(const std::string& id) {
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

void Agent::CancelSessionJob(const std::string& id, uint32_t chan_id, uint64_t gen) {
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

std::string Agent::SessionCwd(const std::string& session_id) {
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

FileCtx Agent::MakeFileCtx(const json& req) {
  FileCtx ctx;
  std::string sid;
  json err;
  GetString(req, "sessionId", false, &sid, &err);
  ctx.base = SessionCwd(sid);
  if (!sid.empty()) {
    auto it = sessions_.find(sid);
    if (it != sessions_.end() && it->second->spec.ident.set)
      ctx.owner = std::pair{it->second->spec.ident.uid, it->second->spec.ident.gid};
  }
  return ctx;
}

// ---------------------------------------------------------------------------
// Exec

void Agent::HandleExec(const Chan& c, const json& req) {
  json err;
  ExecJob job;
  job.chan = c;
  std::string sid;
  std::optional<uint64_t> timeout;
  if (!GetString(req, "command", true, &job.command, &err) ||
      !GetString(req, "sessionId", false, &sid, &err) || !GetEnvObject(req, "env", &job.env, &err) ||
      !GetUint(req, "timeoutMs", &timeout, &err))
    return Reply(c, err);
  if (req.contains("cwd") && !req["cwd"].is_null()) {
    if (!GetString(req, "cwd", true, &job.cwd, &err)) return Reply(c, err);
    job.has_cwd = !job.cwd.empty();
  }
  if (job.command.find('\0') != std::string::npos)
    return Reply(c, ValidationError("command contains a NUL byte", "command"));
  if (auto why = CommandSizeProblem(job.command.size()); !why.empty()) return Reply(c, ValidationError(why, "command"));
  if (job.cwd.find('\0') != std::string::npos)
    return Reply(c, ValidationError("cwd contains a NUL byte", "cwd"));
  constexpr uint64_t kMaxTimeoutMs = 365ull * 24 * 3600 * 1000;  // no overflow below
  if (timeout) job.timeout_ms = std::min(*timeout, kMaxTimeoutMs);
  if (sid.empty() || sid == kNoSession) return RunSessionless(std::move(job));
  Session* s = GetOrCreateSession(sid);
  s->queue.push_back(std::move(job));
  uint64_t gen = c.gen;
  uint32_t cid = c.id;
  SetCancel(c, [this, sid, cid, gen] { CancelSessionJob(sid, cid, gen); });
  StartNext(s);
}

void Agent::RunSessionless(ExecJob job) {
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
  sp.fds = {{devnull_.get(), 0}, {out_w.get(), 1}, {err_w.get(), 2}};
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

void Agent::KillProc(uint64_t id, Kill why) {
  auto it = procs_.find(id);
  if (it == procs_.end()) return;
  Proc* p = it->second.get();
  if (p->kill == Kill::kNone) p->kill = why;
  // Its own process group (setsid), plus anything that left the group.
  KillDescendants(p->pid, 0);
  ::kill(-p->pid, SIGKILL);
}

void Agent::OnProcExit(uint64_t id, int status) {
  auto it = procs_.find(id);
  if (it == procs_.end()) return;
  Proc* p = it->second.get();
  Drain(p->out.get(), "stdout", &p->out_dec, &p->chan);
  Drain(p->err.get(), "stderr", &p->err_dec, &p->chan);
  FinishStreams(&p->out_dec, &p->err_dec, &p->chan);
  json r = {{"type", "complete"}, {"exitCode", ExitCodeOf(status)}};
  if (p->kill == Kill::kTimeout) {
    r["exitCode"] = 124;
    r["timedOut"] = true;
  } else if (p->kill == Kill::kCancel) {
    r["exitCode"] = 130;
    r["cancelled"] = true;
  }
  r["durationMs"] = (MonotonicNs() - p->started_ns) / 1000000;
  Reply(p->chan, r);
  if (p->timer) loop_.CancelTimer(p->timer);
  loop_.Unwatch(p->out_tok);
  loop_.Unwatch(p->err_tok);
  procs_.erase(it);
}

// ---------------------------------------------------------------------------
// Children, signals, shutdown

void Agent::OnSignal() {
  signalfd_siginfo si;
  bool chld = false;
  while (read(sigfd_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
    if (si.ssi_signo == SIGCHLD) {
      chld = true;
    } else {
      log::Info("signal {}: shutting down", si.ssi_signo);
      stop_ = true;
    }
  }
  if (chld) children_.Reap();
}

void Agent::Shutdown() {
  Flush();
  for (auto& [id, s] : sessions_) CloseShell(s.get(), true);
  for (auto& [id, p] : procs_) {
    KillDescendants(p->pid, 0);
    ::kill(-p->pid, SIGKILL);
  }
  for (auto& [id, p] : bg_) {
    if (p->exited) continue;
    KillDescendants(p->pid, 0);
    ::kill(-p->pid, SIGKILL);
  }
  for (auto& [id, p] : ptys_) {
    KillDescendants(p->pid, 0);
    ::kill(-p->pid, SIGKILL);
  }
  for (auto& [id, r] : contexts_) KillRunner(r.get());
  for (auto& [family, r] : spares_) KillRunner(r.get());
  if (zygote_) ::kill(-zygote_->pid, SIGKILL);
  if (getpid() == 1) {
    // Everything in the sandbox gets a chance to exit cleanly.
    ::kill(-1, SIGTERM);
    int64_t deadline = MonotonicNs() + 2000000000LL;
    while (MonotonicNs() < deadline) {
      pid_t r = waitpid(-1, nullptr, WNOHANG);
      if (r < 0 && errno == ECHILD) break;
      if (r == 0) usleep(10000);
    }
    ::kill(-1, SIGKILL);
  }
  children_.Reap();
  if (!run_dir_.empty()) {
    // Leftover scripts of killed commands.
    std::string cmd = run_dir_;
    DIR* d = opendir(cmd.c_str());
    if (d) {
      while (dirent* e = readdir(d)) {
        if (strncmp(e->d_name, "cmd-", 4) == 0) unlink((cmd + "/" + e->d_name).c_str());
      }
      closedir(d);
    }
  }
}

std::string Agent::RunDir() {
  if (!run_dir_.empty()) return run_dir_;
  std::vector<std::string> candidates;
  if (!cfg_.run_dir.empty()) candidates.push_back(cfg_.run_dir);
  candidates.push_back("/run/cove-agent");
  candidates.push_back("/tmp/.cove-agent-" + std::to_string(getpid()));
  for (const auto& c : candidates) {
    mkdir(c.c_str(), 0711);
    struct stat st;
    if (lstat(c.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
        access(c.c_str(), W_OK) == 0) {
      chmod(c.c_str(), 0711);
      run_dir_ = c;
      return run_dir_;
    }
  }
  run_dir_ = "/tmp";
  return run_dir_;
}

}  // namespace cove::agent
