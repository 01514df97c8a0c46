#include "agent/processes.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "agent/limits.h"
#include "agent/proc.h"
#include "agent/shell_command.h"
#include "agent/util.h"
#include "base/log.h"
#include "base/time.h"

namespace cove::agent {
namespace {

constexpr size_t kChunkMax = kLogRecordMax;  // raw bytes read at a time
// process.logs answers in one frame when the log holds at most this much.
constexpr uint64_t kInlineLogs = 128 << 10;
constexpr const char* kStreamName[2] = {"stdout", "stderr"};

std::string DefaultProcessId() {
  static const char kAlnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  unsigned char rnd[6] = {};
  if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof rnd)) {
    uint64_t x = static_cast<uint64_t>(MonotonicNs()) * 0x9E3779B97F4A7C15ull;
    for (auto& b : rnd) {
      b = static_cast<unsigned char>(x >> 56);
      x *= 0x9E3779B97F4A7C15ull;
      x += 7;
    }
  }
  std::string id = "proc_" + std::to_string(NowUnixMs()) + "_";
  for (unsigned char b : rnd) id += kAlnum[b % 36];
  return id;
}

bool ValidStatus(const std::string& s) {
  return s == "running" || s == "completed" || s == "failed" || s == "killed" || s == "error";
}

}  // namespace

Processes::Processes(const PartEnv& env, SessionLookup session, ExitFn on_exit)
    : Part(env), session_(std::move(session)), on_exit_(std::move(on_exit)) {}

Processes::~Processes() = default;

std::optional<Processes::State> Processes::Find(const std::string& id) const {
  auto it = bg_.find(id);
  if (it == bg_.end()) return std::nullopt;
  return State{it->second->exited, it->second->exit_code};
}

void Processes::OnConnectionLost() {
  for (auto& [id, p] : bg_) p->followers.clear();
  bg_logs_.clear();
  bg_lagging_ = false;
}

bool Processes::Pump() {
  if (bg_lagging_) PumpAllFollowers();
  return false;
}

void Processes::Shutdown() {
  for (auto& [id, p] : bg_) {
    if (p->exited) continue;
    KillDescendants(p->pid, 0);
    ::kill(-p->pid, SIGKILL);
  }
}

json Processes::BgInfo(const BgProc& p) const {
  json j = {{"id", p.id},
            {"pid", p.pid > 0 ? json(p.pid) : json(nullptr)},
            {"command", p.command},
            {"status", p.status},
            {"startTime", IsoTimestamp(p.start_ms)}};
  if (p.exited) j["endTime"] = IsoTimestamp(p.end_ms);
  if (p.exit_code) j["exitCode"] = *p.exit_code;
  return j;
}

