#include "agent/code_context.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <type_traits>

#include "agent/proc.h"
#include "agent/util.h"
#include "base/json_parse.h"
#include "base/log.h"
#include "base/time.h"

namespace cove::agent {
namespace {

constexpr size_t kLogMax = 4 << 10;               // runner output kept for crash reports
constexpr size_t kMaxCode = 8 << 20;              // bytes of code in one execution
constexpr size_t kMaxQueuedRuns = 64;             // per context
constexpr int64_t kStartTimeoutMs = 60000;        // runner start to initialized
constexpr int64_t kExitStatusWaitMs = 100;        // control socket closed -> context reported dead
constexpr int64_t kInterruptRepeatMs = 250;       // SIGINT repeated until the execution ends
constexpr int kMaxStartAttempts = 3;              // runner starts per context.create / restart
constexpr const char* kSparePrefix = "spare:";  // context ids of the warm spares
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// "python", "javascript", "typescript", or "" for an unknown name.
std::string NormalizeLanguage(const std::string& l) {
  if (l.empty() || l == "python" || l == "python3") return "python";
  if (l == "javascript" || l == "js" || l == "node") return "javascript";
  if (l == "typescript" || l == "ts") return "typescript";
  return "";
}

std::string NewContextId() {
  static const char kHex[] = "0123456789abcdef";
  unsigned char rnd[8] = {};
  if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof rnd)) {
    uint64_t x = static_cast<uint64_t>(MonotonicNs()) * 0x9E3779B97F4A7C15ull;
    std::memcpy(rnd, &x, sizeof rnd);
  }
  std::string id = "ctx-";
  for (unsigned char b : rnd) {
    id += kHex[b >> 4];
    id += kHex[b & 15];
  }
  return id;
}

// Absolute path of `name` on the PATH of an environment ("K=V" entries), or "".
std::string FindProgram(const std::string& name, const std::vector<std::string>& env) {
  std::string path = kDefaultPath;
  for (const auto& e : env)
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  return FindOnPath(name, path);
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    std::string s = "was killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
    if (sig == SIGKILL) s += "; the sandbox's memory limit may have been reached";
    return s;
  }
  return "ended";
}

void AppendBounded(std::string* log, std::string_view data) {
  log->append(data);
  if (log->size() > kLogMax) log->erase(0, log->size() - kLogMax);
}

// Sends one control line on a blocking socket whose send timeout bounds the
// wait for a runner that does not read.
bool SendLine(int fd, const json& msg) {
  std::string line = Dump(msg);
  line += '\n';
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

bool MakeSocketPair(int type, UniqueFd* ours, UniqueFd* theirs) {
  int sv[2];
  if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0) return false;
  ours->Reset(sv[0]);
  theirs->Reset(sv[1]);
  timeval tv{2, 0};
  setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return true;
}

// Signals the process group a runner leads (it runs setsid); nothing while its
// pid is not known yet (a zygote fork's pid may arrive after its first message).
void SignalGroup(pid_t pid, int sig) {
  if (pid > 1) ::kill(-pid, sig);
}

bool MakeOutputPipe(UniqueFd* r, UniqueFd* w) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return false;
  r->Reset(p[0]);
  w->Reset(p[1]);
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------
// Ops

CodeContexts::CodeContexts(const PartEnv& env) : Part(env) {}

CodeContexts::~CodeContexts() = default;

void CodeContexts::Shutdown() {
  for (auto& [id, r] : contexts_) KillRunner(r.get());
  for (auto& [family, r] : spares_) KillRunner(r.get());
  if (zygote_) ::kill(-zygote_->pid, SIGKILL);
}

