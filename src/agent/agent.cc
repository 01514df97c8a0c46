#include "agent/agent.h"

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "base/json_parse.h"
#include "base/log.h"
#include "base/time.h"

namespace cove::agent {

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
  PartEnv env{cfg_, loop_, *this, children_, devnull_.get(), run_dir_};
  commands_ = std::make_unique<Commands>(env);
  sessions_ = std::make_unique<Sessions>(env, *commands_);
  FileCtxOf file_ctx = [this](const std::optional<std::string>& sid) { return sessions_->MakeFileCtx(sid); };
  auto session = [this](const std::string& sid) { return sessions_->Context(sid); };
  file_ops_ = std::make_unique<FileOps>(env, file_ctx);
  processes_ = std::make_unique<Processes>(env, session, [this](const std::string& id, std::optional<int> code) {
    port_watches_->OnProcessExit(id, code);
  });
  port_watches_ = std::make_unique<PortWatches>(env, [this](const std::string& id) {
    std::optional<PortWatches::ProcessState> state;
    if (auto p = processes_->Find(id)) state = PortWatches::ProcessState{p->exited, p->exit_code};
    return state;
  });
  file_watches_ = std::make_unique<FileWatches>(env, file_ctx);
  terminals_ = std::make_unique<Terminals>(env, session);
  code_contexts_ = std::make_unique<CodeContexts>(env);
  parts_ = {file_ops_.get(),     sessions_.get(),     commands_.get(),  processes_.get(),
            port_watches_.get(), file_watches_.get(), terminals_.get(), code_contexts_.get()};
  routes_ = {{"exec", sessions_.get()},           {"session.create", sessions_.get()},
             {"session.delete", sessions_.get()}, {"session.list", sessions_.get()},
             {"process.", processes_.get()},      {"port.watch", port_watches_.get()},
             {"fs.watch", file_watches_.get()},   {"fs.check", file_watches_.get()},
             {"pty.", terminals_.get()},          {"context.", code_contexts_.get()},
             {"file.", file_ops_.get()}};
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
    // Parts that keep their own queues (file reads, process followers, file
    // watches, terminals) send between polls while the connection keeps up.
    bool busy = false;
    for (Part* p : parts_)
      if (!Blocked()) busy |= p->Pump();
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
  std::string().swap(out_);
  out_off_ = 0;
  // Output paused for backpressure flows (and is discarded) again.
  for (uint64_t t : paused_) loop_.Resume(t);
  paused_.clear();
  for (Part* p : parts_) p->OnConnectionLost();
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

void Agent::NoteActivity() {
  last_frame_ns_ = MonotonicNs();
  if (!heap_trim_timer_) ArmHeapTrim();
}

void Agent::ArmHeapTrim() {
  heap_trim_timer_ = loop_.AddTimer(last_frame_ns_ + kHeapTrimDelayNs, [this] {
    heap_trim_timer_ = 0;
    if (MonotonicNs() - last_frame_ns_ < kHeapTrimDelayNs) return ArmHeapTrim();  // busy since
    malloc_trim(0);
  });
}

void Agent::HandleFrame(Frame f) {
  Chan c{gen_, f.channel};
  NoteActivity();
  switch (f.type) {
    case FrameType::kRequest: {
      if (open_.count(f.channel)) return DropConnection("request on an open channel");
      open_[f.channel] = Channel{};
      auto req = ParseJson(f.payload);
      std::string().swap(f.payload);  // free it now (move-assign would keep the buffer)
      if (!req || !req->is_object())
        return Reply(c, ErrorReply("VALIDATION_FAILED", "request is not a JSON object"));
      HandleRequest(c, std::move(*req));
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
      if (file_ops_->Data(c, &f.payload)) return;
      if (terminals_->Input(f.channel, f.payload)) return;
      log::Debug("ignoring data frame on channel {}", f.channel);
      return;
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
  for (Part* p : parts_) p->OnCredit();
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
      std::string().swap(out_);  // the heap is trimmed once the agent is idle (ArmHeapTrim)
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

void Agent::HandleRequest(const Chan& c, json req) {
  auto parsed = ParseAnyOp(req);
  json().swap(req);  // the op holds what its part needs (a large write's content once, not twice)
  if (!parsed.ok()) {
    const Error& e = parsed.error();
    if (auto op = e.context.find("op"); op != e.context.end()) return Reply(c, UnknownOp(op->second));
    auto field = e.context.find("field");
    return Reply(c, ValidationError(e.message, field != e.context.end() ? field->second : ""));
  }
  AnyOp& op = *parsed;
  if (std::holds_alternative<HelloOp>(op)) {
    return Reply(c, json{{"version", kAgentVersion},
                         {"pid", getpid()},
                         {"sessions", sessions_->Ids()},
                         {"window", kChannelWindow},  // this agent honours Window frames
                         {"writeFrames", true},       // file.write takes dataSize and its content in frames
                         {"uptimeMs", (MonotonicNs() - start_ns_) / 1000000}});
  }
  std::string_view name = OpName(op);
  for (const Route& r : routes_) {
    bool prefix = r.op.back() == '.';
    if (prefix ? name.starts_with(r.op) : name == r.op) return r.part->Handle(c, op);
  }
  Reply(c, UnknownOp(std::string(name)));
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
  for (Part* p : parts_) p->Shutdown();
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