void Processes::Handle(const Chan& c, AnyOp& any) {
  if (auto* start = std::get_if<ProcessStartOp>(&any)) return Reply(c, StartBgProcess(*start));
  if (auto* list = std::get_if<ProcessListOp>(&any)) {
    std::string want = list->status.value_or("");
    if (!want.empty() && !ValidStatus(want))
      return Reply(c, ValidationError("invalid status '" + want + "'", "status"));
    std::vector<const BgProc*> v;
    for (auto& [id, p] : bg_)
      if (want.empty() || p->status == want) v.push_back(p.get());
    std::stable_sort(v.begin(), v.end(),
                     [](const BgProc* a, const BgProc* b) { return a->start_ms < b->start_ms; });
    json arr = json::array();
    for (const BgProc* p : v) arr.push_back(BgInfo(*p));
    return Reply(c, json{{"processes", std::move(arr)}});
  }
  if (std::holds_alternative<ProcessKillAllOp>(any)) {
    int n = 0;
    for (auto& [id, p] : bg_) {
      if (p->exited || p->killed) continue;
      KillBg(p.get(), SIGTERM, false);
      ++n;
    }
    return Reply(c, json{{"cleanedCount", n}});
  }
  if (std::holds_alternative<ProcessCleanupOp>(any)) {
    int n = 0;
    for (auto it = bg_.begin(); it != bg_.end();) {
      if (!it->second->exited) {
        ++it;
        continue;
      }
      BgProc* p = it->second.get();
      PumpFollowers(p);
      for (auto& f : p->followers)
        Reply(f.chan, json{{"type", "exit"}, {"exitCode", p->exit_code ? json(*p->exit_code) : json(nullptr)},
                           {"status", p->status}});
      for (int i = 0; i < 2; ++i) loop_.Unwatch(p->tok[i]);
      if (p->timer) loop_.CancelTimer(p->timer);
      it = bg_.erase(it);
      ++n;
    }
    bg_finished_.clear();
    return Reply(c, json{{"cleanedCount", n}});
  }
  // The ops that name one process.
  std::string id;
  if (auto* get = std::get_if<ProcessGetOp>(&any)) id = get->process_id;
  else if (auto* kill = std::get_if<ProcessKillOp>(&any)) id = kill->process_id;
  else if (auto* logs = std::get_if<ProcessLogsOp>(&any)) id = logs->process_id;
  else if (auto* stream = std::get_if<ProcessStreamOp>(&any)) id = stream->process_id;
  else return Part::Handle(c, any);
  auto it = bg_.find(id);
  if (it == bg_.end())
    return Reply(c, ErrorReply("PROCESS_NOT_FOUND", "process '" + id + "' not found", json{{"processId", id}}));
  BgProc* p = it->second.get();
  if (std::holds_alternative<ProcessGetOp>(any)) return Reply(c, json{{"process", BgInfo(*p)}});
  if (auto* kill = std::get_if<ProcessKillOp>(&any)) {
    if (!p->exited) KillBg(p, kill->signal ? static_cast<int>(*kill->signal) : SIGTERM, false);
    return Reply(c, json{{"processId", id}});
  }
  if (std::holds_alternative<ProcessLogsOp>(any)) return BgLogs(c, p);
  // process.stream
  p->followers.push_back(Follower{c});
  uint64_t gen = c.gen;
  uint32_t cid = c.id;
  SetCancel(c, [this, id, gen, cid] {
    auto it = bg_.find(id);
    if (it == bg_.end()) return;
    auto& fs = it->second->followers;
    for (auto f = fs.begin(); f != fs.end(); ++f) {
      if (f->chan.gen == gen && f->chan.id == cid) {
        Chan ch = f->chan;
        fs.erase(f);
        Reply(ch, json{{"type", "cancelled"}});
        return;
      }
    }
  });
  PumpFollowers(p);
}