void CodeContexts::Handle(const Chan& c, AnyOp& any) {
  if (auto* create = std::get_if<ContextCreateOp>(&any)) return CreateContext(c, *create);
  if (auto* run = std::get_if<ContextRunOp>(&any)) return RunCode(c, *run);
  if (std::holds_alternative<ContextListOp>(any)) {
    json list = json::array();
    for (const auto& [id, r] : contexts_) list.push_back(ContextInfo(*r));
    return Reply(c, json{{"contexts", std::move(list)}});
  }
  if (std::holds_alternative<ContextHealthOp>(any)) {
    std::vector<std::string> env = BuildEnv({}, nullptr);
    auto has = [&](const char* file) { return access((cfg_.interpreter_dir + "/" + file).c_str(), R_OK) == 0; };
    bool python = has("python_runner.py") && !FindProgram("python3", env).empty();
    bool node = has("node_runner.js") && (!FindProgram("node", env).empty() || !FindProgram("nodejs", env).empty());
    return Reply(c, json{{"python", python}, {"javascript", node}, {"typescript", node},
                         {"contexts", contexts_.size()}});
  }
  // The ops that name one context (ContextGetOp and the ops derived from it).
  const std::string* named = std::visit(
      [](auto& o) -> const std::string* {
        if constexpr (std::is_base_of_v<ContextGetOp, std::decay_t<decltype(o)>>) return &o.context_id;
        else return nullptr;
      },
      any);
  if (!named) return Part::Handle(c, any);
  const std::string id = *named;
  const std::string_view op = OpName(any);
  auto it = contexts_.find(id);
  if (it == contexts_.end())
    return Reply(c, ErrorReply("CONTEXT_NOT_FOUND", "context '" + id + "' does not exist", json{{"contextId", id}}));
  Runner* r = it->second.get();
  if (op == "context.get") return Reply(c, json{{"context", ContextInfo(*r)}});
  if (op == "context.interrupt") {
    bool busy = r->state == RunnerState::kBusy;
    if (busy) InterruptRun(r);
    return Reply(c, json{{"contextId", id}, {"interrupted", busy}});
  }
  if (op == "context.delete" || op == "context.restart") {
    if (op == "context.restart" && r->opener)
      return Reply(c, ErrorReply("CONTEXT_BUSY", "context '" + id + "' is still starting", json{{"contextId", id}}));
    const char* why = op == "context.delete" ? "the context was deleted" : "the context was restarted";
    r->retry_start = false;
    r->start_attempts = 0;
    KillRunner(r);
    RunnerDied(r, why);
    if (op == "context.delete") {
      contexts_.erase(it);
      log::Info("context {} deleted", id);
      return Reply(c, json{{"contextId", id}});
    }
    // Restart: a new process, same id, language, cwd and environment.
    r->incarnation = ++next_incarnation_;
    r->state = RunnerState::kStarting;
    r->death.clear();
    r->log.clear();
    r->inbuf.clear();
    r->execution_count = 0;
    r->pid = -1;
    r->opener = c;
    StartRunner(r);
    return;
  }
  Part::Handle(c, any);
}

void CodeContexts::CreateContext(const Chan& c, const ContextCreateOp& op) {
  std::string language = op.language.value_or(""), cwd = op.cwd.value_or("");
  std::vector<std::pair<std::string, std::string>> env;
  if (op.env) env.assign(op.env->begin(), op.env->end());
  std::string lang = NormalizeLanguage(language);
  if (lang.empty())
    return Reply(c, ValidationError("unsupported language '" + language +
                                        "'; use python, javascript or typescript",
                                    "language"));
  if (cwd.find('\0') != std::string::npos) return Reply(c, ValidationError("cwd contains a NUL byte", "cwd"));
  std::string dir = cwd.empty() ? (IsDirectory(cfg_.workspace) ? cfg_.workspace : "/") : ResolvePath(cfg_.workspace, cwd);
  if (!IsDirectory(dir))
    return Reply(c, ValidationError("cwd '" + dir + "' is not a directory in the sandbox", "cwd"));

  auto r = std::make_unique<Runner>();
  do r->context_id = NewContextId();
  while (contexts_.count(r->context_id));
  r->language = lang;
  r->cwd = dir;
  r->env = std::move(env);
  r->created_ms = NowUnixMs();
  r->incarnation = ++next_incarnation_;
  r->opener = c;
  Runner* raw = r.get();
  contexts_.emplace(raw->context_id, std::move(r));
  log::Info("context {} ({}) starting", raw->context_id, lang);
  StartRunner(raw);
}

void CodeContexts::RunCode(const Chan& c, ContextRunOp& op) {
  const std::string id = op.context_id, language = op.language.value_or("");
  std::string code = std::move(op.code);
  std::optional<uint64_t> timeout;
  if (op.timeout_ms) timeout = static_cast<uint64_t>(*op.timeout_ms);
  auto it = contexts_.find(id);
  if (it == contexts_.end())
    return Reply(c, ErrorReply("CONTEXT_NOT_FOUND", "context '" + id + "' does not exist", json{{"contextId", id}}));
  Runner* r = it->second.get();
  if (code.size() > kMaxCode) return Reply(c, ValidationError("code is larger than 8 MiB", "code"));
  std::string lang = r->language;
  if (!language.empty()) {
    std::string want = NormalizeLanguage(language);
    bool node_pair = r->language != "python" && (want == "javascript" || want == "typescript");
    if (want != r->language && !node_pair)
      return Reply(c, ValidationError("context '" + id + "' runs " + r->language + ", not " + language, "language"));
    lang = want;
  }
  if (r->state == RunnerState::kDead)
    return Reply(c, ErrorReply("CONTEXT_CRASHED",
                               "context '" + id + "' has no running interpreter: " + r->death +
                                   ". Restart it (POST /api/contexts/" + id + "/restart) or delete it",
                               json{{"contextId", id}}));
  if (r->queue.size() >= kMaxQueuedRuns)
    return Reply(c, ErrorReply("CONTEXT_BUSY", "context '" + id + "' has too many queued executions",
                               json{{"contextId", id}}));
  Event(c, Dump(json{{"type", "accepted"}, {"contextId", id}, {"queued", r->queue.size() + (r->cur ? 1 : 0)}}));
  r->queue.push_back(CodeRun{c, std::move(code), lang, timeout.value_or(0)});
  uint64_t gen = c.gen;
  uint32_t chan_id = c.id;
  SetCancel(c, [this, id, gen, chan_id] {
    auto it = contexts_.find(id);
    if (it == contexts_.end()) return;
    Runner* r = it->second.get();
    if (r->cur && r->cur->chan.gen == gen && r->cur->chan.id == chan_id) {
      InterruptRun(r);  // the client left: interrupt, like Ctrl-C
      return;
    }
    for (auto q = r->queue.begin(); q != r->queue.end(); ++q) {
      if (q->chan.gen == gen && q->chan.id == chan_id) {
        Chan ch = q->chan;
        r->queue.erase(q);
        Reply(ch, json{{"type", "execution_complete"}, {"cancelled", true}});
        return;
      }
    }
  });
  StartNextRun(r);
}

