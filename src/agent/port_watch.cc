#include "agent/port_watch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "agent/util.h"
#include "base/time.h"

namespace cove::agent {
namespace {

constexpr size_t kMaxResponse = 8 << 10;  // bytes of a response read at most
constexpr int64_t kMaxAttemptMs = 5000;

// Status code of a status line "HTTP/x.y NNN ...", or -1 while incomplete
// (more data may follow), or 0 if it is not one.
int ParseStatusLine(const std::string& buf, bool eof) {
  size_t eol = buf.find('\n');
  if (eol == std::string::npos && !eof && buf.size() < kMaxResponse) return -1;
  std::string_view line(buf.data(), eol == std::string::npos ? buf.size() : eol);
  if (line.substr(0, 5) != "HTTP/") return 0;
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp + 4 > line.size()) return 0;
  int code = 0;
  for (size_t i = sp + 1; i < sp + 4; ++i) {
    if (line[i] < '0' || line[i] > '9') return 0;
    code = code * 10 + (line[i] - '0');
  }
  if (sp + 4 < line.size() && line[sp + 4] != ' ' && line[sp + 4] != '\r') return 0;
  return code >= 100 ? code : 0;
}

}  // namespace

PortWatches::PortWatches(const PartEnv& env, ProcessLookup find_process)
    : Part(env), find_process_(std::move(find_process)) {}

PortWatches::~PortWatches() = default;

void PortWatches::Handle(const Chan& c, AnyOp& any) {
  if (auto* watch = std::get_if<PortWatchOp>(&any)) return StartPortWatch(c, *watch);
  Part::Handle(c, any);
}

// port 1-65535, mode http or tcp, statuses 100-599, interval >= 0 (ops.h).
void PortWatches::StartPortWatch(const Chan& c, const PortWatchOp& op) {
  const int64_t port = op.port;
  std::string mode = op.mode.value_or("http"), path = op.path.value_or("/"), pid = op.process_id.value_or("");
  if (path.empty()) path = "/";
  if (path[0] != '/' || path.size() > 2048 ||
      std::any_of(path.begin(), path.end(), [](char ch) { return static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f; }))
    return Reply(c, ValidationError("path must start with '/' and contain no spaces or control characters", "path"));
  int lo = static_cast<int>(op.status_min.value_or(200)), hi = static_cast<int>(op.status_max.value_or(399));
  if (lo > hi) return Reply(c, ValidationError("statusMin is greater than statusMax", "statusMin"));
  std::optional<ProcessState> proc;
  if (!pid.empty()) {
    proc = find_process_(pid);
    if (!proc)
      return Reply(c, ErrorReply("PROCESS_NOT_FOUND", "process '" + pid + "' not found", json{{"processId", pid}}));
  }

  Event(c, Dump(json{{"type", "watching"}, {"port", port}}));
  if (proc && proc->exited) {
    return Reply(c, json{{"type", "process_exited"},
                         {"port", port},
                         {"exitCode", proc->exit_code ? json(*proc->exit_code) : json(nullptr)}});
  }
  auto w = std::make_unique<PortWatch>();
  w->id = next_port_watch_++;
  w->chan = c;
  w->port = static_cast<int>(port);
  w->http = mode == "http";
  w->path = path;
  w->status_min = lo;
  w->status_max = hi;
  w->process_id = pid;
  w->interval_ms = std::clamp<int64_t>(op.interval.value_or(500), 100, 10000);
  uint64_t id = w->id;
  port_watches_.emplace(id, std::move(w));
  SetCancel(c, [this, id] {
    json r{{"type", "cancelled"}};
    FinishPortWatch(id, &r);
  });
  PortAttempt(id);
}