json Processes::StartBgProcess(ProcessStartOp& op) {
  // command: non-empty, no NUL, within the size limit; ids: 1-256 bytes without NUL (ops.h).
  std::string command = std::move(op.command), id = op.process_id.value_or(""),
              sid = op.session_id.value_or(""), cwd = op.cwd.value_or("");
  std::vector<std::pair<std::string, std::string>> env;
  if (op.env) env.assign(op.env->begin(), op.env->end());
  std::optional<int64_t> timeout = op.timeout_ms;
  if (cwd.find('\0') != std::string::npos) return ValidationError("cwd contains a NUL byte", "cwd");
  if (id.empty()) {
    do id = DefaultProcessId();
    while (bg_.count(id));
  }
  if (bg_.count(id))
    return ErrorReply("PROCESS_ALREADY_EXISTS", "process '" + id + "' already exists",
                      json{{"processId", id}});

  // The session's identity, env and current cwd; sandbox defaults without one.
  Identity ident;
  std::vector<std::pair<std::string, std::string>> full_env;
  std::string base;
  if (sid.empty() || sid == kNoSession) {
    json ignored;
    if (!cfg_.default_user.empty()) ParseIdentity(cfg_.default_user, &ident, &ignored);
    base = IsDirectory(cfg_.workspace) ? cfg_.workspace : "/";
  } else {
    SessionContext s = session_(sid);  // creates an unknown session, like file ops
    base = s.cwd;
    ident = s.ident;
    full_env = s.env;
  }
  for (auto& kv : env) full_env.push_back(std::move(kv));
  std::string dir = cwd.empty() ? base : ResolvePath(base, cwd);
  if (cwd.empty() && !IsDirectory(dir)) dir = IsDirectory(cfg_.workspace) ? cfg_.workspace : "/";

  auto p = std::make_unique<BgProc>();
  p->id = id;
  p->command = command;
  p->start_ms = NowUnixMs();
  p->tag = "COVE_PROCESS_TAG=" + std::to_string(getpid()) + "." + std::to_string(++bg_tags_);
  p->log = std::make_unique<ProcessLog>(ProcessLogPrefix(bg_tags_),
                                        ProcessLog::Limits{2 * cfg_.process_buffer, cfg_.process_log_limit});

  int pr[2][2];
  UniqueFd w[2];
  for (int i = 0; i < 2; ++i) {
    if (pipe2(pr[i], O_CLOEXEC) != 0) return ErrorReply("COMMAND_EXECUTION_ERROR", "pipe2 failed");
    p->fd[i].Reset(pr[i][0]);
    w[i].Reset(pr[i][1]);
    fcntl(pr[i][0], F_SETFL, O_NONBLOCK);
  }
  SpawnSpec sp;
  sp.path = cfg_.bash.empty() ? cfg_.sh : cfg_.bash;
  sp.env = BuildEnv(full_env, &ident);
  sp.env.push_back(p->tag);
  if (ident.set) {
    sp.set_ids = true;
    sp.uid = ident.uid;
    sp.gid = ident.gid;
    sp.groups = ident.groups;
  }
  sp.cwd = dir;
  sp.fds = {{devnull_, 0}, {w[0].get(), 1}, {w[1].get(), 2}};
  sp.setsid = true;
  UniqueFd script;
  Status staged = PrepareShellCommand(command, !cfg_.bash.empty(), &sp, &script);
  Result<pid_t> pid = staged.ok() ? Spawn(sp) : Result<pid_t>(staged.error());
  script.Reset();
  if (!pid.ok()) {
    // Kept (status "error") so that get/list show what happened.
    p->status = "error";
    p->exited = true;
    p->end_ms = p->start_ms;
    for (auto& f : p->fd) f.Reset();
    std::string msg = "cannot start process: " + pid.error().ToString();
    bg_.emplace(id, std::move(p));
    bg_finished_.push_back(id);
    EvictFinished();
    return ErrorReply("COMMAND_EXECUTION_ERROR", msg, json{{"processId", id}, {"cwd", dir}});
  }
  p->pid = *pid;
  BgProc* raw = p.get();
  bg_.emplace(id, std::move(p));
  children_.Add(raw->pid, [this, id](int status) { OnBgExit(id, status); });
  for (int i = 0; i < 2; ++i)
    raw->tok[i] = loop_.Watch(raw->fd[i].get(), EPOLLIN, [this, id, i](uint32_t) { OnBgReadable(id, i); });
  if (timeout.value_or(0) > 0) {
    uint64_t ms = std::min<uint64_t>(*timeout, 365ull * 24 * 3600 * 1000);
    raw->timer = loop_.AddTimer(MonotonicNs() + static_cast<int64_t>(ms) * 1000000, [this, id] {
      auto it = bg_.find(id);
      if (it == bg_.end()) return;
      it->second->timer = 0;
      KillBg(it->second.get(), SIGTERM, true);
    });
  }
  log::Info("process {} started: pid {}", id, raw->pid);
  return json{{"processId", id}, {"pid", raw->pid}, {"command", command}, {"startTime", IsoTimestamp(raw->start_ms)}};
}

void Processes::OnBgReadable(const std::string& id, int i) {
  auto it = bg_.find(id);
  if (it == bg_.end()) return;
  BgProc* p = it->second.get();
  // What the pipe holds now, in full reads (a short read means it is empty;
  // at most kReadsPerWakeup, output_pipe.h), then the followers once: one
  // event for it all rather than one per read.
  char buf[kChunkMax];
  for (int reads = 0; reads < kReadsPerWakeup; ++reads) {
    ssize_t n = read(p->fd[i].get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      BgCloseStream(p, i);
      break;
    }
    BgAppend(p, i, std::string_view(buf, static_cast<size_t>(n)), false);
    if (static_cast<size_t>(n) < sizeof buf) break;
  }
  if (!p->followers.empty()) PumpFollowers(p);
}