json CodeContexts::ContextInfo(const Runner& r) const {
  const char* status = "starting";
  switch (r.state) {
    case RunnerState::kIdle: status = "ready"; break;
    case RunnerState::kBusy: status = "busy"; break;
    case RunnerState::kDead: status = "crashed"; break;
    default: break;
  }
  json j = {{"id", r.context_id},   {"language", r.language}, {"cwd", r.cwd},
            {"status", status},     {"executionCount", r.execution_count},
            {"createdAt", IsoTimestamp(r.created_ms)}};
  if (r.pid > 0 && r.state != RunnerState::kDead) j["pid"] = r.pid;
  if (r.state == RunnerState::kDead) j["error"] = r.death;
  return j;
}

// ---------------------------------------------------------------------------
// Starting runners

void CodeContexts::StartRunner(Runner* r) {
  ++r->start_attempts;
  std::string err;
  const bool python = r->language == "python";
  const std::string family = python ? "python" : "node";
  bool ok = true;
  auto spare = spares_.find(family);
  if (spare != spares_.end() && spare->second->ctl && !spare->second->eof_timer &&
      (spare->second->state == RunnerState::kStarting || spare->second->state == RunnerState::kWaiting)) {
    // Take over the warm spare's process.
    Runner* s = spare->second.get();
    for (uint64_t* t : {&s->ctl_tok, &s->out_tok, &s->err_tok}) {
      loop_.Unwatch(*t);
      *t = 0;
    }
    r->pid = s->pid;
    r->ctl = std::move(s->ctl);
    r->out = std::move(s->out);
    r->err = std::move(s->err);
    r->state = s->state;
    r->log = std::move(s->log);
    r->inbuf = std::move(s->inbuf);
    if (zygote_)  // its pid may still be on the way
      for (auto& id : zygote_->forking)
        if (id == s->context_id) id = r->context_id;
    loop_.CancelTimer(s->timer);
    spares_.erase(spare);
    r->retry_start = true;
    WatchRunner(r);
  } else if (python) {
    ok = EnsureZygote(&err);
    if (ok) {
      if (zygote_->ready) {
        ZygoteFork(r);
      } else {
        zygote_->waiting.push_back(r->context_id);
      }
    }
  } else {
    ok = SpawnNodeRunner(r, &err);
  }
  if (!ok) {
    const char* code = python ? "PYTHON_NOT_AVAILABLE" : "JAVASCRIPT_NOT_AVAILABLE";
    if (r->opener) {
      Reply(*r->opener, ErrorReply(code, err, json{{"language", r->language}}));
      r->opener.reset();
    }
    r->state = RunnerState::kDead;
    r->death = err;
    contexts_.erase(r->context_id);  // never became a context
    return;
  }
  std::string id = r->context_id;
  r->timer = loop_.AddTimer(MonotonicNs() + kStartTimeoutMs * 1000000, [this, id] {
    Runner* r = FindRunner(id);
    if (!r) return;
    r->timer = 0;
    if (r->state != RunnerState::kStarting && r->state != RunnerState::kInitializing) return;
    KillRunner(r);
    RunnerDied(r, "the runner did not start within 60 s");
  });
  if (r->state == RunnerState::kWaiting) SendInit(r);  // the spare said ready already
  EnsureSpare(family);
}