void PortWatches::PortAttempt(uint64_t id) {
  auto it = port_watches_.find(id);
  if (it == port_watches_.end()) return;
  PortWatch* w = it->second.get();
  w->next = 0;
  w->attempt_start_ns = MonotonicNs();
  w->connected = false;
  w->rbuf.clear();
  w->wbuf.clear();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return PortAttemptFailed(w);
  w->sock.Reset(fd);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(w->port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int r;
  do r = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  while (r != 0 && errno == EINTR);
  if (r != 0 && errno != EINPROGRESS) return PortAttemptFailed(w);
  if (w->http)
    w->wbuf = "GET " + w->path + " HTTP/1.1\r\nHost: localhost:" + std::to_string(w->port) +
              "\r\nConnection: close\r\n\r\n";
  int64_t tmo = std::min<int64_t>(w->interval_ms, kMaxAttemptMs);
  w->timeout = loop_.AddTimer(w->attempt_start_ns + tmo * 1000000, [this, id] {
    auto it = port_watches_.find(id);
    if (it == port_watches_.end()) return;
    it->second->timeout = 0;
    PortAttemptFailed(it->second.get());
  });
  w->tok = loop_.Watch(fd, EPOLLOUT, [this, id](uint32_t ev) { OnPortEvent(id, ev); });
}

void PortWatches::OnPortEvent(uint64_t id, uint32_t events) {
  auto it = port_watches_.find(id);
  if (it == port_watches_.end()) return;
  PortWatch* w = it->second.get();
  int fd = w->sock.get();
  if (!w->connected) {
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) return PortAttemptFailed(w);
    if (!(events & EPOLLOUT)) return PortAttemptFailed(w);
    w->connected = true;
    if (!w->http) {
      json r{{"type", "ready"}, {"port", w->port}};
      return FinishPortWatch(id, &r);
    }
  }
  if (!w->wbuf.empty()) {
    if (!(events & EPOLLOUT)) return PortAttemptFailed(w);
    ssize_t n = send(fd, w->wbuf.data(), w->wbuf.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      return PortAttemptFailed(w);
    }
    w->wbuf.erase(0, static_cast<size_t>(n));
    if (w->wbuf.empty()) loop_.Modify(w->tok, EPOLLIN);
    return;
  }
  char buf[2048];
  size_t room = kMaxResponse - w->rbuf.size();
  ssize_t n = read(fd, buf, std::min(sizeof buf, room));
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n > 0) w->rbuf.append(buf, static_cast<size_t>(n));
  int code = ParseStatusLine(w->rbuf, n <= 0);
  if (code < 0) return;  // the status line is not complete yet
  if (code > 0 && code >= w->status_min && code <= w->status_max) {
    json r{{"type", "ready"}, {"port", w->port}, {"statusCode", code}};
    return FinishPortWatch(id, &r);
  }
  PortAttemptFailed(w);
}

void PortWatches::ClosePortAttempt(PortWatch* w) {
  loop_.Unwatch(w->tok);
  w->tok = 0;
  if (w->timeout) loop_.CancelTimer(w->timeout);
  w->timeout = 0;
  w->sock.Reset();
  w->connected = false;
  std::string().swap(w->rbuf);
  std::string().swap(w->wbuf);
}

void PortWatches::PortAttemptFailed(PortWatch* w) {
  ClosePortAttempt(w);
  if (w->next) return;
  int64_t at = std::max(w->attempt_start_ns + w->interval_ms * 1000000, MonotonicNs());
  uint64_t id = w->id;
  w->next = loop_.AddTimer(at, [this, id] { PortAttempt(id); });
}

void PortWatches::FinishPortWatch(uint64_t id, const json* reply) {
  auto it = port_watches_.find(id);
  if (it == port_watches_.end()) return;
  std::unique_ptr<PortWatch> w = std::move(it->second);
  port_watches_.erase(it);
  ClosePortAttempt(w.get());
  if (w->next) loop_.CancelTimer(w->next);
  if (reply) Reply(w->chan, *reply);
}

void PortWatches::OnProcessExit(const std::string& process_id, std::optional<int> exit_code) {
  std::vector<uint64_t> ids;
  for (auto& [id, w] : port_watches_)
    if (w->process_id == process_id) ids.push_back(id);
  for (uint64_t id : ids) {
    int port = port_watches_[id]->port;
    json r{{"type", "process_exited"},
           {"port", port},
           {"exitCode", exit_code ? json(*exit_code) : json(nullptr)}};
    FinishPortWatch(id, &r);
  }
}

void PortWatches::OnConnectionLost() {
  std::vector<uint64_t> ids;
  for (auto& [id, w] : port_watches_) ids.push_back(id);
  for (uint64_t id : ids) FinishPortWatch(id, nullptr);
}

}  // namespace cove::agent