void Processes::BgCloseStream(BgProc* p, int i) {
  loop_.Unwatch(p->tok[i]);
  p->tok[i] = 0;
  p->fd[i].Reset();
  if (!p->carry[i].empty()) {
    std::string tail = std::move(p->carry[i]);
    p->carry[i].clear();
    BgAppend(p, i, tail, true);  // replaced by U+FFFD when sent
  }
}

void Processes::BgAppend(BgProc* p, int i, std::string_view data, bool raw) {
  std::string joined;
  std::string_view part = data;
  if (!raw) {
    if (!p->carry[i].empty()) {
      joined = p->carry[i];
      joined.append(data);
      part = joined;
    }
    size_t k = CompleteUtf8Prefix(part);
    std::string carry(part.substr(k));
    part = part.substr(0, k);
    p->carry[i] = std::move(carry);
  }
  if (!part.empty()) p->log->Append(i, part);
}

std::string Processes::ProcessLogPrefix(uint64_t n) { return RunDir() + "/logs/" + std::to_string(n) + "."; }

void Processes::OnBgExit(const std::string& id, int status) {
  auto it = bg_.find(id);
  if (it == bg_.end()) return;
  BgProc* p = it->second.get();
  // Output written before the exit is still in the pipes.
  for (int i = 0; i < 2; ++i) {
    if (!p->fd[i]) continue;
    int avail = 0;
    if (ioctl(p->fd[i].get(), FIONREAD, &avail) != 0) continue;
    char buf[kChunkMax];
    while (avail > 0) {
      ssize_t n = read(p->fd[i].get(), buf, std::min<size_t>(sizeof buf, static_cast<size_t>(avail)));
      if (n <= 0) break;
      BgAppend(p, i, std::string_view(buf, static_cast<size_t>(n)), false);
      avail -= static_cast<int>(n);
    }
  }
  p->exited = true;
  p->end_ms = NowUnixMs();
  int code = ExitCodeOf(status);
  if (p->killed) {
    p->status = "killed";
    p->exit_code = p->timed_out ? 124 : (WIFSIGNALED(status) ? code : 128 + p->kill_sig);
  } else {
    p->status = code == 0 ? "completed" : "failed";
    p->exit_code = code;
  }
  if (p->timer) loop_.CancelTimer(p->timer);
  p->timer = 0;
  log::Info("process {} (pid {}) {}: exit code {}", id, p->pid, p->status, *p->exit_code);
  bg_finished_.push_back(id);
  PumpFollowers(p);
  on_exit_(p->id, p->exit_code);
  EvictFinished();
}

void Processes::KillBg(BgProc* p, int sig, bool timeout) {
  if (p->exited) return;
  if (!p->killed) {
    p->killed = true;
    p->kill_sig = sig;
    p->timed_out = timeout;
  }
  if (p->timer) loop_.CancelTimer(p->timer);
  p->timer = 0;
  // The whole tree: the process group, every descendant (also those that
  // left the group with setsid) and everything that carries its tag (also
  // daemons that were re-parented to us).
  std::vector<ProcInfo> snap = {ProcInfo{p->pid, StartTicksOf(p->pid)}};
  for (auto& d : Descendants(p->pid)) snap.push_back(d);
  for (auto& d : ProcessesWithEnv(p->tag)) snap.push_back(d);
  ::kill(-p->pid, sig);
  for (auto& x : snap) ::kill(x.pid, sig);
  pid_t pid = p->pid;
  std::string id = p->id, tag = p->tag;
  loop_.AddTimer(MonotonicNs() + cfg_.process_kill_grace_ms * 1000000, [this, id, pid, tag, snap] {
    auto it = bg_.find(id);
    bool alive = it != bg_.end() && it->second->pid == pid && !it->second->exited;
    for (int round = 0; round < 3; ++round) {
      std::vector<ProcInfo> targets;
      if (alive) {
        ::kill(-pid, SIGKILL);
        targets.push_back(ProcInfo{pid, 0});
        for (auto& d : Descendants(pid)) targets.push_back(d);
      }
      for (auto& x : snap) {
        if (x.start_ticks == 0 || StartTicksOf(x.pid) != x.start_ticks) continue;
        targets.push_back(x);
        for (auto& d : Descendants(x.pid)) targets.push_back(d);
      }
      for (auto& d : ProcessesWithEnv(tag)) targets.push_back(d);
      int n = 0;
      for (auto& x : targets)
        if (::kill(x.pid, SIGKILL) == 0) ++n;
      if (n == 0) break;
    }
  });
}