Result<pid_t> CodeContexts::SpawnInterpreter(const std::vector<const char*>& programs, const char* runner,
                                       std::vector<std::string> args, std::vector<std::pair<int, int>> fds) {
  Identity ident;
  json ignored;
  if (!cfg_.default_user.empty()) ParseIdentity(cfg_.default_user, &ident, &ignored);
  SpawnSpec sp;
  sp.env = BuildEnv({}, &ident);
  for (const char* p : programs)
    if (sp.path.empty()) sp.path = FindProgram(p, sp.env);
  if (sp.path.empty())
    return MakeError(ErrorCode::kNotFound, std::string(programs[0]) + " is not installed in this sandbox's image");
  std::string script = cfg_.interpreter_dir + "/" + runner;
  if (access(script.c_str(), R_OK) != 0)
    return MakeError(ErrorCode::kNotFound, "cove's interpreter runners are not available at " + cfg_.interpreter_dir);
  sp.argv = {programs[0], script};
  for (auto& a : args) sp.argv.push_back(std::move(a));
  sp.cwd = "/";
  sp.fds = std::move(fds);
  sp.setsid = true;
  if (ident.set) {
    sp.set_ids = true;
    sp.uid = ident.uid;
    sp.gid = ident.gid;
    sp.groups = ident.groups;
  }
  auto pid = Spawn(sp);
  if (!pid.ok()) return MakeError(ErrorCode::kInternal, std::string("cannot start ") + programs[0] + ": " + pid.error().ToString());
  return *pid;
}

bool CodeContexts::SpawnNodeRunner(Runner* r, std::string* err) {
  UniqueFd ctl_child, out_w, err_w;
  if (!MakeSocketPair(SOCK_STREAM, &r->ctl, &ctl_child) || !MakeOutputPipe(&r->out, &out_w) ||
      !MakeOutputPipe(&r->err, &err_w)) {
    *err = std::string("cannot create the runner's pipes: ") + strerror(errno);
    return false;
  }
  auto pid = SpawnInterpreter({"node", "nodejs"}, "node_runner.js", {},
                              {{devnull_, 0}, {out_w.get(), 1}, {err_w.get(), 2}, {ctl_child.get(), 3}});
  if (!pid.ok()) {
    *err = pid.error().message;
    return false;
  }
  r->pid = *pid;
  r->state = RunnerState::kStarting;
  pid_t p = *pid;
  children_.Add(p, [this, p](int status) { NoteRunnerExit(p, status); });
  WatchRunner(r);
  return true;
}

void CodeContexts::EnsureSpare(const std::string& family) {
  if (spares_.count(family)) return;
  auto s = std::make_unique<Runner>();
  s->context_id = kSparePrefix + family;
  s->incarnation = ++next_incarnation_;
  s->language = family == "python" ? "python" : "javascript";
  Runner* raw = s.get();
  std::string err;
  if (family == "python") {
    if (!EnsureZygote(&err)) return;
    spares_.emplace(family, std::move(s));
    if (zygote_->ready) {
      ZygoteFork(raw);
    } else {
      zygote_->waiting.push_back(raw->context_id);
    }
    return;
  }
  if (!SpawnNodeRunner(raw, &err)) return;
  spares_.emplace(family, std::move(s));
}

void CodeContexts::NoteRunnerExit(pid_t pid, int status) {
  Runner* found = nullptr;
  for (auto& [id, r] : contexts_)
    if (r->pid == pid && r->state != RunnerState::kDead) found = r.get();
  for (auto& [family, r] : spares_)
    if (r->pid == pid && r->state != RunnerState::kDead) found = r.get();
  if (!found) return;
  found->death = DescribeExit(status);
  if (found->eof_timer) RunnerDied(found, "the runner " + found->death);
}

bool CodeContexts::EnsureZygote(std::string* err) {
  if (zygote_) return true;
  auto z = std::make_unique<Zygote>();
  UniqueFd sock_child, err_w;
  if (!MakeSocketPair(SOCK_SEQPACKET, &z->sock, &sock_child) || !MakeOutputPipe(&z->err, &err_w)) {
    *err = std::string("cannot create the zygote's sockets: ") + strerror(errno);
    return false;
  }
  auto pid = SpawnInterpreter({"python3"}, "python_runner.py", {"--zygote"},
                              {{devnull_, 0}, {devnull_, 1}, {err_w.get(), 2}, {sock_child.get(), 3}});
  if (!pid.ok()) {
    *err = pid.error().message;
    return false;
  }
  z->pid = *pid;
  pid_t p = *pid;
  children_.Add(p, [this, p](int status) {
    if (zygote_ && zygote_->pid == p) StopZygote("the python zygote " + DescribeExit(status));
  });
  z->tok = loop_.Watch(z->sock.get(), EPOLLIN, [this](uint32_t) { OnZygoteReadable(); });
  int efd = z->err.get();
  z->err_tok = loop_.Watch(efd, EPOLLIN, [this, efd](uint32_t) {
    if (!zygote_ || zygote_->err.get() != efd) return;
    char buf[4096];
    ssize_t n = read(efd, buf, sizeof buf);
    if (n > 0) {
      AppendBounded(&zygote_->log, std::string_view(buf, static_cast<size_t>(n)));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      loop_.Unwatch(zygote_->err_tok);
      zygote_->err_tok = 0;
    }
  });
  zygote_ = std::move(z);
  log::Info("python zygote started: pid {}", p);
  return true;
}

