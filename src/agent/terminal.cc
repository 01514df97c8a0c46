#include "agent/terminal.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "agent/proc.h"
#include "agent/util.h"
#include "base/log.h"

namespace cove::agent {
namespace {

constexpr size_t kPtyRing = 256 << 10;          // replay buffer per PTY
constexpr size_t kPtyEvent = 32 << 10;          // raw bytes per output event
constexpr size_t kPtyInputMax = 1 << 20;        // input waiting for the master
constexpr size_t kPtyClientMax = 4 << 20;       // unsent output per channel


const char* SignalName(int sig) {
  switch (sig) {
    case SIGHUP: return "SIGHUP";
    case SIGINT: return "SIGINT";
    case SIGQUIT: return "SIGQUIT";
    case SIGILL: return "SIGILL";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGKILL: return "SIGKILL";
    case SIGSEGV: return "SIGSEGV";
    case SIGPIPE: return "SIGPIPE";
    case SIGALRM: return "SIGALRM";
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    default: return nullptr;
  }
}

// Opens a PTY pair: master nonblocking, both O_CLOEXEC, slave O_NOCTTY.
bool OpenPty(UniqueFd* master, UniqueFd* slave, std::string* err) {
  int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
  if (m < 0) {
    *err = std::string("open /dev/ptmx: ") + strerror(errno);
    return false;
  }
  master->Reset(m);
  int unlock = 0;
  if (ioctl(m, TIOCSPTLCK, &unlock) != 0) {  // unlockpt
    *err = std::string("unlockpt: ") + strerror(errno);
    return false;
  }
#ifdef TIOCGPTPEER
  int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (s >= 0) {
    slave->Reset(s);
    return true;
  }
#endif
  unsigned int n = 0;
  if (ioctl(m, TIOCGPTN, &n) != 0) {  // ptsname
    *err = std::string("ptsname: ") + strerror(errno);
    return false;
  }
  std::string path = "/dev/pts/" + std::to_string(n);
  int s2 = open(path.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (s2 < 0) {
    *err = "open " + path + ": " + strerror(errno);
    return false;
  }
  slave->Reset(s2);
  return true;
}

}  // namespace

Terminals::Terminals(const PartEnv& env, SessionLookup session) : Part(env), session_(std::move(session)) {}

Terminals::~Terminals() = default;

bool Terminals::Pump() {
  if (pty_lagging_) PumpAllPtys();
  return false;
}

void Terminals::Shutdown() {
  for (auto& [id, p] : ptys_) {
    KillDescendants(p->pid, 0);
    ::kill(-p->pid, SIGKILL);
  }
}

void Terminals::Handle(const Chan& c, AnyOp& any) {
  if (auto* attach = std::get_if<PtyAttachOp>(&any)) return PtyAttach(c, *attach);
  auto* resize = std::get_if<PtyResizeOp>(&any);
  if (!resize) return Part::Handle(c, any);
  // cols and rows: 1-1000 (ops.h).
  const std::string& sid = resize->session_id;
  auto it = ptys_.find(sid);
  if (it == ptys_.end())
    return Reply(c, ErrorReply("PTY_NOT_FOUND", "no PTY for session '" + sid + "'", json{{"sessionId", sid}}));
  winsize ws{};
  ws.ws_col = static_cast<uint16_t>(resize->cols);
  ws.ws_row = static_cast<uint16_t>(resize->rows);
  if (ioctl(it->second->master.get(), TIOCSWINSZ, &ws) != 0)
    return Reply(c, ErrorReply("INTERNAL_ERROR", std::string("TIOCSWINSZ: ") + strerror(errno)));
  Reply(c, json::object());
}

// sessionId: 1-256 bytes without NUL; cols and rows 1-1000 (ops.h).
void Terminals::PtyAttach(const Chan& c, const PtyAttachOp& op) {
  const std::string& sid = op.session_id;
  std::string shell = op.shell.value_or("");
  uint16_t cols = static_cast<uint16_t>(op.cols.value_or(80)), rows = static_cast<uint16_t>(op.rows.value_or(24));
  if (sid == kNoSession) return Reply(c, ValidationError("invalid sessionId", "sessionId"));

  Pty* p = nullptr;
  auto it = ptys_.find(sid);
  if (it != ptys_.end()) {
    p = it->second.get();
  } else {
    SessionContext s = session_(sid);  // creates an unknown session, like file ops
    std::string cwd = s.cwd;
    if (!IsDirectory(cwd)) cwd = IsDirectory(cfg_.workspace) ? cfg_.workspace : "/";
    auto extra = s.env;
    extra.emplace_back("TERM", "xterm-256color");
    std::vector<std::string> env = BuildEnv(extra, &s.ident);

    std::string path;
    if (shell.empty()) {
      path = cfg_.bash.empty() ? cfg_.sh : cfg_.bash;
    } else if (shell.find('\0') != std::string::npos) {
      return Reply(c, ValidationError("shell contains a NUL byte", "shell"));
    } else if (shell[0] == '/') {
      if (!IsExecutable(shell))
        return Reply(c, ValidationError("shell '" + shell + "' is not an executable file", "shell"));
      path = shell;
    } else if (shell.find('/') != std::string::npos) {
      return Reply(c, ValidationError("shell must be an absolute path or a name in PATH", "shell"));
    } else {
      std::string search;
      for (const auto& e : env)
        if (e.rfind("PATH=", 0) == 0) search = e.substr(5);
      path = FindOnPath(shell, search);
      if (path.empty()) return Reply(c, ValidationError("shell '" + shell + "' not found in PATH", "shell"));
    }

    UniqueFd master, slave;
    std::string why;
    if (!OpenPty(&master, &slave, &why)) return Reply(c, ErrorReply("PTY_ERROR", "cannot open a PTY: " + why));
    winsize ws{};
    ws.ws_col = cols;
    ws.ws_row = rows;
    ioctl(master.get(), TIOCSWINSZ, &ws);

    SpawnSpec sp;
    sp.path = path;
    sp.argv = {BaseName(path)};
    sp.env = std::move(env);
    if (s.ident.set) {
      sp.set_ids = true;
      sp.uid = s.ident.uid;
      sp.gid = s.ident.gid;
      sp.groups = s.ident.groups;
    }
    sp.cwd = cwd;
    sp.fds = {{slave.get(), 0}, {slave.get(), 1}, {slave.get(), 2}};
    sp.setsid = true;
    sp.ctty = true;
    auto pid = Spawn(sp);
    if (!pid.ok()) return Reply(c, ErrorReply("PTY_ERROR", "cannot start shell: " + pid.error().ToString()));
    slave.Reset();

    auto np = std::make_unique<Pty>();
    p = np.get();
    p->sid = sid;
    p->pid = *pid;
    p->master = std::move(master);
    p->tok = loop_.Watch(p->master.get(), EPOLLIN, [this, sid](uint32_t ev) { OnPtyEvent(sid, ev); });
    children_.Add(*pid, [this, sid](int status) { OnPtyExit(sid, status); });
    ptys_.emplace(sid, std::move(np));
  }

  // Replay, ready, then live output (queued per channel from now on).
  size_t n = std::min(p->ring.size(), kPtyRing);
  Event(c, Dump(json{{"type", "replay"}, {"data", Base64Encode(std::string_view(p->ring).substr(p->ring.size() - n))}}));
  Event(c, Dump(json{{"type", "ready"}}));
  p->clients.push_back(PtyClient{c});
  pty_chans_[c.id] = sid;
  uint64_t gen = c.gen;
  uint32_t cid = c.id;
  SetCancel(c, [this, sid, gen, cid] { PtyDetach(sid, gen, cid); });
}

void Terminals::PtyDetach(const std::string& sid, uint64_t gen, uint32_t chan_id) {
  auto it = ptys_.find(sid);
  if (it == ptys_.end()) return;
  auto& cl = it->second->clients;
  for (auto c = cl.begin(); c != cl.end(); ++c) {
    if (c->chan.gen == gen && c->chan.id == chan_id) {
      Chan ch = c->chan;
      cl.erase(c);
      pty_chans_.erase(chan_id);
      Reply(ch, json{{"type", "detached"}});
      return;
    }
  }
}

void Terminals::OnConnectionLost() {
  for (auto& [sid, p] : ptys_) p->clients.clear();
  pty_chans_.clear();
  pty_lagging_ = false;
}

bool Terminals::Input(uint32_t chan_id, std::string_view data) {
  auto ci = pty_chans_.find(chan_id);
  if (ci == pty_chans_.end()) return false;
  auto it = ptys_.find(ci->second);
  if (it == ptys_.end()) return true;
  Pty* p = it->second.get();
  if (p->in.empty()) {
    while (!data.empty()) {
      ssize_t n = write(p->master.get(), data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) data = {};  // EIO: the slave side is gone
        break;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
  }
  if (!data.empty()) {
    size_t room = kPtyInputMax - std::min(kPtyInputMax, p->in.size());
    if (data.size() > room) log::Warn("pty {}: input buffer full, dropping {} bytes", p->sid, data.size() - room);
    p->in.append(data.substr(0, room));
  }
  PtyWatchMask(p);
  return true;
}

void Terminals::PtyWatchMask(Pty* p) {
  if (p->tok) loop_.Modify(p->tok, p->in.empty() ? uint32_t{EPOLLIN} : uint32_t{EPOLLIN | EPOLLOUT});
}

void Terminals::OnPtyEvent(const std::string& sid, uint32_t events) {
  auto it = ptys_.find(sid);
  if (it == ptys_.end()) return;
  Pty* p = it->second.get();
  if ((events & EPOLLOUT) && !p->in.empty()) {
    ssize_t n = write(p->master.get(), p->in.data(), p->in.size());
    if (n > 0) p->in.erase(0, static_cast<size_t>(n));
    else if (n < 0 && errno != EAGAIN && errno != EINTR) p->in.clear();
    if (p->in.empty()) std::string().swap(p->in);
    PtyWatchMask(p);
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) PtyRead(p);
}

void Terminals::PtyRead(Pty* p) {
  char buf[kPtyEvent];
  for (int i = 0; i < 8; ++i) {
    ssize_t n = read(p->master.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n < 0 && errno == EAGAIN) break;
      // EIO: no process holds the slave side any more. Stop watching (HUP
      // would repeat); the PTY goes when the shell is reaped.
      loop_.Unwatch(p->tok);
      p->tok = 0;
      break;
    }
    std::string_view d(buf, static_cast<size_t>(n));
    p->ring.append(d);
    if (p->ring.size() > kPtyRing + (64 << 10)) p->ring.erase(0, p->ring.size() - kPtyRing);
    for (auto& c : p->clients) {
      if (!c.q.empty() && c.q.back().size() + d.size() <= kPtyEvent) {
        c.q.back().append(d);  // coalesce small reads
      } else {
        c.q.emplace_back(d);
      }
      c.qbytes += d.size();
      while (c.qbytes > kPtyClientMax && c.q.size() > 1) {  // slow channel: drop its oldest
        c.qbytes -= c.q.front().size();
        c.dropped += c.q.front().size();
        c.q.pop_front();
      }
    }
    if (static_cast<size_t>(n) < sizeof buf) break;
  }
  if (PumpPty(p, false)) pty_lagging_ = true;
}

bool Terminals::PumpPty(Pty* p, bool force) {
  bool lag = false;
  for (auto& c : p->clients) {
    while (!c.q.empty()) {
      if (!force && Held(c.chan)) {
        lag = true;
        break;
      }
      std::string d = std::move(c.q.front());
      c.q.pop_front();
      c.qbytes -= d.size();
      Event(c.chan, Dump(json{{"type", "output"}, {"data", Base64Encode(d)}}));
    }
  }
  return lag;
}

void Terminals::PumpAllPtys() {
  bool lag = false;
  for (auto& [sid, p] : ptys_) lag |= PumpPty(p.get(), false);
  pty_lagging_ = lag;
}

void Terminals::OnPtyExit(const std::string& sid, int status) {
  auto it = ptys_.find(sid);
  if (it == ptys_.end()) return;
  Pty* p = it->second.get();
  // Output written just before the exit is still in the master.
  if (p->tok) PtyRead(p);
  PumpPty(p, true);
  json r = {{"type", "exit"}};
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    r["code"] = 128 + sig;
    const char* name = SignalName(sig);
    r["signal"] = name ? json(name) : json(sig);
  } else {
    r["code"] = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
  }
  for (auto& c : p->clients) {
    pty_chans_.erase(c.chan.id);
    Reply(c.chan, r);
  }
  loop_.Unwatch(p->tok);
  // Whatever the shell left running on the terminal gets SIGHUP from the
  // kernel when the master closes.
  ptys_.erase(it);
}

}  // namespace cove::agent