namespace {

// The next output event from *cur on: {"type": stream, "data": text} with the
// text of consecutive records of one stream while its JSON is shorter than
// kOutputEventJsonTarget (output_pipe.h).
// `only`: the stream to read (records of the other one are skipped), or -1:
// the stream of the next record, ending at the first record of the other.
// Adds the raw bytes taken to *taken; false when the log has nothing more.
bool NextOutputEvent(const ProcessLog::State& st, LogReader* reader, LogReader::Cursor* cur, int only,
                     std::string* ev, int* stream, uint64_t* taken) {
  int s;
  std::string_view text;
  for (;;) {
    if (!reader->Next(st, cur, &s, &text)) return false;
    if (only < 0 || s == only) break;
  }
  *stream = s;
  ev->clear();
  ev->reserve(std::min(kOutputEventJsonTarget, text.size() + text.size() / 8) + 64);
  *ev += "{\"type\":\"";
  *ev += kStreamName[s];
  *ev += "\",\"data\":\"";
  for (;;) {
    AppendJsonUtf8(text, ev);
    *taken += text.size();
    if (ev->size() >= kOutputEventJsonTarget) break;
    LogReader::Cursor before = *cur;
    bool more;
    while ((more = reader->Next(st, cur, &s, &text)) && s != *stream && only >= 0) {
    }
    if (!more) break;
    if (s != *stream) {
      *cur = before;  // the other stream's record comes next, in its own event
      break;
    }
  }
  *ev += "\"}";
  return true;
}

}  // namespace

bool Processes::PumpFollower(BgProc* p, Follower* f) {
  if (!Live(f->chan)) return false;
  const ProcessLog::State& st = p->log->state();
  if (f->cur.at < st.Head()) {  // the log no longer holds what it was to read next
    uint64_t dropped[2];
    for (int i = 0; i < 2; ++i) {
      uint64_t first = st.HeadOffset(i);
      dropped[i] = first > f->pos[i] ? first - f->pos[i] : 0;
      f->pos[i] = std::max(f->pos[i], first);
    }
    f->cur = LogReader::Cursor{st.Head(), 0};
    if (dropped[0] || dropped[1])
      Event(f->chan, Dump(json{{"type", "dropped"}, {"stdout", dropped[0]}, {"stderr", dropped[1]}}));
  }
  std::string ev;
  for (;;) {
    if (!Live(f->chan)) return false;
    if (Held(f->chan)) return true;
    int stream;
    uint64_t taken = 0;
    if (!NextOutputEvent(st, &f->reader, &f->cur, -1, &ev, &stream, &taken)) break;
    f->pos[stream] += taken;
    Event(f->chan, ev);
  }
  if (!p->exited) return true;
  Reply(f->chan, json{{"type", "exit"},
                      {"exitCode", p->exit_code ? json(*p->exit_code) : json(nullptr)},
                      {"status", p->status}});
  return false;
}

bool Processes::PumpFollowers(BgProc* p) {
  for (size_t i = 0; i < p->followers.size();) {
    if (PumpFollower(p, &p->followers[i])) {
      ++i;
    } else {
      p->followers.erase(p->followers.begin() + static_cast<long>(i));
    }
  }
  bool lag = !p->followers.empty() && Blocked();
  if (lag) bg_lagging_ = true;
  return lag;
}