void CodeContexts::ZygoteFork(Runner* r) {
  UniqueFd ctl_child, out_w, err_w;
  if (!MakeSocketPair(SOCK_STREAM, &r->ctl, &ctl_child) || !MakeOutputPipe(&r->out, &out_w) ||
      !MakeOutputPipe(&r->err, &err_w))
    return RunnerDied(r, std::string("cannot create the runner's pipes: ") + strerror(errno));
  static const char kFork[] = "{\"type\":\"fork\"}";
  iovec iov{const_cast<char*>(kFork), sizeof kFork - 1};
  int fds[3] = {ctl_child.get(), out_w.get(), err_w.get()};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof fds)] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  cmsghdr* cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof fds);
  std::memcpy(CMSG_DATA(cm), fds, sizeof fds);
  if (sendmsg(zygote_->sock.get(), &mh, MSG_NOSIGNAL) < 0) {
    std::string why = std::string("cannot reach the python zygote: ") + strerror(errno);
    StopZygote(why);
    r->retry_start = true;  // with a new zygote
    return RunnerDied(r, why);
  }
  zygote_->forking.push_back(r->context_id);
  WatchRunner(r);
}

void CodeContexts::OnZygoteReadable() {
  char buf[65536];
  ssize_t n = recv(zygote_->sock.get(), buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) return StopZygote("the python zygote closed its socket");
  auto msg = ParseJson(std::string_view(buf, static_cast<size_t>(n)));
  std::string type = msg && msg->is_object() && (*msg)["type"].is_string() ? (*msg)["type"].get<std::string>() : "";
  if (type == "ready") {
    zygote_->ready = true;
    log::Info("python zygote ready");
    std::deque<std::string> waiting;
    waiting.swap(zygote_->waiting);
    for (const auto& id : waiting) {
      Runner* r = FindRunner(id);
      if (r && r->state == RunnerState::kStarting && !r->ctl) ZygoteFork(r);
      if (!zygote_) return;
    }
    return;
  }
  if (type == "exited") {  // one of its contexts ended
    const json& jp = (*msg)["pid"];
    const json& js = (*msg)["status"];
    if (jp.is_number_integer() && js.is_number_integer()) NoteRunnerExit(jp.get<pid_t>(), js.get<int>());
    return;
  }
  if (type != "forked" && type != "error") return StopZygote("the python zygote sent a bad message");
  if (zygote_->forking.empty()) return StopZygote("the python zygote answered a fork nobody asked for");
  std::string id = zygote_->forking.front();
  zygote_->forking.pop_front();
  Runner* r = FindRunner(id);
  if (type == "error") {
    std::string m = (*msg)["message"].is_string() ? (*msg)["message"].get<std::string>() : "unknown error";
    if (r) RunnerDied(r, "the python zygote could not fork: " + m);
    return;
  }
  const json& jp = (*msg)["pid"];
  pid_t pid = jp.is_number_integer() ? jp.get<pid_t>() : -1;
  if (pid <= 1) return StopZygote("the python zygote sent a bad pid");
  if (!r || r->state == RunnerState::kDead) {
    ::kill(-pid, SIGKILL);  // deleted meanwhile
    return;
  }
  r->pid = pid;
  children_.Add(pid, [this, pid](int status) { NoteRunnerExit(pid, status); });
}