void Processes::PumpAllFollowers() {
  bg_lagging_ = false;
  for (size_t i = 0; i < bg_logs_.size();) {
    if (Blocked()) {
      bg_lagging_ = true;
      return;
    }
    if (PumpLogs(bg_logs_[i].get())) {
      ++i;
    } else {
      bg_logs_.erase(bg_logs_.begin() + static_cast<long>(i));
    }
  }
  for (auto& [id, p] : bg_) {
    if (!p->followers.empty()) PumpFollowers(p.get());
    if (Blocked()) {
      bg_lagging_ = true;
      return;
    }
  }
}

namespace {

std::string LogsReplyTail(const ProcessLog::State& st) {
  return "\",\"stdoutDropped\":" + std::to_string(st.HeadOffset(0)) +
         ",\"stderrDropped\":" + std::to_string(st.HeadOffset(1)) + "}";
}

}  // namespace

void Processes::BgLogs(const Chan& c, BgProc* p) {
  auto snap = p->log->Snapshot();
  std::string head = "{\"processId\":" + Dump(json(p->id)) + ",\"stdout\":\"";
  if (snap->end - snap->Head() <= kInlineLogs) {
    std::string text[2];
    LogReader reader;
    LogReader::Cursor cur{snap->Head(), 0};
    int stream;
    std::string_view part;
    while (reader.Next(*snap, &cur, &stream, &part)) AppendJsonUtf8(part, &text[stream]);
    std::string tail = LogsReplyTail(*snap);
    if (head.size() + text[0].size() + text[1].size() + tail.size() + 32 <= kMaxAgentFrame)
      return ReplyRaw(c, head + text[0] + "\",\"stderr\":\"" + text[1] + tail);
  }
  // Too large for one frame: the output comes as events (with flow control),
  // all of stdout then all of stderr, as the log held it when asked.
  auto t = std::make_unique<LogsTask>();
  t->chan = c;
  t->id = p->id;
  t->cur = LogReader::Cursor{snap->Head(), 0};
  t->snap = std::move(snap);
  LogsTask* raw = t.get();
  bg_logs_.push_back(std::move(t));
  uint64_t gen = c.gen;
  uint32_t cid = c.id;
  SetCancel(c, [this, gen, cid] {
    for (auto it = bg_logs_.begin(); it != bg_logs_.end(); ++it) {
      if ((*it)->chan.gen == gen && (*it)->chan.id == cid) {
        Chan ch = (*it)->chan;
        bg_logs_.erase(it);
        Reply(ch, ErrorReply("OPERATION_INTERRUPTED", "process.logs was cancelled"));
        return;
      }
    }
  });
  if (!PumpLogs(raw)) {
    bg_logs_.pop_back();
  } else if (Blocked()) {
    bg_lagging_ = true;
  }
}

bool Processes::PumpLogs(LogsTask* t) {
  if (!Live(t->chan)) return false;
  std::string ev;
  for (;;) {
    if (Held(t->chan)) return true;
    int stream;
    uint64_t taken = 0;
    if (!NextOutputEvent(*t->snap, &t->reader, &t->cur, t->pass, &ev, &stream, &taken)) {
      if (t->pass == 0) {
        t->pass = 1;
        t->cur = LogReader::Cursor{t->snap->Head(), 0};
        continue;
      }
      ReplyRaw(t->chan, "{\"processId\":" + Dump(json(t->id)) + ",\"stdout\":\"\",\"stderr\":\"" +
                            LogsReplyTail(*t->snap));
      return false;
    }
    Event(t->chan, ev);
  }
}

void Processes::EvictFinished() {
  while (bg_finished_.size() > cfg_.max_finished_processes) {
    std::string id = bg_finished_.front();
    bg_finished_.pop_front();
    auto it = bg_.find(id);
    if (it == bg_.end() || !it->second->exited) continue;
    BgProc* p = it->second.get();
    for (auto& f : p->followers)
      Reply(f.chan, json{{"type", "exit"}, {"exitCode", p->exit_code ? json(*p->exit_code) : json(nullptr)},
                         {"status", p->status}});
    for (int i = 0; i < 2; ++i) loop_.Unwatch(p->tok[i]);
    bg_.erase(it);
  }
}

}  // namespace cove::agent