void CodeContexts::StopZygote(const std::string& why) {
  if (!zygote_) return;
  std::unique_ptr<Zygote> z = std::move(zygote_);
  loop_.Unwatch(z->tok);
  loop_.Unwatch(z->err_tok);
  ::kill(-z->pid, SIGKILL);
  std::string msg = why;
  if (!z->log.empty()) msg += ": " + z->log;
  log::Warn("python zygote stopped: {}", msg);
  for (auto* q : {&z->waiting, &z->forking}) {
    for (const auto& id : *q) {
      Runner* r = FindRunner(id);
      if (r && r->state != RunnerState::kDead) {
        r->retry_start = true;  // a context still starting gets a new zygote
        KillRunner(r);
        RunnerDied(r, msg);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Runner I/O

CodeContexts::Runner* CodeContexts::FindRunner(const std::string& context_id) {
  if (context_id.rfind(kSparePrefix, 0) == 0) {
    auto it = spares_.find(context_id.substr(std::strlen(kSparePrefix)));
    return it == spares_.end() ? nullptr : it->second.get();
  }
  auto it = contexts_.find(context_id);
  return it == contexts_.end() ? nullptr : it->second.get();
}

bool CodeContexts::IsSpare(const Runner& r) { return r.context_id.rfind(kSparePrefix, 0) == 0; }

void CodeContexts::WatchRunner(Runner* r) {
  std::string id = r->context_id;
  r->ctl_tok = loop_.Watch(r->ctl.get(), EPOLLIN, [this, id](uint32_t) {
    if (Runner* r = FindRunner(id)) OnRunnerControl(r);
  });
  r->out_tok = loop_.Watch(r->out.get(), EPOLLIN, [this, id](uint32_t) {
    if (Runner* r = FindRunner(id)) OnRunnerOutput(r, 0);
  });
  r->err_tok = loop_.Watch(r->err.get(), EPOLLIN, [this, id](uint32_t) {
    if (Runner* r = FindRunner(id)) OnRunnerOutput(r, 1);
  });
}

void CodeContexts::OnRunnerOutput(Runner* r, int stream) {
  uint64_t* tok = stream == 0 ? &r->out_tok : &r->err_tok;
  int fd = stream == 0 ? r->out.get() : r->err.get();
  if (r->cur && Live(r->cur->chan)) {
    if (HoldOutput(*tok, &r->cur->chan)) return;
    Utf8JsonStream* dec = stream == 0 ? &r->out_dec : &r->err_dec;
    if (!PumpOnce(fd, stream == 0 ? "stdout" : "stderr", dec, &r->cur->chan, kReadChunk)) {
      loop_.Unwatch(*tok);
      *tok = 0;
    }
    return;
  }
  char buf[kReadChunk];
  ssize_t n = read(fd, buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    loop_.Unwatch(*tok);
    *tok = 0;
    return;
  }
  AppendBounded(&r->log, std::string_view(buf, static_cast<size_t>(n)));
}

void CodeContexts::DrainRunnerOutput(Runner* r) {
  for (int stream = 0; stream < 2; ++stream) {
    int fd = stream == 0 ? r->out.get() : r->err.get();
    if (fd < 0) continue;
    if (r->cur && Live(r->cur->chan)) {
      Drain(fd, stream == 0 ? "stdout" : "stderr", stream == 0 ? &r->out_dec : &r->err_dec, &r->cur->chan);
      continue;
    }
    char buf[kReadChunk];
    for (int i = 0; i < 64; ++i) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) break;
      AppendBounded(&r->log, std::string_view(buf, static_cast<size_t>(n)));
    }
  }
}

void CodeContexts::OnRunnerControl(Runner* r) {
  const std::string id = r->context_id;
  const uint64_t incarnation = r->incarnation;
  char buf[kReadChunk];
  ssize_t n = recv(r->ctl.get(), buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    if (n < 0) return RunnerDied(r, std::string("control socket: ") + strerror(errno));
    if (!r->death.empty()) return RunnerDied(r, "the runner " + r->death);
    // Its exit status usually follows within milliseconds (from our reaper or
    // the zygote's); a runner that only closed the socket is ended then too.
    loop_.Unwatch(r->ctl_tok);
    r->ctl_tok = 0;
    r->eof_timer = loop_.AddTimer(MonotonicNs() + kExitStatusWaitMs * 1000000, [this, id, incarnation] {
      Runner* r = FindRunner(id);
      if (!r || r->incarnation != incarnation) return;
      r->eof_timer = 0;
      RunnerDied(r, "the runner closed its control socket");
    });
    return;
  }
  r->inbuf.append(buf, static_cast<size_t>(n));
  size_t start = 0;
  for (;;) {
    size_t nl = r->inbuf.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view line(r->inbuf.data() + start, nl - start);
    start = nl + 1;
    DrainRunnerOutput(r);  // output written before this line goes first
    auto msg = ParseJson(line);
    if (msg && msg->is_object()) OnRunnerMessage(r, *msg);
    // The message may have ended the runner (or, for the spare, moved it).
    if (FindRunner(id) != r || r->incarnation != incarnation || r->state == RunnerState::kDead) return;
  }
  r->inbuf.erase(0, start);
  if (r->inbuf.size() > kMaxAgentFrame) {
    KillRunner(r);
    RunnerDied(r, "the runner sent a message larger than 16 MiB");
  }
}

void CodeContexts::SendInit(Runner* r) {
  Identity ident;
  json ignored;
  if (!cfg_.default_user.empty()) ParseIdentity(cfg_.default_user, &ident, &ignored);
  std::vector<std::pair<std::string, std::string>> extra = r->env;
  if (r->language == "python") extra.insert(extra.begin(), {"MPLBACKEND", "Agg"});  // a context's env wins
  json env = json::object();
  for (const auto& kv : BuildEnv(extra, &ident)) {
    size_t eq = kv.find('=');
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  r->state = RunnerState::kInitializing;
  if (!SendLine(r->ctl.get(), json{{"type", "init"}, {"cwd", r->cwd}, {"env", std::move(env)}})) {
    KillRunner(r);
    RunnerDied(r, "the runner does not read its control socket");
  }
}

void CodeContexts::OnRunnerMessage(Runner* r, const json& msg) {
  auto t = msg.find("type");
  if (t == msg.end() || !t->is_string()) return;
  const std::string& type = t->get_ref<const std::string&>();
  if (type == "ready" && r->state == RunnerState::kStarting && IsSpare(*r)) {
    r->state = RunnerState::kWaiting;  // the spare waits for a context
    return;
  }
  if (type == "ready" && r->state == RunnerState::kStarting) return SendInit(r);
  if (type == "initialized" && r->state == RunnerState::kInitializing) {
    r->state = RunnerState::kIdle;
    r->start_attempts = 0;
    r->retry_start = false;
    loop_.CancelTimer(r->timer);
    r->timer = 0;
    r->log.clear();
    if (r->opener) {
      Reply(*r->opener, json{{"contextId", r->context_id}, {"language", r->language}, {"cwd", r->cwd}});
      r->opener.reset();
    }
    log::Info("context {} ready: pid {}", r->context_id, r->pid);
    return StartNextRun(r);
  }
  if (type == "fatal") {
    std::string m = msg.contains("message") && msg["message"].is_string() ? msg["message"].get<std::string>() : "";
    KillRunner(r);
    return RunnerDied(r, "the runner failed: " + m);
  }
  if (r->state != RunnerState::kBusy || !r->cur) return;
  // Only messages about the current execution count (a late or forged one is ignored).
  auto mid = msg.find("id");
  if (mid == msg.end() || !mid->is_string() || mid->get_ref<const std::string&>() != std::to_string(r->run_seq)) return;
  const Chan& ch = r->cur->chan;
  if (type == "result") {
    json ev = msg;  // its formats are checked by coved, at the API's edge
    ev.erase("id");
    std::string payload = Dump(ev);
    if (payload.size() > kMaxAgentFrame - 64)
      payload = Dump(json{{"type", "result"},
                          {"text", "[a result of " + std::to_string(payload.size()) +
                                       " bytes was dropped: results are limited to 16 MiB]"}});
    return Event(ch, payload);
  }
  if (type == "error") {
    json ev = {{"type", "error"}, {"ename", "Error"}, {"evalue", ""}, {"traceback", json::array()}};
    for (const char* k : {"ename", "evalue"})
      if (auto it = msg.find(k); it != msg.end() && it->is_string()) ev[k] = *it;
    if (auto it = msg.find("traceback"); it != msg.end() && it->is_array())
      for (const auto& line : *it)
        if (line.is_string()) ev["traceback"].push_back(line);
    if (r->timed_out && !r->saw_error) {
      ev["evalue"] = "the execution exceeded timeout_ms=" + std::to_string(r->cur->timeout_ms) +
                     " and was interrupted (" + ev["ename"].get<std::string>() + "); the context keeps its state";
      ev["ename"] = "TimeoutError";
    }
    r->saw_error = true;
    return Event(ch, Dump(ev));
  }
  if (type == "done") {
    if (auto it = msg.find("execution_count"); it != msg.end() && it->is_number_unsigned())
      r->execution_count = it->get<uint64_t>();
    else
      ++r->execution_count;
    FinishRun(r, nullptr);
  }
}

// ---------------------------------------------------------------------------
// Executions

void CodeContexts::StartNextRun(Runner* r) {
  while (r->state == RunnerState::kIdle && !r->queue.empty()) {
    CodeRun run = std::move(r->queue.front());
    r->queue.pop_front();
    if (!Live(run.chan)) continue;  // its connection is gone
    r->cur = std::move(run);
    r->state = RunnerState::kBusy;
    r->timed_out = false;
    r->saw_error = false;
    json msg = {{"type", "execute"}, {"id", std::to_string(++r->run_seq)},
                {"code", r->cur->code}, {"language", r->cur->language}};
    std::string().swap(r->cur->code);
    if (!SendLine(r->ctl.get(), msg)) {
      KillRunner(r);
      return RunnerDied(r, "the runner does not read its control socket");
    }
    if (r->cur->timeout_ms > 0) {
      std::string id = r->context_id;
      uint64_t ms = std::min<uint64_t>(r->cur->timeout_ms, 365ull * 24 * 3600 * 1000);
      r->timer = loop_.AddTimer(MonotonicNs() + static_cast<int64_t>(ms) * 1000000, [this, id] {
        Runner* r = FindRunner(id);
        if (!r || r->state != RunnerState::kBusy) return;
        r->timed_out = true;
        InterruptRun(r);
        r->timer = loop_.AddTimer(MonotonicNs() + cfg_.interrupt_grace_ms * 1000000, [this, id] {
          Runner* r = FindRunner(id);
          if (!r || r->state != RunnerState::kBusy) return;
          r->timer = 0;
          KillRunner(r);
          RunnerDied(r, "the code did not stop within " + std::to_string(cfg_.interrupt_grace_ms) +
                            " ms of the interrupt sent at its timeout, so its interpreter was killed");
        });
      });
    }
    return;
  }
}

void CodeContexts::FinishRun(Runner* r, const json* error_event) {
  loop_.CancelTimer(r->timer);
  r->timer = 0;
  loop_.CancelTimer(r->interrupt_timer);
  r->interrupt_timer = 0;
  if (!r->cur) return;
  Chan ch = r->cur->chan;
  if (error_event) {
    Event(ch, Dump(*error_event));
  } else if (r->timed_out && !r->saw_error) {
    Event(ch, Dump(json{{"type", "error"},
                        {"ename", "TimeoutError"},
                        {"evalue", "the execution exceeded timeout_ms=" + std::to_string(r->cur->timeout_ms) +
                                       "; the code caught the interrupt"},
                        {"traceback", json::array()}}));
  }
  FinishStreams(&r->out_dec, &r->err_dec, &ch);
  json done = {{"type", "execution_complete"}, {"execution_count", r->execution_count}};
  if (r->timed_out) done["timedOut"] = true;
  Reply(ch, done);
  r->cur.reset();
  if (r->state == RunnerState::kBusy) r->state = RunnerState::kIdle;
  StartNextRun(r);
}

// SIGINT now and every kInterruptRepeatMs until the code reports an error or
// the execution ends: a signal
// that lands just before the code enters a blocking call (CPython runs its
// handler only between bytecodes) is otherwise seen only when the call returns.
// Runners ignore a SIGINT that arrives after the code has finished.
void CodeContexts::InterruptRun(Runner* r) {
  SignalGroup(r->pid, SIGINT);
  if (r->interrupt_timer) return;
  std::string id = r->context_id;
  uint64_t seq = r->run_seq;
  r->interrupt_timer = loop_.AddTimer(MonotonicNs() + kInterruptRepeatMs * 1000000, [this, id, seq] {
    Runner* r = FindRunner(id);
    if (!r) return;
    r->interrupt_timer = 0;
    // Until the code reports that it stopped (or the execution ends).
    if (r->state == RunnerState::kBusy && r->run_seq == seq && !r->saw_error) InterruptRun(r);
  });
}

void CodeContexts::KillRunner(Runner* r) {
  if (r->pid > 0 && r->state != RunnerState::kDead) {
    SignalGroup(r->pid, SIGKILL);
    ::kill(r->pid, SIGKILL);
  }
}

void CodeContexts::RunnerDied(Runner* r, std::string why) {
  if (r->state == RunnerState::kDead) return;
  if (r->ctl) DrainRunnerOutput(r);
  for (uint64_t* t : {&r->ctl_tok, &r->out_tok, &r->err_tok}) {
    loop_.Unwatch(*t);
    *t = 0;
  }
  r->ctl.Reset();
  r->out.Reset();
  r->err.Reset();
  loop_.CancelTimer(r->timer);
  r->timer = 0;
  loop_.CancelTimer(r->eof_timer);
  r->eof_timer = 0;
  loop_.CancelTimer(r->interrupt_timer);
  r->interrupt_timer = 0;
  SignalGroup(r->pid, SIGKILL);  // what it left running in its process group
  if (r->opener && r->retry_start && r->start_attempts < kMaxStartAttempts && r->state != RunnerState::kIdle &&
      r->state != RunnerState::kBusy) {
    log::Info("context {}: its runner is gone before it was used ({}); starting another", r->context_id, why);
    r->incarnation = ++next_incarnation_;
    r->retry_start = false;
    r->state = RunnerState::kStarting;
    r->pid = -1;
    r->inbuf.clear();
    r->log.clear();
    r->death.clear();
    StartRunner(r);
    return;
  }
  std::string detail = why;
  std::string tail = r->log;
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
  if (!tail.empty()) detail += "; its last output: " + tail;
  r->state = RunnerState::kDead;
  r->death = detail;
  if (IsSpare(*r)) {  // forget it, but not from inside its own handler
    std::string family = r->context_id.substr(std::strlen(kSparePrefix));
    loop_.AddTimer(MonotonicNs(), [this, family] {
      auto it = spares_.find(family);
      if (it != spares_.end() && it->second->state == RunnerState::kDead) spares_.erase(it);
    });
    return;
  }
  log::Warn("context {}: {}", r->context_id, detail);
  if (r->opener) {
    Reply(*r->opener, ErrorReply("CODE_EXECUTION_ERROR", "the " + r->language + " interpreter did not start: " + detail,
                                 json{{"contextId", r->context_id}}));
    r->opener.reset();
  }
  json crashed = {{"type", "error"}, {"ename", "ContextCrashed"}, {"traceback", json::array()}};
  crashed["evalue"] = "the context's " + r->language + " process is gone (" + detail + "); its state is lost. " +
                      "Restart it with POST /api/contexts/" + r->context_id + "/restart, or delete it";
  if (r->cur) FinishRun(r, &crashed);
  while (!r->queue.empty()) {
    CodeRun run = std::move(r->queue.front());
    r->queue.pop_front();
    Event(run.chan, Dump(crashed));
    Reply(run.chan, json{{"type", "execution_complete"}, {"execution_count", r->execution_count}});
  }
}

}  // namespace cove::agent
