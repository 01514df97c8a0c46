// Integration tests: the real cove-agent binary as a plain child process
// (not in a sandbox), with a listening socket in a temp dir as fd 3 and
// COVE_AGENT_WORKSPACE in a temp dir, driven through frames.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <thread>

#include "agent/config.h"
#include "agent/frame.h"
#include "agent/output_pipe.h"
#include "agent/process_log.h"
#include "agent/util.h"
#include "base/testing/wait_until.h"
#include "base/time.h"
#include "sys/proc_stat.h"

namespace cove::agent {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

struct Result {
  std::vector<json> events;
  json reply;
  std::string Stream(const char* type) const {
    std::string s;
    for (auto& e : events)
      if (e.value("type", "") == type) s += e.value("data", "");
    return s;
  }
  std::string Out() const { return Stream("stdout"); }
  std::string Err() const { return Stream("stderr"); }
  std::string Code() const { return reply.contains("error") ? reply["error"].value("code", "") : ""; }
};

using cove::testing::WaitUntil;

class Client {
 public:
  explicit Client(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  void SendRaw(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }
  uint32_t Send(const json& req) {
    uint32_t ch = ++next_;
    SendRaw(EncodeFrame(ch, FrameType::kRequest, req.dump()));
    SendRaw(EncodeFrame(ch, FrameType::kWindow, EncodeWindow(1u << 30)));  // these tests read at once
    return ch;
  }
  void Cancel(uint32_t ch) { SendRaw(EncodeFrame(ch, FrameType::kCancel, "")); }

  // Next frame, or nullopt on EOF/timeout.
  std::optional<Frame> Recv(int timeout_ms = 20000) {
    for (;;) {
      if (auto f = dec_.Next()) {
        EXPECT_LE(f->payload.size(), kMaxAgentFrame);
        return f;
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
      char buf[1 << 16];
      ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) return std::nullopt;
      if (!dec_.Feed(std::string_view(buf, static_cast<size_t>(n))).ok()) return std::nullopt;
    }
  }
  // Collects events and the reply of channel ch (frames of other channels are kept).
  Result Wait(uint32_t ch, int timeout_ms = 20000) {
    Result r;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      // Frames for ch that arrived while waiting for another channel.
      auto it = stash_.find(ch);
      if (it != stash_.end() && !it->second.empty()) {
        Frame f = std::move(it->second.front());
        it->second.erase(it->second.begin());
        json j = json::parse(f.payload, nullptr, false);
        EXPECT_FALSE(j.is_discarded()) << f.payload;
        if (f.type == FrameType::kReply) {
          r.reply = j;
          return r;
        }
        r.events.push_back(j);
        continue;
      }
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now())
                                      .count());
      auto f = Recv(std::max(left, 0));
      if (!f) {
        ADD_FAILURE() << "no reply on channel " << ch;
        return r;
      }
      stash_[f->channel].push_back(std::move(*f));
    }
  }
  Result Call(const json& req, int timeout_ms = 20000) { return Wait(Send(req), timeout_ms); }
  // Next frame of channel ch within timeout_ms (frames of other channels are stashed).
  std::optional<Frame> NextOn(uint32_t ch, int timeout_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      auto it = stash_.find(ch);
      if (it != stash_.end() && !it->second.empty()) {
        Frame f = std::move(it->second.front());
        it->second.erase(it->second.begin());
        return f;
      }
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now())
                                      .count());
      if (left <= 0) return std::nullopt;
      auto f = Recv(left);
      if (!f) return std::nullopt;
      stash_[f->channel].push_back(std::move(*f));
    }
  }

  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  uint32_t next_ = 0;
  FrameDecoder dec_{kMaxAgentFrame};
  std::map<uint32_t, std::vector<Frame>> stash_;
};

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(0); }
  void TearDown() override { Stop(); }

  void Start(rlim_t fsize_limit, const char* shell = nullptr) {
    char tmpl[] = "/tmp/cove-agent-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ws_ = dir_ + "/ws";
    fs::create_directories(ws_);
    sock_ = dir_ + "/agent.sock";
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, sock_.c_str(), sizeof a.sun_path - 1);
    ASSERT_EQ(bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(listen(ls, 8), 0);
    std::string env_ws = "COVE_AGENT_WORKSPACE=" + ws_;
    std::string env_run = "COVE_AGENT_RUNDIR=" + dir_ + "/run";
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      if (ls == 3) {
        fcntl(3, F_SETFD, 0);
      } else {
        dup2(ls, 3);
      }
      if (fsize_limit) {
        rlimit rl{fsize_limit, fsize_limit};
        setrlimit(RLIMIT_FSIZE, &rl);
      }
      setenv("COVE_AGENT_WORKSPACE", ws_.c_str(), 1);
      setenv("COVE_AGENT_RUNDIR", (dir_ + "/run").c_str(), 1);
      setenv("COVE_SECRET_INTERNAL", "must-not-leak", 1);
      setenv("SANDBOX_VAR", "from-agent-env", 1);
      if (shell) setenv("COVE_AGENT_SHELL", shell, 1);
      unsetenv("TERM");
      unsetenv("LANG");
      unsetenv("HOME");
      execl(COVE_AGENT_BIN, "cove-agent", nullptr);
      _exit(127);
    }
    close(ls);
    c_ = std::make_unique<Client>(sock_);
    ASSERT_TRUE(c_->ok());
  }

  void Stop() {
    c_.reset();
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int st;
      waitpid(pid_, &st, 0);
      EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "agent exit status " << st;
      pid_ = -1;
    }
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  bool AgentAlive() { return pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }
  // The parent of p; 0 once p is gone (reaped).
  static pid_t ParentOf(pid_t p) {
    auto stat = sys::ReadProcStat(p);
    return stat.ok() ? stat->ppid : 0;
  }
  // Whether a descendant of the agent runs the command line args (words joined by spaces).
  bool AgentRuns(const std::string& args) {
    std::error_code ec;
    for (auto& e : fs::directory_iterator("/proc", ec)) {
      std::string name = e.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream f(e.path() / "cmdline");  // (a process that ends meanwhile reads as empty)
      std::string cmd;
      std::getline(f, cmd);
      std::replace(cmd.begin(), cmd.end(), '\0', ' ');
      if (!cmd.empty() && cmd.back() == ' ') cmd.pop_back();
      if (cmd != args) continue;
      for (pid_t p = std::stoi(name); p > 1; p = ParentOf(p))
        if (p == pid_) return true;
    }
    return false;
  }
  std::string ReadFile(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }
  json Exec(const std::string& cmd, const std::string& session = "s") {
    return json{{"op", "exec"}, {"command", cmd}, {"sessionId", session}};
  }
  long AgentRssKb() {
    std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(f, line))
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
  }

  std::string dir_, ws_, sock_;
  pid_t pid_ = -1;
  std::unique_ptr<Client> c_;
};

TEST_F(AgentTest, Hello) {
  auto r = c_->Call({{"op", "hello"}});
  EXPECT_EQ(r.reply["version"], "0.1.0");
  EXPECT_EQ(r.reply["pid"], pid_);
  EXPECT_TRUE(r.reply["sessions"].is_array());
  EXPECT_TRUE(r.reply["uptimeMs"].is_number());
  EXPECT_EQ(r.reply["window"], kChannelWindow);
}

// Flow control: a channel gets events only within the credit coved grants it,
// and a channel without credit stalls its own command only.
TEST_F(AgentTest, ChannelCreditBoundsEventsAndStallsOnlyItsOwnCommand) {
  constexpr uint32_t kCh = 1000;
  c_->SendRaw(EncodeFrame(kCh, FrameType::kRequest, Exec("yes", "starved").dump()));
  EXPECT_FALSE(c_->NextOn(kCh, 500).has_value()) << "events without credit";
  EXPECT_EQ(c_->Call(Exec("echo other", "busy")).Out(), "other\n");
  EXPECT_EQ(c_->Call({{"op", "hello"}}).reply["version"], "0.1.0");
  c_->SendRaw(EncodeFrame(kCh, FrameType::kWindow, EncodeWindow(100000)));
  size_t got = 0;
  while (auto f = c_->NextOn(kCh, 500)) {
    ASSERT_EQ(f->type, FrameType::kEvent);
    got += f->payload.size();
  }
  EXPECT_GE(got, 100000u);
  EXPECT_LE(got, 100000u + 3 * (64u << 10)) << "more than the credit and one event";
  // A Window frame for a channel that is not open is ignored.
  c_->SendRaw(EncodeFrame(4242, FrameType::kWindow, EncodeWindow(1)));
  c_->Cancel(kCh);
  auto reply = c_->Wait(kCh);
  EXPECT_EQ(reply.reply["exitCode"], 130);
  EXPECT_EQ(c_->Call(Exec("echo free", "starved")).Out(), "free\n");
  // A malformed Window frame drops the connection.
  c_->SendRaw(EncodeFrame(kCh, FrameType::kWindow, "abc"));
  EXPECT_FALSE(c_->Recv(2000).has_value());
  c_ = std::make_unique<Client>(sock_);
  EXPECT_EQ(c_->Call(Exec("echo again")).Out(), "again\n");
}

TEST_F(AgentTest, SessionPersistsCwdEnvFunctionsAliases) {
  fs::create_directories(ws_ + "/sub");
  auto r = c_->Call(Exec("pwd"));
  EXPECT_EQ(r.Out(), ws_ + "\n");
  EXPECT_EQ(r.reply["exitCode"], 0);
  c_->Call(Exec("cd sub && export FOO=bar && greet() { echo hi \"$1\"; }; alias ll='echo aliased'"));
  r = c_->Call(Exec("pwd; echo $FOO; greet you; ll"));
  EXPECT_EQ(r.Out(), ws_ + "/sub\nbar\nhi you\naliased\n");
  // A syntax error does not desynchronise the shell.
  r = c_->Call(Exec("if then fi'"));
  EXPECT_NE(r.reply["exitCode"], 0);
  EXPECT_NE(r.Err(), "");
  r = c_->Call(Exec("echo still $FOO"));
  EXPECT_EQ(r.Out(), "still bar\n");
  // Exit codes, and commands that try to read stdin get EOF.
  r = c_->Call(Exec("cat; (exit 7)"));
  EXPECT_EQ(r.reply["exitCode"], 7);
  r = c_->Call({{"op", "session.list"}});
  EXPECT_EQ(r.reply["sessions"], json::array({"s"}));
}

TEST_F(AgentTest, DefaultEnvironment) {
  auto r = c_->Call(Exec("echo $TERM $LANG $HOME $SANDBOX_VAR ${COVE_SECRET_INTERNAL:-none}; echo $PATH"));
  // Defaults, overridden by the agent's own environment (PATH here).
  EXPECT_EQ(r.Out(), "xterm-256color C.UTF-8 /root from-agent-env none\n" + std::string(getenv("PATH")) + "\n");
  r = c_->Call({{"op", "exec"}, {"command", "echo ${COVE_SECRET_INTERNAL:-none} $SANDBOX_VAR"}});
  EXPECT_EQ(r.Out(), "none from-agent-env\n");
  // session.create env and per-command env.
  r = c_->Call({{"op", "session.create"}, {"id", "e"}, {"env", {{"A", "1"}, {"B", "two words"}}}});
  EXPECT_EQ(r.reply["id"], "e");
  r = c_->Call({{"op", "exec"}, {"command", "echo $A/$B/$C"}, {"sessionId", "e"}, {"env", {{"C", "3"}}}});
  EXPECT_EQ(r.Out(), "1/two words/3\n");
  r = c_->Call(Exec("echo $A/$B/$C", "e"));
  EXPECT_EQ(r.Out(), "1/two words/\n");
}

TEST_F(AgentTest, PerCommandCwdDoesNotPersist) {
  fs::create_directories(ws_ + "/d");
  auto r = c_->Call({{"op", "exec"}, {"command", "pwd; cd /"}, {"sessionId", "s"}, {"cwd", "d"}});
  EXPECT_EQ(r.Out(), ws_ + "/d\n");
  r = c_->Call(Exec("pwd"));
  EXPECT_EQ(r.Out(), ws_ + "\n");
  r = c_->Call({{"op", "exec"}, {"command", "pwd"}, {"sessionId", "s"}, {"cwd", "/nonexistent"}});
  EXPECT_EQ(r.reply["exitCode"], 1);
  r = c_->Call({{"op", "exec"}, {"command", "pwd"}, {"cwd", "/nonexistent"}});
  EXPECT_EQ(r.reply["exitCode"], 1);
  EXPECT_NE(r.Err().find("nonexistent"), std::string::npos);
}

TEST_F(AgentTest, ExitTerminatesSessionThenFreshShell) {
  c_->Call(Exec("export X=1; cd /"));
  auto r = c_->Call(Exec("echo bye; exit 3"));
  EXPECT_EQ(r.Out(), "bye\n");
  EXPECT_EQ(r.reply["exitCode"], 3);
  EXPECT_EQ(r.reply["sessionTerminated"], true);
  r = c_->Call(Exec("echo x$X; pwd"));
  EXPECT_EQ(r.Out(), "x\n" + ws_ + "\n");
  EXPECT_EQ(r.reply["exitCode"], 0);
  EXPECT_FALSE(r.reply.contains("sessionTerminated"));
}

TEST_F(AgentTest, TimeoutKillsCommandSessionSurvives) {
  c_->Call(Exec("export KEEP=yes"));
  std::string pidfile = dir_ + "/sleep.pid";
  auto t0 = MonotonicNs();
  auto r = c_->Call({{"op", "exec"},
                     {"command", "sleep 100 & echo $! > " + pidfile + "; wait"},
                     {"sessionId", "s"},
                     {"timeoutMs", 300}});
  auto ms = (MonotonicNs() - t0) / 1000000;
  EXPECT_EQ(r.reply["exitCode"], 124);
  EXPECT_EQ(r.reply["timedOut"], true);
  EXPECT_FALSE(r.reply.contains("sessionReset"));
  EXPECT_GE(ms, 250);
  EXPECT_LT(ms, 3000);
  pid_t sleeper = std::stoi(ReadFile(pidfile));
  WaitUntil([&] { return kill(sleeper, 0) != 0; }, "the sleep of the timed-out command to be gone");
  r = c_->Call(Exec("echo $KEEP"));
  EXPECT_EQ(r.Out(), "yes\n");
  // Sessionless timeout.
  r = c_->Call({{"op", "exec"}, {"command", "sleep 100"}, {"timeoutMs", 200}});
  EXPECT_EQ(r.reply["exitCode"], 124);
  EXPECT_EQ(r.reply["timedOut"], true);
}

TEST_F(AgentTest, StuckShellIsReplaced) {
  c_->Call(Exec("export GONE=1"));
  auto r = c_->Call({{"op", "exec"}, {"command", "while :; do :; done"}, {"sessionId", "s"}, {"timeoutMs", 200}});
  EXPECT_EQ(r.reply["exitCode"], 124);
  EXPECT_EQ(r.reply["timedOut"], true);
  EXPECT_EQ(r.reply["sessionReset"], true);
  r = c_->Call(Exec("echo ok${GONE}"));
  EXPECT_EQ(r.Out(), "ok\n");
  EXPECT_EQ(r.reply["exitCode"], 0);
}

TEST_F(AgentTest, CancelStopsCommand) {
  uint32_t ch = c_->Send(Exec("echo started; sleep 100"));
  WaitUntil([&] { return AgentRuns("sleep 100"); }, "the command to start");
  c_->Cancel(ch);
  auto r = c_->Wait(ch, 5000);
  EXPECT_EQ(r.reply["cancelled"], true);
  EXPECT_EQ(r.Out(), "started\n");
  // Queued behind a running command, cancelled before it starts.
  uint32_t a = c_->Send(Exec("sleep 0.5; echo first"));
  uint32_t b = c_->Send(Exec("echo second"));
  c_->Cancel(b);
  auto rb = c_->Wait(b, 5000);
  EXPECT_EQ(rb.reply["cancelled"], true);
  EXPECT_EQ(rb.Out(), "");
  auto ra = c_->Wait(a, 5000);
  EXPECT_EQ(ra.Out(), "first\n");
  // Sessionless.
  ch = c_->Send({{"op", "exec"}, {"command", "sleep 100"}});
  WaitUntil([&] { return AgentRuns("sleep 100"); }, "the sessionless command to start");
  c_->Cancel(ch);
  r = c_->Wait(ch, 5000);
  EXPECT_EQ(r.reply["cancelled"], true);
}

TEST_F(AgentTest, StdoutStderrOrder) {
  auto r = c_->Call(Exec("echo a; sleep 0.05; echo b >&2; sleep 0.05; echo c"));
  ASSERT_EQ(r.events.size(), 3u) << json(r.events).dump();
  EXPECT_EQ(r.events[0], (json{{"type", "stdout"}, {"data", "a\n"}}));
  EXPECT_EQ(r.events[1], (json{{"type", "stderr"}, {"data", "b\n"}}));
  EXPECT_EQ(r.events[2], (json{{"type", "stdout"}, {"data", "c\n"}}));
  // Back to back, each stream keeps its own order.
  r = c_->Call(Exec("echo a; echo b >&2; echo c"));
  EXPECT_EQ(r.Out(), "a\nc\n");
  EXPECT_EQ(r.Err(), "b\n");
}

TEST_F(AgentTest, LargeOutputFullyReceived) {
  for (std::string sid : {"s", ""}) {
    json req = {{"op", "exec"}, {"command", "head -c 10000000 /dev/zero | tr '\\0' x; echo -n END"}};
    if (!sid.empty()) req["sessionId"] = sid;
    auto r = c_->Call(req, 60000);
    std::string out = r.Out();
    EXPECT_EQ(out.size(), 10000003u);
    EXPECT_EQ(out.substr(out.size() - 4), "xEND");
    EXPECT_EQ(out.find_first_not_of('x'), 10000000u);
    EXPECT_EQ(r.reply["exitCode"], 0);
    // Reads join into one event up to a bound (output_pipe.h).
    for (auto& e : r.events) EXPECT_LE(e.dump().size(), kOutputEventJsonTarget + 6 * kReadChunk + 64);
  }
}

TEST_F(AgentTest, Utf8AcrossReadsAndInvalidBytes) {
  std::string euro;
  for (int i = 0; i < 100000; ++i) euro += "\xE2\x82\xAC";  // 300000 bytes: reads split characters
  { std::ofstream(ws_ + "/euro.txt", std::ios::binary) << euro; }
  auto r = c_->Call(Exec("cat euro.txt"));
  EXPECT_EQ(r.Out(), euro);
  r = c_->Call(Exec("printf 'a\\377b\\n'"));
  EXPECT_EQ(r.Out(), "a\xEF\xBF\xBD" "b\n");
}

TEST_F(AgentTest, LargeCommandGoesThroughScript) {
  std::string payload(20000, 'q');
  auto r = c_->Call(Exec("X=" + payload + "; echo ${#X}; cd /tmp"));
  EXPECT_EQ(r.Out(), "20000\n");
  r = c_->Call(Exec("pwd"));
  EXPECT_EQ(r.Out(), "/tmp\n");  // ran in the session shell, not a subshell
  EXPECT_TRUE(fs::is_empty(dir_ + "/run"));
}

TEST_F(AgentTest, SessionCreateDeleteErrors) {
  auto r = c_->Call({{"op", "session.create"}, {"id", "a"}});
  EXPECT_EQ(r.reply["id"], "a");
  r = c_->Call({{"op", "session.create"}, {"id", "a"}});
  EXPECT_EQ(r.Code(), "SESSION_ALREADY_EXISTS");
  r = c_->Call({{"op", "session.create"}, {"id", "b"}, {"cwd", "/nonexistent"}});
  EXPECT_EQ(r.Code(), "FILE_NOT_FOUND");
  r = c_->Call({{"op", "session.create"}, {"id", 5}});
  EXPECT_EQ(r.Code(), "VALIDATION_FAILED");
  uint32_t ch = c_->Send(Exec("sleep 100", "a"));
  WaitUntil([&] { return AgentRuns("sleep 100"); }, "the command of session a to start");
  r = c_->Call({{"op", "session.delete"}, {"id", "a"}});
  EXPECT_EQ(r.reply["id"], "a");
  auto running = c_->Wait(ch, 5000);
  EXPECT_EQ(running.Code(), "SESSION_DESTROYED");
  r = c_->Call({{"op", "session.list"}});
  EXPECT_EQ(r.reply["sessions"], json::array());
}

// A refused field is VALIDATION_FAILED naming the field; unknown keys are ignored.
TEST_F(AgentTest, ValidationNamesTheField) {
  for (auto [req, field] : std::vector<std::pair<json, std::string>>{
           {{{"op", "exec"}, {"command", "x"}, {"env", {{"A B", "1"}}}}, "env"},
           {{{"op", "exec"}, {"command", ""}}, "command"},
           {{{"op", "session.delete"}, {"sessionId", "a"}}, "id"},
           {{{"op", "process.kill"}, {"processId", "p"}, {"signal", 65}}, "signal"},
           {{{"op", "process.start"}, {"command", "true"}, {"timeoutMs", -1}}, "timeoutMs"},
           {{{"path", "f"}}, "op"},
           // Files and file watches: by their types (ops.h), then by what their handlers check.
           {{{"op", "file.write"}, {"path", "p"}}, "content"},
           {{{"op", "file.write"}, {"path", "p"}, {"content", 1}}, "content"},
           {{{"op", "file.write"}, {"path", "p"}, {"content", "!!"}, {"encoding", "base64"}}, "content"},
           {{{"op", "file.write"}, {"path", "p"}, {"content", "x"}, {"encoding", "latin1"}}, "encoding"},
           {{{"op", "file.write"}, {"path", "p"}, {"contentInData", "yes"}}, "contentInData"},
           {{{"op", "file.read"}, {"path", "f"}, {"maxBytes", -1}}, "maxBytes"},
           {{{"op", "file.read"}, {"path", "f"}, {"rawData", 1}}, "rawData"},
           {{{"op", "file.read"}, {"path", std::string("a\0b", 3)}}, "path"},
           {{{"op", "file.delete"}, {"path", ""}}, "path"},
           {{{"op", "file.exists"}, {"path", "f"}, {"sessionId", ""}}, "sessionId"},
           {{{"op", "file.move"}, {"sourcePath", "a"}}, "destinationPath"},
           {{{"op", "file.mkdir"}, {"path", "m"}, {"recursive", "yes"}}, "recursive"},
           {{{"op", "file.list"}, {"path", "."}, {"includeHidden", 1}}, "includeHidden"},
           {{{"op", "fs.watch"}, {"path", "."}, {"events", json::array()}}, "events"},
           {{{"op", "fs.watch"}, {"path", "."}, {"events", {"open"}}}, "events"},
           {{{"op", "fs.watch"}, {"path", "."}, {"include", {"[ab].txt"}}}, "include"},
           {{{"op", "fs.watch"}, {"path", "."}, {"include", {"a"}}, {"exclude", {"b"}}}, "include"},
           {{{"op", "fs.watch"}, {"path", "."}, {"exclude", {""}}}, "exclude"},
           {{{"op", "fs.check"}, {"path", "."}, {"exclude", "x"}}, "exclude"},
           {{{"op", "fs.check"}, {"path", "."}, {"since", 5}}, "since"}}) {
    auto r = c_->Call(req);
    EXPECT_EQ(r.Code(), "VALIDATION_FAILED") << req.dump();
    EXPECT_EQ(r.reply["error"]["context"]["field"], field) << req.dump();
  }
  auto r = c_->Call({{"op", "exec"}, {"command", "echo ok"}, {"fromANewerCoved", {1, 2}}});
  EXPECT_EQ(r.Out(), "ok\n");
  r = c_->Call({{"op", "file.nope"}, {"path", "f"}});
  EXPECT_EQ(r.Code(), "VALIDATION_FAILED");
  EXPECT_EQ(r.reply["error"]["context"]["op"], "file.nope");
}

TEST_F(AgentTest, UserSession) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch users";
  auto r = c_->Call({{"op", "session.create"}, {"id", "u"}, {"user", "user"}, {"cwd", "/tmp"}});
  ASSERT_EQ(r.reply["id"], "u") << r.reply.dump();
  r = c_->Call(Exec("id -u; echo $HOME $USER", "u"));
  EXPECT_EQ(r.Out(), "1000\n/home/user user\n");
  r = c_->Call({{"op", "session.create"}, {"id", "v"}, {"user", "no-such-user"}});
  EXPECT_EQ(r.Code(), "VALIDATION_FAILED");
}

TEST_F(AgentTest, FileRoundTripUtf8AndBinary) {
  auto r = c_->Call({{"op", "file.write"}, {"path", "dir/sub/t.txt"}, {"content", "h\xC3\xA9llo\n"}});
  EXPECT_EQ(r.reply["path"], ws_ + "/dir/sub/t.txt");
  EXPECT_EQ(ReadFile(ws_ + "/dir/sub/t.txt"), "h\xC3\xA9llo\n");
  r = c_->Call({{"op", "file.read"}, {"path", "dir/sub/t.txt"}});
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0], (json{{"type", "metadata"}, {"mimeType", "text/plain"}, {"size", 7},
                               {"isBinary", false}, {"encoding", "utf-8"}}));
  EXPECT_EQ(r.events[1]["data"], "h\xC3\xA9llo\n");
  EXPECT_EQ(r.reply, (json{{"type", "complete"}, {"bytesRead", 7}}));

  std::string bin(300000, '\0');
  std::mt19937 rng(42);
  for (auto& ch : bin) ch = static_cast<char>(rng());
  r = c_->Call({{"op", "file.write"}, {"path", "/" + ws_.substr(1) + "/b.png"}, {"content", Base64Encode(bin)},
                {"encoding", "base64"}});
  ASSERT_FALSE(r.reply.contains("error")) << r.reply.dump();
  EXPECT_EQ(ReadFile(ws_ + "/b.png"), bin);
  r = c_->Call({{"op", "file.read"}, {"path", "b.png"}});
  ASSERT_GE(r.events.size(), 2u);
  EXPECT_EQ(r.events[0]["mimeType"], "image/png");
  EXPECT_EQ(r.events[0]["isBinary"], true);
  EXPECT_EQ(r.events[0]["encoding"], "base64");
  std::string got;
  for (size_t i = 1; i < r.events.size(); ++i) {
    EXPECT_EQ(r.events[i]["type"], "chunk");
    EXPECT_LE(r.events[i]["data"].get<std::string>().size(), 65536u);
    got += *Base64Decode(r.events[i]["data"].get<std::string>());
  }
  EXPECT_EQ(got, bin);
  EXPECT_EQ(r.reply["bytesRead"], 300000);

  // Text file asked as base64; binary without extension; NUL makes it binary.
  r = c_->Call({{"op", "file.read"}, {"path", "dir/sub/t.txt"}, {"encoding", "base64"}});
  EXPECT_EQ(r.events[0]["encoding"], "base64");
  EXPECT_EQ(*Base64Decode(r.events[1]["data"].get<std::string>()), "h\xC3\xA9llo\n");
  c_->Call({{"op", "file.write"}, {"path", "nul"}, {"content", std::string("a\0b", 3)}});
  r = c_->Call({{"op", "file.read"}, {"path", "nul"}});
  EXPECT_EQ(r.events[0]["mimeType"], "application/octet-stream");
  EXPECT_EQ(r.events[0]["isBinary"], true);
  // Empty file.
  c_->Call({{"op", "file.write"}, {"path", "empty.txt"}, {"content", ""}});
  r = c_->Call({{"op", "file.read"}, {"path", "empty.txt"}});
  EXPECT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.reply["bytesRead"], 0);
  // A large text file arrives in chunks that split no character.
  std::string big;
  while (big.size() < 1000000) big += "l\xC3\xADnea \xE2\x82\xAC\n";
  { std::ofstream(ws_ + "/big.txt", std::ios::binary) << big; }
  r = c_->Call({{"op", "file.read"}, {"path", "big.txt"}});
  std::string text;
  for (size_t i = 1; i < r.events.size(); ++i) text += r.events[i]["data"].get<std::string>();
  EXPECT_EQ(text, big);
  EXPECT_GT(r.events.size(), 10u);
}

TEST_F(AgentTest, FileReadLimitsAndErrors) {
  c_->Call({{"op", "file.write"}, {"path", "f.txt"}, {"content", std::string(1000, 'a')}});
  auto r = c_->Call({{"op", "file.read"}, {"path", "f.txt"}, {"maxBytes", 999}});
  EXPECT_EQ(r.Code(), "FILE_TOO_LARGE");
  EXPECT_TRUE(r.events.empty());
  r = c_->Call({{"op", "file.read"}, {"path", "f.txt"}, {"maxBytes", 1000}});
  EXPECT_EQ(r.reply["bytesRead"], 1000);
  EXPECT_EQ(c_->Call({{"op", "file.read"}, {"path", "missing"}}).Code(), "FILE_NOT_FOUND");
  EXPECT_EQ(c_->Call({{"op", "file.read"}, {"path", "."}}).Code(), "IS_DIRECTORY");
  EXPECT_EQ(c_->Call({{"op", "file.read"}, {"path", "f.txt/x"}}).Code(), "NOT_DIRECTORY");
  EXPECT_EQ(c_->Call({{"op", "file.read"}, {"path", "f.txt"}, {"encoding", "latin1"}}).Code(),
            "VALIDATION_FAILED");
  EXPECT_EQ(c_->Call({{"op", "file.read"}}).Code(), "VALIDATION_FAILED");
  // Pseudo-files report size 0 but have content.
  r = c_->Call({{"op", "file.read"}, {"path", "/proc/self/status"}});
  EXPECT_GT(r.reply["bytesRead"].get<int>(), 0);
}

TEST_F(AgentTest, FileWriteContentInDataFrame) {
  std::string bin(2 << 20, '\0');
  for (size_t i = 0; i < bin.size(); ++i) bin[i] = static_cast<char>(i * 7);
  uint32_t ch = c_->Send({{"op", "file.write"}, {"path", "raw.bin"}, {"contentInData", true}});
  c_->SendRaw(EncodeFrame(ch, FrameType::kData, bin));
  auto r = c_->Wait(ch);
  EXPECT_EQ(r.reply["path"], ws_ + "/raw.bin");
  EXPECT_EQ(ReadFile(ws_ + "/raw.bin"), bin);
  // Cancelled before its data arrives: nothing written.
  ch = c_->Send({{"op", "file.write"}, {"path", "never.bin"}, {"contentInData", true}});
  c_->Cancel(ch);
  EXPECT_EQ(c_->Wait(ch).Code(), "OPERATION_INTERRUPTED");
  EXPECT_FALSE(fs::exists(ws_ + "/never.bin"));
}

// With dataSize the content comes in several frames, written as they arrive;
// the target changes only once all have arrived, and what fails leaves no
// temporary file.
TEST_F(AgentTest, FileWriteStreamsDataFrames) {
  auto temps = [&] {
    size_t n = 0;
    for (auto& e : fs::directory_iterator(ws_))
      if (e.path().filename().string().find(".cove-") != std::string::npos) ++n;
    return n;
  };
  { std::ofstream(ws_ + "/s.bin", std::ios::binary) << "old"; }
  std::string bin(3 << 20, '\0');
  for (size_t i = 0; i < bin.size(); ++i) bin[i] = static_cast<char>(i * 13 + (i >> 12));
  uint32_t ch = c_->Send({{"op", "file.write"}, {"path", "s.bin"}, {"contentInData", true}, {"dataSize", bin.size()}});
  c_->SendRaw(EncodeFrame(ch, FrameType::kData, std::string_view(bin).substr(0, 1 << 20)));
  c_->SendRaw(EncodeFrame(ch, FrameType::kData, std::string_view(bin).substr(1 << 20, 1 << 20)));
  // Two of three frames in: the file is the old one, the rest is in a temporary file.
  WaitUntil([&] { return temps() == 1; }, "the temporary file");
  EXPECT_EQ(ReadFile(ws_ + "/s.bin"), "old");
  c_->SendRaw(EncodeFrame(ch, FrameType::kData, std::string_view(bin).substr(2 << 20)));
  auto r = c_->Wait(ch);
  EXPECT_EQ(r.reply["bytesWritten"], bin.size()) << r.reply;
  EXPECT_EQ(ReadFile(ws_ + "/s.bin"), bin);
  EXPECT_EQ(temps(), 0u);
  // Cancelled halfway: the old file stays, the temporary file goes.
  ch = c_->Send({{"op", "file.write"}, {"path", "s.bin"}, {"contentInData", true}, {"dataSize", 100}});
  c_->SendRaw(EncodeFrame(ch, FrameType::kData, std::string(60, 'x')));
  c_->Cancel(ch);
  EXPECT_EQ(c_->Wait(ch).Code(), "OPERATION_INTERRUPTED");
  EXPECT_EQ(ReadFile(ws_ + "/s.bin"), bin);
  EXPECT_EQ(temps(), 0u);
  // More than announced: refused, nothing replaced; later frames are ignored.
  ch = c_->Send({{"op", "file.write"}, {"path", "s.bin"}, {"contentInData", true}, {"dataSize", 10}});
  c_->SendRaw(EncodeFrame(ch, FrameType::kData, std::string(11, 'y')));
  EXPECT_EQ(c_->Wait(ch).Code(), "VALIDATION_FAILED");
  c_->SendRaw(EncodeFrame(ch, FrameType::kData, std::string(5, 'y')));
  EXPECT_EQ(ReadFile(ws_ + "/s.bin"), bin);
  EXPECT_EQ(temps(), 0u);
  // dataSize 0: an empty file, no frame needed.
  r = c_->Call({{"op", "file.write"}, {"path", "empty"}, {"contentInData", true}, {"dataSize", 0}});
  EXPECT_EQ(r.reply["bytesWritten"], 0) << r.reply;
  EXPECT_EQ(ReadFile(ws_ + "/empty"), "");
  // A connection lost mid-write removes its temporary file.
  ch = c_->Send({{"op", "file.write"}, {"path", "lost"}, {"contentInData", true}, {"dataSize", 100}});
  c_->SendRaw(EncodeFrame(ch, FrameType::kData, std::string(60, 'z')));
  WaitUntil([&] { return temps() == 1; }, "the temporary file");
  c_ = std::make_unique<Client>(sock_);  // replaces (and closes) the old connection
  WaitUntil([&] { return temps() == 0; }, "the temporary file to go");
  EXPECT_FALSE(fs::exists(ws_ + "/lost"));
}

TEST_F(AgentTest, FileWriteErrorsAndExistingMode) {
  c_->Call({{"op", "file.write"}, {"path", "plain"}, {"content", "x"}});
  EXPECT_EQ(c_->Call({{"op", "file.write"}, {"path", "plain/child"}, {"content", "x"}}).Code(), "NOT_DIRECTORY");
  fs::create_directories(ws_ + "/adir");
  EXPECT_EQ(c_->Call({{"op", "file.write"}, {"path", "adir"}, {"content", "x"}}).Code(), "IS_DIRECTORY");
  EXPECT_EQ(c_->Call({{"op", "file.write"}, {"path", "p"}, {"content", "!!"}, {"encoding", "base64"}}).Code(),
            "VALIDATION_FAILED");
  EXPECT_EQ(c_->Call({{"op", "file.write"}, {"path", "p"}}).Code(), "VALIDATION_FAILED");
  EXPECT_EQ(c_->Call({{"op", "file.write"}, {"path", 3}, {"content", "x"}}).Code(), "VALIDATION_FAILED");
  chmod((ws_ + "/plain").c_str(), 0750);
  c_->Call({{"op", "file.write"}, {"path", "plain"}, {"content", "new"}});
  struct stat st;
  ASSERT_EQ(stat((ws_ + "/plain").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0750u);
  EXPECT_EQ(ReadFile(ws_ + "/plain"), "new");
  // Writing through a symlink replaces the target, not the link.
  symlink("plain", (ws_ + "/link").c_str());
  c_->Call({{"op", "file.write"}, {"path", "link"}, {"content", "via link"}});
  EXPECT_TRUE(fs::is_symlink(ws_ + "/link"));
  EXPECT_EQ(ReadFile(ws_ + "/plain"), "via link");
}

TEST_F(AgentTest, SessionDefaultCommandTimeout) {
  auto r = c_->Call({{"op", "session.create"}, {"id", "t"}, {"commandTimeoutMs", 200}});
  ASSERT_EQ(r.reply["id"], "t");
  r = c_->Call(Exec("sleep 10", "t"));
  EXPECT_EQ(r.reply["timedOut"], true);
  r = c_->Call({{"op", "exec"}, {"command", "sleep 0.4; echo ok"}, {"sessionId", "t"}, {"timeoutMs", 5000}});
  EXPECT_EQ(r.Out(), "ok\n");
}

// Images without bash: sessions fall back to POSIX sh.
class AgentShTest : public AgentTest {
 protected:
  void SetUp() override { Start(0, "/bin/sh"); }
};

TEST_F(AgentShTest, SessionsWorkWithPlainSh) {
  fs::create_directories(ws_ + "/sub");
  c_->Call(Exec("cd sub; export FOO=bar; f() { echo fn \"$1\"; }"));
  auto r = c_->Call(Exec("pwd; echo $FOO; f x; echo err >&2; (exit 4)"));
  EXPECT_EQ(r.Out(), ws_ + "/sub\nbar\nfn x\n");
  EXPECT_EQ(r.Err(), "err\n");
  EXPECT_EQ(r.reply["exitCode"], 4);
  r = c_->Call({{"op", "exec"}, {"command", "echo $X; pwd"}, {"sessionId", "s"}, {"env", {{"X", "it's"}}}, {"cwd", "/"}});
  EXPECT_EQ(r.Out(), "it's\n/\n");
  std::string payload(20000, 'q');
  r = c_->Call(Exec("X=" + payload + "; echo ${#X}"));
  EXPECT_EQ(r.Out(), "20000\n");
  r = c_->Call({{"op", "exec"}, {"command", "sleep 100"}, {"sessionId", "s"}, {"timeoutMs", 200}});
  EXPECT_EQ(r.reply["timedOut"], true);
  r = c_->Call(Exec("exit 3"));
  EXPECT_EQ(r.reply["sessionTerminated"], true);
  r = c_->Call(Exec("echo again"));
  EXPECT_EQ(r.Out(), "again\n");
}

class AgentFsizeTest : public AgentTest {
 protected:
  void SetUp() override { Start(1 << 20); }
};

TEST_F(AgentFsizeTest, FailedWriteLeavesOldContent) {
  auto r = c_->Call({{"op", "file.write"}, {"path", "keep.txt"}, {"content", "old"}});
  ASSERT_FALSE(r.reply.contains("error"));
  r = c_->Call({{"op", "file.write"}, {"path", "keep.txt"}, {"content", std::string(2 << 20, 'n')}});
  EXPECT_EQ(r.Code(), "FILE_TOO_LARGE") << r.reply.dump();
  EXPECT_EQ(ReadFile(ws_ + "/keep.txt"), "old");
  size_t entries = 0;
  for (auto& e : fs::directory_iterator(ws_)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1u) << "temporary file left behind";
}

TEST_F(AgentTest, FileOps) {
  // mkdir
  auto r = c_->Call({{"op", "file.mkdir"}, {"path", "m/n/o"}, {"recursive", true}});
  EXPECT_EQ(r.reply, (json{{"path", ws_ + "/m/n/o"}, {"recursive", true}}));
  EXPECT_TRUE(fs::is_directory(ws_ + "/m/n/o"));
  EXPECT_EQ(c_->Call({{"op", "file.mkdir"}, {"path", "m"}}).Code(), "FILE_EXISTS");
  EXPECT_EQ(c_->Call({{"op", "file.mkdir"}, {"path", "x/y"}}).Code(), "FILE_NOT_FOUND");
  EXPECT_FALSE(c_->Call({{"op", "file.mkdir"}, {"path", "m"}, {"recursive", true}}).reply.contains("error"));
  EXPECT_EQ(c_->Call({{"op", "file.mkdir"}, {"path", "m"}, {"recursive", "yes"}}).Code(), "VALIDATION_FAILED");
  // exists
  EXPECT_EQ(c_->Call({{"op", "file.exists"}, {"path", "m/n"}}).reply["exists"], true);
  EXPECT_EQ(c_->Call({{"op", "file.exists"}, {"path", "nope"}}).reply["exists"], false);
  // rename
  c_->Call({{"op", "file.write"}, {"path", "a.txt"}, {"content", "A"}});
  r = c_->Call({{"op", "file.rename"}, {"oldPath", "a.txt"}, {"newPath", "b.txt"}});
  EXPECT_EQ(r.reply, (json{{"path", ws_ + "/a.txt"}, {"newPath", ws_ + "/b.txt"}}));
  EXPECT_EQ(ReadFile(ws_ + "/b.txt"), "A");
  EXPECT_FALSE(fs::exists(ws_ + "/a.txt"));
  EXPECT_EQ(c_->Call({{"op", "file.rename"}, {"oldPath", "a.txt"}, {"newPath", "c.txt"}}).Code(), "FILE_NOT_FOUND");
  EXPECT_EQ(c_->Call({{"op", "file.rename"}, {"oldPath", "a.txt"}}).Code(), "VALIDATION_FAILED");
  // move (into a directory, like mv)
  r = c_->Call({{"op", "file.move"}, {"sourcePath", "b.txt"}, {"destinationPath", "m/n"}});
  EXPECT_EQ(r.reply["newPath"], ws_ + "/m/n/b.txt");
  EXPECT_EQ(ReadFile(ws_ + "/m/n/b.txt"), "A");
  r = c_->Call({{"op", "file.move"}, {"sourcePath", "m/n/b.txt"}, {"destinationPath", "/tmp/../" + ws_.substr(1) + "/c.txt"}});
  EXPECT_EQ(r.reply["newPath"], ws_ + "/c.txt");
  // delete
  EXPECT_EQ(c_->Call({{"op", "file.delete"}, {"path", "m"}}).Code(), "IS_DIRECTORY");
  EXPECT_EQ(c_->Call({{"op", "file.delete"}, {"path", "zzz"}}).Code(), "FILE_NOT_FOUND");
  r = c_->Call({{"op", "file.delete"}, {"path", "c.txt"}});
  EXPECT_EQ(r.reply["path"], ws_ + "/c.txt");
  EXPECT_FALSE(fs::exists(ws_ + "/c.txt"));
}

TEST_F(AgentTest, FileList) {
  c_->Call({{"op", "file.write"}, {"path", "d/f.txt"}, {"content", "12345"}});
  c_->Call({{"op", "file.write"}, {"path", "d/.hidden"}, {"content", "h"}});
  c_->Call({{"op", "file.write"}, {"path", "d/sub/g.sh"}, {"content", "#!/bin/sh\n"}});
  chmod((ws_ + "/d/sub/g.sh").c_str(), 0755);
  symlink("f.txt", (ws_ + "/d/ln").c_str());
  auto r = c_->Call({{"op", "file.list"}, {"path", "d"}});
  EXPECT_EQ(r.reply["path"], ws_ + "/d");
  auto files = r.reply["files"];
  ASSERT_EQ(files.size(), 3u) << files.dump();
  EXPECT_EQ(files[0]["name"], "f.txt");
  EXPECT_EQ(files[0]["absolutePath"], ws_ + "/d/f.txt");
  EXPECT_EQ(files[0]["relativePath"], "f.txt");
  EXPECT_EQ(files[0]["type"], "file");
  EXPECT_EQ(files[0]["size"], 5);
  EXPECT_EQ(files[0]["mode"], "rw-r--r--");
  EXPECT_EQ(files[0]["permissions"], (json{{"readable", true}, {"writable", true}, {"executable", false}}));
  std::string mod = files[0]["modifiedAt"];
  EXPECT_EQ(mod.size(), 24u);
  EXPECT_EQ(mod.back(), 'Z');
  EXPECT_EQ(files[1]["name"], "ln");
  EXPECT_EQ(files[1]["type"], "symlink");
  EXPECT_EQ(files[2]["name"], "sub");
  EXPECT_EQ(files[2]["type"], "directory");
  EXPECT_EQ(r.reply["count"], 3);

  r = c_->Call({{"op", "file.list"}, {"path", "d"}, {"recursive", true}, {"includeHidden", true}});
  std::vector<std::string> rel;
  for (auto& f : r.reply["files"]) rel.push_back(f["relativePath"]);
  EXPECT_EQ(rel, (std::vector<std::string>{".hidden", "f.txt", "ln", "sub", "sub/g.sh"}));
  EXPECT_EQ(r.reply["files"][4]["mode"], "rwxr-xr-x");
  EXPECT_EQ(r.reply["files"][4]["permissions"]["executable"], true);

  EXPECT_EQ(c_->Call({{"op", "file.list"}, {"path", "d/f.txt"}}).Code(), "NOT_DIRECTORY");
  EXPECT_EQ(c_->Call({{"op", "file.list"}, {"path", "nope"}}).Code(), "FILE_NOT_FOUND");
}

TEST_F(AgentTest, FileListLargeDirectoryIsBatched) {
  fs::create_directories(ws_ + "/many");
  for (int i = 0; i < 5000; ++i) std::ofstream(ws_ + "/many/file-with-a-long-name-" + std::to_string(i));
  auto r = c_->Call({{"op", "file.list"}, {"path", "many"}});
  size_t total = r.reply["files"].size();
  for (auto& e : r.events) {
    EXPECT_EQ(e["type"], "files");
    total += e["files"].size();
  }
  EXPECT_EQ(total, 5000u);
  EXPECT_EQ(r.reply["count"], 5000);
}

TEST_F(AgentTest, RelativePathsUseSessionCwd) {
  fs::create_directories(ws_ + "/here");
  c_->Call(Exec("cd here"));
  auto r = c_->Call({{"op", "file.write"}, {"path", "x.txt"}, {"content", "1"}, {"sessionId", "s"}});
  EXPECT_EQ(r.reply["path"], ws_ + "/here/x.txt");
  r = c_->Call({{"op", "file.exists"}, {"path", "x.txt"}});  // no session: workspace
  EXPECT_EQ(r.reply["exists"], false);
}

TEST_F(AgentTest, ReconnectKeepsSessions) {
  c_->Call(Exec("export MEM=kept"));
  c_->Send(Exec("sleep 0.5; echo lost-reply"));
  WaitUntil([&] { return AgentRuns("sleep 0.5"); }, "the command to start");
  c_ = std::make_unique<Client>(sock_);  // replaces (and closes) the old connection
  ASSERT_TRUE(c_->ok());
  auto r = c_->Call({{"op", "hello"}});
  EXPECT_EQ(r.reply["sessions"], json::array({"s"}));
  // Queued behind the command of the old connection, which still runs.
  r = c_->Call(Exec("echo $MEM"));
  EXPECT_EQ(r.Out(), "kept\n");
  // A second connection replaces the first.
  Client second(sock_);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second.Call({{"op", "session.list"}}).reply["sessions"], json::array({"s"}));
  EXPECT_FALSE(c_->Recv(500).has_value());  // the old one was closed
}

TEST_F(AgentTest, MalformedInputNeverCrashes) {
  c_->SendRaw(EncodeFrame(1, FrameType::kRequest, "not json"));
  auto r = c_->Wait(1);
  EXPECT_EQ(r.Code(), "VALIDATION_FAILED");
  c_->SendRaw(EncodeFrame(2, FrameType::kRequest, "[1,2]"));
  EXPECT_EQ(c_->Wait(2).Code(), "VALIDATION_FAILED");
  c_->SendRaw(EncodeFrame(3, FrameType::kRequest, "{\"op\":\"nope\"}"));
  EXPECT_EQ(c_->Wait(3).Code(), "VALIDATION_FAILED");
  c_->SendRaw(EncodeFrame(4, FrameType::kRequest, "{\"op\":\"exec\",\"command\":42}"));
  EXPECT_EQ(c_->Wait(4).Code(), "VALIDATION_FAILED");
  c_->SendRaw(EncodeFrame(5, FrameType::kRequest, "{\"op\":\"exec\",\"command\":\"x\",\"env\":{\"A B\":\"1\"}}"));
  EXPECT_EQ(c_->Wait(5).Code(), "VALIDATION_FAILED");
  c_->SendRaw(EncodeFrame(6, FrameType::kRequest, "{\"op\":\"exec\",\"command\":\"x\",\"timeoutMs\":-1}"));
  EXPECT_EQ(c_->Wait(6).Code(), "VALIDATION_FAILED");
  c_->SendRaw(EncodeFrame(7, FrameType::kRequest, "{\"op\":\"hello\",\"x\":\"\xff\xfe\"}"));
  EXPECT_EQ(c_->Wait(7).Code(), "VALIDATION_FAILED");  // invalid UTF-8 is not JSON
  c_->SendRaw(EncodeFrame(99, FrameType::kCancel, ""));  // cancel of nothing: ignored
  // A bad header drops the connection, the agent lives on.
  c_->SendRaw(std::string("\x02\x00\x00\x00\x01\x00\x00\x00\x01", 9));
  EXPECT_FALSE(c_->Recv(2000).has_value());
  EXPECT_TRUE(AgentAlive());
  c_ = std::make_unique<Client>(sock_);
  EXPECT_EQ(c_->Call({{"op", "hello"}}).reply["version"], "0.1.0");
  // An agent-to-coved frame type from coved drops the connection too.
  c_->SendRaw(EncodeFrame(1, FrameType::kReply, "{}"));
  EXPECT_FALSE(c_->Recv(2000).has_value());
  // So does a request on a channel that is still open.
  c_ = std::make_unique<Client>(sock_);
  c_->SendRaw(EncodeFrame(1, FrameType::kRequest, Exec("sleep 0.3").dump()));
  c_->SendRaw(EncodeFrame(1, FrameType::kRequest, Exec("true").dump()));
  EXPECT_FALSE(c_->Recv(2000).has_value());
  c_ = std::make_unique<Client>(sock_);
  EXPECT_EQ(c_->Call(Exec("echo fine")).Out(), "fine\n");
  // Random garbage.
  std::mt19937 rng(7);
  for (int i = 0; i < 20; ++i) {
    Client g(sock_);
    std::string junk(1000, '\0');
    for (auto& ch : junk) ch = static_cast<char>(rng());
    g.SendRaw(junk);
  }
  c_ = std::make_unique<Client>(sock_);
  EXPECT_EQ(c_->Call({{"op", "hello"}}).reply["version"], "0.1.0");
  EXPECT_TRUE(AgentAlive());
}

TEST_F(AgentTest, ReapsOrphans) {
  // The shell exits at once; its background sleep is re-parented to the agent.
  auto r = c_->Call({{"op", "exec"}, {"command", "sleep 0.3 >/dev/null 2>&1 & echo $!"}});
  pid_t orphan = std::stoi(r.Out());
  EXPECT_EQ(ParentOf(orphan), pid_);  // (its shell has exited: the reply came)
  WaitUntil([&] { return ParentOf(orphan) == 0; }, "the orphan to be reaped once its 0.3 s are over");
  // Own children are still attributed correctly meanwhile.
  r = c_->Call({{"op", "exec"}, {"command", "exit 9"}});
  EXPECT_EQ(r.reply["exitCode"], 9);
}

TEST_F(AgentTest, BackpressureBoundsMemory) {
  // Flood without reading: the agent must stop reading the pipe, not buffer.
  uint32_t ch = c_->Send({{"op", "exec"}, {"command", "yes flood-flood-flood | head -c 300000000"}, {"sessionId", "f"}});
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the point: 1.5 s of flood, unread
  long rss = AgentRssKb();
#ifndef __SANITIZE_ADDRESS__  // ASan's quarantine and shadow memory inflate RSS
  EXPECT_LT(rss, 48 * 1024) << "agent buffered output unboundedly";
#endif
  (void)rss;
  // Another session still runs meanwhile (its reply queues behind the flood).
  c_->Send(Exec("echo other", "g"));
  c_->Cancel(ch);
  auto r = c_->Wait(ch, 60000);
  EXPECT_EQ(r.reply["cancelled"], true);
}

// --- Background processes (process.*) ---

class AgentProcTest : public AgentTest {
 protected:
  void SetUp() override {
    setenv("COVE_AGENT_PROCESS_BUFFER", "1048576", 1);
    setenv("COVE_AGENT_KILL_GRACE_MS", "300", 1);
    Start(0);
    unsetenv("COVE_AGENT_PROCESS_BUFFER");
    unsetenv("COVE_AGENT_KILL_GRACE_MS");
  }
  json Start(const std::string& cmd, const std::string& id = "") {
    json req = {{"op", "process.start"}, {"command", cmd}};
    if (!id.empty()) req["processId"] = id;
    return c_->Call(req).reply;
  }
  using AgentTest::Start;
  json Get(const std::string& id) { return c_->Call({{"op", "process.get"}, {"processId", id}}).reply; }
  // Polls until the process is no longer running.
  json WaitDone(const std::string& id, int timeout_ms = 20000) {
    json r;
    WaitUntil([&] { return !(r = Get(id)).contains("process") || r["process"]["status"] != "running"; },
              "process " + id + " to end", std::chrono::milliseconds(timeout_ms));
    return r;
  }
  static bool PidExists(pid_t p) {
    auto stat = sys::ReadProcStat(p);
    return stat.ok() && stat->state != 'Z' && stat->state != 'X';
  }
};

TEST_F(AgentProcTest, StartLogsGet) {
  json r = Start("echo out; echo err >&2; pwd; echo $FOO", "p1");
  EXPECT_EQ(r["processId"], "p1");
  EXPECT_GT(r["pid"].get<int>(), 0);
  EXPECT_EQ(r["command"], "echo out; echo err >&2; pwd; echo $FOO");
  EXPECT_EQ(r["startTime"].get<std::string>().size(), 24u);  // 2026-01-01T00:00:00.000Z
  json g = WaitDone("p1");
  EXPECT_EQ(g["process"]["status"], "completed");
  EXPECT_EQ(g["process"]["exitCode"], 0);
  EXPECT_TRUE(g["process"].contains("endTime"));
  auto l = c_->Call({{"op", "process.logs"}, {"processId", "p1"}}).reply;
  EXPECT_EQ(l["processId"], "p1");
  EXPECT_EQ(l["stdout"], "out\n" + ws_ + "\n\n");
  EXPECT_EQ(l["stderr"], "err\n");
  EXPECT_EQ(l["stdoutDropped"], 0);
  // Default id, session cwd and env, request env.
  c_->Call({{"op", "session.create"}, {"id", "s1"}, {"env", {{"FOO", "sess"}}}});
  fs::create_directories(ws_ + "/sub");
  c_->Call(Exec("cd sub", "s1"));
  r = c_->Call({{"op", "process.start"}, {"command", "pwd; echo $FOO $BAR"}, {"sessionId", "s1"},
                {"env", {{"BAR", "req"}}}}).reply;
  std::string id = r["processId"];
  EXPECT_TRUE(id.rfind("proc_", 0) == 0 && id.size() == 5 + 13 + 1 + 6) << id;
  WaitDone(id);
  EXPECT_EQ(c_->Call({{"op", "process.logs"}, {"processId", id}}).reply["stdout"], ws_ + "/sub\nsess req\n");
  EXPECT_EQ(Get("nope")["error"]["code"], "PROCESS_NOT_FOUND");
  EXPECT_EQ(c_->Call({{"op", "process.logs"}, {"processId", "nope"}}).Code(), "PROCESS_NOT_FOUND");
}

TEST_F(AgentProcTest, FailedAndErrorStatus) {
  Start("exit 3", "f");
  json g = WaitDone("f");
  EXPECT_EQ(g["process"]["status"], "failed");
  EXPECT_EQ(g["process"]["exitCode"], 3);
  Start("kill -9 $$", "sig");
  g = WaitDone("sig");
  EXPECT_EQ(g["process"]["status"], "failed");
  EXPECT_EQ(g["process"]["exitCode"], 137);
  auto r = c_->Call({{"op", "process.start"}, {"command", "true"}, {"processId", "e"}, {"cwd", "/nonexistent-dir"}});
  EXPECT_EQ(r.Code(), "COMMAND_EXECUTION_ERROR");
  EXPECT_EQ(Get("e")["process"]["status"], "error");
}

TEST_F(AgentProcTest, DuplicateIdRefused) {
  std::string marker = ws_ + "/count";
  Start("echo x >> " + marker + "; sleep 30", "dup");
  auto r = c_->Call({{"op", "process.start"}, {"command", "echo x >> " + marker}, {"processId", "dup"}});
  EXPECT_EQ(r.Code(), "PROCESS_ALREADY_EXISTS");
  EXPECT_NE(r.reply["error"]["message"].get<std::string>().find("already exists"), std::string::npos);
  WaitUntil([&] { return !ReadFile(marker).empty(); }, "the first start to run");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the point: the refused start would have run
  c_->Call({{"op", "process.kill"}, {"processId", "dup"}});
  WaitDone("dup");
  // Finished but not cleaned up: still taken.
  EXPECT_EQ(c_->Call({{"op", "process.start"}, {"command", "true"}, {"processId", "dup"}}).Code(),
            "PROCESS_ALREADY_EXISTS");
  EXPECT_EQ(ReadFile(marker), "x\n");
  EXPECT_EQ(c_->Call({{"op", "process.cleanup"}}).reply["cleanedCount"], 1);
  EXPECT_EQ(Start("true", "dup")["processId"], "dup");
}

TEST_F(AgentProcTest, StreamBufferedLiveExit) {
  std::string go = ws_ + "/go";
  Start("echo before; while [ ! -e " + go + " ]; do sleep 0.02; done; echo after; echo e >&2; exit 4", "s");
  auto logged = [&] { return c_->Call({{"op", "process.logs"}, {"processId", "s"}}).reply.value("stdout", ""); };
  WaitUntil([&] { return logged() == "before\n"; }, "the line buffered before the streams");
  uint32_t ch = c_->Send({{"op", "process.stream"}, {"processId", "s"}});
  uint32_t ch2 = c_->Send({{"op", "process.stream"}, {"processId", "s"}});
  // The agent serves a connection's requests in order: once a later one is
  // answered, both streams follow live (their frames are stashed meanwhile).
  EXPECT_EQ(c_->Call({{"op", "hello"}}).reply["version"], "0.1.0");
  std::ofstream(go) << "";
  for (uint32_t c : {ch, ch2}) {
    auto r = c_->Wait(c);
    EXPECT_EQ(r.Out(), "before\nafter\n");
    EXPECT_EQ(r.Err(), "e\n");
    EXPECT_EQ(r.reply["type"], "exit");
    EXPECT_EQ(r.reply["exitCode"], 4);
    EXPECT_EQ(r.reply["status"], "failed");
  }
  // After the exit: the buffer, then the exit at once.
  auto r = c_->Call({{"op", "process.stream"}, {"processId", "s"}}, 2000);
  EXPECT_EQ(r.Out(), "before\nafter\n");
  EXPECT_EQ(r.reply["exitCode"], 4);
  // Cancel ends a stream, not the process.
  Start("sleep 30", "long");
  ch = c_->Send({{"op", "process.stream"}, {"processId", "long"}});
  c_->Cancel(ch);  // (the agent reads its frames in order: the stream has begun)
  EXPECT_EQ(c_->Wait(ch).reply["type"], "cancelled");
  EXPECT_EQ(Get("long")["process"]["status"], "running");
}

TEST_F(AgentProcTest, KillTreeLeavesNoOrphan) {
  std::string pids = ws_ + "/pids";
  // Everything ignores SIGTERM (inherited); the last sleep is double-forked
  // (re-parented to the agent before the kill).
  Start("trap '' TERM; sleep 1000 & echo $! >> " + pids + "; (sleep 1000 & echo $! >> " + pids +
            "; wait) & setsid sleep 1000 & echo $! >> " + pids + "; (setsid sleep 1000 & echo $! >> " + pids +
            ") ; wait",
        "tree");
  std::vector<pid_t> v;
  WaitUntil(
      [&] {
        v.clear();
        std::istringstream in(ReadFile(pids));
        pid_t x;
        while (in >> x) v.push_back(x);
        return v.size() >= 4;
      },
      "the four sleeps to start");
  ASSERT_EQ(v.size(), 4u);
  for (pid_t x : v) EXPECT_TRUE(PidExists(x)) << x;
  auto r = c_->Call({{"op", "process.kill"}, {"processId", "tree"}});
  EXPECT_EQ(r.reply["processId"], "tree");
  json g = WaitDone("tree");
  EXPECT_EQ(g["process"]["status"], "killed");
  // Nothing died of SIGTERM: SIGKILL after the grace.
  EXPECT_EQ(g["process"]["exitCode"], 137);
  WaitUntil([&] { return std::none_of(v.begin(), v.end(), PidExists); }, "the killed tree's processes to be gone");
  for (pid_t x : v) EXPECT_FALSE(PidExists(x)) << "orphan " << x << " survived";
  // A plain SIGTERM kill: 143.
  Start("sleep 1000", "t");
  c_->Call({{"op", "process.kill"}, {"processId", "t"}});
  g = WaitDone("t");
  EXPECT_EQ(g["process"]["status"], "killed");
  EXPECT_EQ(g["process"]["exitCode"], 143);
  EXPECT_EQ(c_->Call({{"op", "process.kill"}, {"processId", "zz"}}).Code(), "PROCESS_NOT_FOUND");
}

TEST_F(AgentProcTest, KillAllAndListFilter) {
  Start("sleep 100", "a");
  Start("sleep 100", "b");
  Start("true", "c");
  WaitDone("c");
  auto l = c_->Call({{"op", "process.list"}, {"status", "running"}}).reply["processes"];
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0]["id"], "a");
  EXPECT_EQ(l[1]["id"], "b");
  EXPECT_EQ(c_->Call({{"op", "process.list"}}).reply["processes"].size(), 3u);
  l = c_->Call({{"op", "process.list"}, {"status", "completed"}}).reply["processes"];
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0]["id"], "c");
  EXPECT_EQ(c_->Call({{"op", "process.list"}, {"status", "bogus"}}).Code(), "VALIDATION_FAILED");
  EXPECT_EQ(c_->Call({{"op", "process.killAll"}}).reply["cleanedCount"], 2);
  WaitDone("a");
  WaitDone("b");
  EXPECT_EQ(c_->Call({{"op", "process.list"}, {"status", "killed"}}).reply["processes"].size(), 2u);
  EXPECT_EQ(c_->Call({{"op", "process.list"}, {"status", "running"}}).reply["processes"].size(), 0u);
  EXPECT_EQ(c_->Call({{"op", "process.killAll"}}).reply["cleanedCount"], 0);
  EXPECT_EQ(c_->Call({{"op", "process.cleanup"}}).reply["cleanedCount"], 3);
  EXPECT_EQ(c_->Call({{"op", "process.list"}}).reply["processes"].size(), 0u);
}

TEST_F(AgentProcTest, TimeoutKills) {
  auto r = c_->Call({{"op", "process.start"}, {"command", "sleep 100"}, {"processId", "to"}, {"timeoutMs", 200}});
  pid_t pid = r.reply["pid"];
  json g = WaitDone("to", 5000);
  EXPECT_EQ(g["process"]["status"], "killed");
  EXPECT_EQ(g["process"]["exitCode"], 124);
  EXPECT_FALSE(PidExists(pid));
}

// What `yes LINE | head -c n` writes.
std::string YesOutput(const std::string& line, size_t n) {
  std::string s;
  s.reserve(n + line.size() + 1);
  while (s.size() < n) s += line + "\n";
  s.resize(n);
  return s;
}

size_t FdCount(pid_t pid) {
  size_t n = 0;
  for (auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

// Bytes in the agent's process spill directory.
uint64_t SpillBytes(const std::string& run_dir) {
  uint64_t n = 0;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(run_dir + "/logs", ec))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

TEST_F(AgentProcTest, FloodIsKeptWholeOnDiskAndAgentStaysResponsive) {
  // 50 MB of output; nobody reads it while it runs.
  Start("yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 50000000; echo -n END", "flood");
  WaitUntil([&] { return SpillBytes(dir_ + "/run") > 0; }, "the flood to be under way (spilled to disk)");
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(c_->Call({{"op", "hello"}}).reply["version"], "0.1.0");
  EXPECT_EQ(c_->Call({{"op", "exec"}, {"command", "echo hi"}}).Out(), "hi\n");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  json g = WaitDone("flood", 60000);
  EXPECT_EQ(g["process"]["status"], "completed");
  std::string want = YesOutput("0123456789abcdefghijklmnopqrstuvwxyz", 50000000) + "END";
  // What does not fit in memory is on disk (the run dir), not in the agent.
  EXPECT_GT(SpillBytes(dir_ + "/run"), 45000000u);
#ifndef __SANITIZE_ADDRESS__
  EXPECT_LT(AgentRssKb(), 48 * 1024);
#endif
  auto r = c_->Call({{"op", "process.logs"}, {"processId", "flood"}}, 60000);
  // Too large for one frame: events, then the reply.
  std::string out = r.Out() + r.reply["stdout"].get<std::string>();
  EXPECT_EQ(r.reply["stdoutDropped"], 0);
  EXPECT_EQ(r.reply["stderrDropped"], 0);
  EXPECT_EQ(out.size(), want.size());
  EXPECT_TRUE(out == want) << "logs differ from the output";
  // A stream from the start gets all of it, nothing dropped.
  auto s = c_->Call({{"op", "process.stream"}, {"processId", "flood"}}, 60000);
  for (auto& e : s.events) EXPECT_NE(e["type"], "dropped");
  EXPECT_TRUE(s.Out() == want) << "stream differs from the output";
  EXPECT_EQ(s.reply["exitCode"], 0);
  // Removing the record removes its spill files.
  EXPECT_EQ(c_->Call({{"op", "process.cleanup"}}).reply["cleanedCount"], 1);
  EXPECT_EQ(SpillBytes(dir_ + "/run"), 0u);
  EXPECT_TRUE(fs::is_empty(dir_ + "/run/logs"));
}

TEST_F(AgentProcTest, SlowFollowerGetsEverythingWithoutBlockingTheProcess) {
  // A follower that does not read: the process still runs to completion,
  // the agent's memory stays bounded, and the follower later gets every byte.
  std::string done = ws_ + "/done";
  c_->Send({{"op", "process.start"}, {"command", "yes abcdefgh | head -c 60000000; touch " + done},
            {"processId", "f2"}});
  uint32_t ch = c_->Send({{"op", "process.stream"}, {"processId", "f2"}});
  WaitUntil([&] { return fs::exists(done); }, "the process to end (is it blocked by the slow follower?)",
            std::chrono::seconds(30));
#ifndef __SANITIZE_ADDRESS__
  EXPECT_LT(AgentRssKb(), 48 * 1024);
#endif
  auto r = c_->Wait(ch, 60000);
  EXPECT_EQ(r.reply["type"], "exit");
  EXPECT_EQ(r.reply["exitCode"], 0);
  for (auto& e : r.events) EXPECT_NE(e["type"], "dropped");
  EXPECT_EQ(r.Out().size(), 60000000u);
  EXPECT_TRUE(r.Out() == YesOutput("abcdefgh", 60000000));
}

TEST_F(AgentProcTest, StreamWithoutCreditStallsOnlyItself) {
  // coved grants no credit (its client does not read): neither the process
  // nor other channels wait; the stream resumes where it was once credit comes.
  constexpr uint32_t kCh = 1000;
  Start("yes 0123456789 | head -c 20000000", "nc");
  c_->SendRaw(EncodeFrame(kCh, FrameType::kRequest, json{{"op", "process.stream"}, {"processId", "nc"}}.dump()));
  EXPECT_EQ(WaitDone("nc", 60000)["process"]["status"], "completed");
  EXPECT_EQ(c_->Call(Exec("echo other", "busy")).Out(), "other\n");
  EXPECT_FALSE(c_->NextOn(kCh, 200).has_value()) << "events without credit";
  c_->SendRaw(EncodeFrame(kCh, FrameType::kWindow, EncodeWindow(1u << 30)));
  auto r = c_->Wait(kCh, 60000);
  EXPECT_EQ(r.reply["type"], "exit");
  for (auto& e : r.events) EXPECT_NE(e["type"], "dropped");
  EXPECT_TRUE(r.Out() == YesOutput("0123456789", 20000000));
}

TEST_F(AgentProcTest, BothStreamsSpillAndComeBackWhole) {
  // Records of both streams, interleaved, go to disk and are read back per stream.
  Start("(yes aaaaaaa | head -c 6000000) & (yes bbbbbbb | head -c 5000000 >&2); wait", "two");
  WaitDone("two", 60000);
  auto l = c_->Call({{"op", "process.logs"}, {"processId", "two"}}, 60000);
  EXPECT_TRUE(l.Out() + l.reply["stdout"].get<std::string>() == YesOutput("aaaaaaa", 6000000));
  EXPECT_TRUE(l.Err() + l.reply["stderr"].get<std::string>() == YesOutput("bbbbbbb", 5000000));
  EXPECT_EQ(l.reply["stdoutDropped"], 0);
  EXPECT_EQ(l.reply["stderrDropped"], 0);
  auto s = c_->Call({{"op", "process.stream"}, {"processId", "two"}}, 60000);
  EXPECT_TRUE(s.Out() == YesOutput("aaaaaaa", 6000000));
  EXPECT_TRUE(s.Err() == YesOutput("bbbbbbb", 5000000));
}

TEST_F(AgentProcTest, EventsJoinRecordsOfOneStreamInOrder) {
  // Output that waits in the log goes out in events of several records of one
  // stream (fewer, larger events), bounded, never across a change of stream.
  Start("yes aaaaaaa | head -c 3000000; echo -n X >&2; yes bbbbbbb | head -c 1000000", "join");
  WaitDone("join", 60000);
  std::string all = YesOutput("aaaaaaa", 3000000) + YesOutput("bbbbbbb", 1000000);
  auto check = [&](const Result& r, const char* what) {
    size_t largest = 0;
    std::string order;  // the streams of the events, runs collapsed
    for (auto& e : r.events) {
      EXPECT_LE(e.dump().size(), kOutputEventJsonTarget + 6 * kLogRecordMax + 64) << what;
      largest = std::max(largest, e["data"].get<std::string>().size());
      char k = e["type"] == "stdout" ? 'o' : 'e';
      if (order.empty() || order.back() != k) order += k;
    }
    EXPECT_GT(largest, kLogRecordMax) << what << ": one record per event";
    return order;
  };
  auto s = c_->Call({{"op", "process.stream"}, {"processId", "join"}}, 60000);
  EXPECT_EQ(check(s, "stream"), "oeo");
  EXPECT_TRUE(s.Out() == all);
  EXPECT_EQ(s.Err(), "X");
  auto l = c_->Call({{"op", "process.logs"}, {"processId", "join"}}, 60000);
  EXPECT_EQ(check(l, "logs"), "oe") << "all of stdout, then all of stderr";
  EXPECT_TRUE(l.Out() + l.reply["stdout"].get<std::string>() == all);
  EXPECT_EQ(l.Err() + l.reply["stderr"].get<std::string>(), "X");
}

// A small disk limit: past it the oldest output is dropped, and counted exactly.
class AgentProcLimitTest : public AgentProcTest {
 protected:
  void SetUp() override {
    setenv("COVE_AGENT_PROCESS_LOG_LIMIT", "4194304", 1);
    AgentProcTest::SetUp();
    unsetenv("COVE_AGENT_PROCESS_LOG_LIMIT");
  }
};

TEST_F(AgentProcLimitTest, PastTheLimitTheDroppedCountIsExact) {
  Start("yes 0123456789abcdef | head -c 20000000; echo -n END; echo -n ERR >&2", "big");
  WaitDone("big", 60000);
  std::string all = YesOutput("0123456789abcdef", 20000000) + "END";
  EXPECT_LE(SpillBytes(dir_ + "/run"), 4194304u);
  auto l = c_->Call({{"op", "process.logs"}, {"processId", "big"}}, 60000);
  std::string out = l.Out() + l.reply["stdout"].get<std::string>();
  uint64_t dropped = l.reply["stdoutDropped"];
  EXPECT_GT(dropped, 0u);
  EXPECT_EQ(out.size() + dropped, all.size());
  EXPECT_GT(out.size(), 4000000u);  // disk (at least 7/8 of it) + memory
  EXPECT_TRUE(out == all.substr(dropped)) << "not the exact newest output";
  EXPECT_EQ(l.Err() + l.reply["stderr"].get<std::string>(), "ERR");
  EXPECT_EQ(l.reply["stderrDropped"], 0);
  // A stream from the start: one dropped event first, then the rest.
  auto s = c_->Call({{"op", "process.stream"}, {"processId", "big"}}, 60000);
  ASSERT_FALSE(s.events.empty());
  EXPECT_EQ(s.events[0]["type"], "dropped");
  EXPECT_EQ(s.events[0]["stdout"], dropped);
  EXPECT_EQ(s.events[0]["stderr"], 0);
  EXPECT_TRUE(s.Out() == all.substr(dropped));
  EXPECT_EQ(s.Err(), "ERR");
}

// The agent cannot write its spill files (as on a full disk): the process is
// neither blocked nor killed, and the logs say how much was dropped.
class AgentProcFullDiskTest : public AgentProcTest {
 protected:
  void SetUp() override {
    setenv("COVE_AGENT_PROCESS_BUFFER", "1048576", 1);
    Start(1 << 20);  // RLIMIT_FSIZE: writes past 1 MiB fail (EFBIG), as ENOSPC/EDQUOT do
    unsetenv("COVE_AGENT_PROCESS_BUFFER");
  }
};

TEST_F(AgentProcFullDiskTest, SpillFailureDropsOldestAndNeverBlocks) {
  Start("yes 0123456789abcdef | head -c 20000000; echo -n END", "full");
  json g = WaitDone("full", 60000);
  EXPECT_EQ(g["process"]["status"], "completed");
  EXPECT_EQ(g["process"]["exitCode"], 0);
  std::string all = YesOutput("0123456789abcdef", 20000000) + "END";
  auto l = c_->Call({{"op", "process.logs"}, {"processId", "full"}}, 60000);
  std::string out = l.Out() + l.reply["stdout"].get<std::string>();
  uint64_t dropped = l.reply["stdoutDropped"];
  EXPECT_GT(dropped, 10000000u);
  EXPECT_EQ(out.size() + dropped, all.size());
  EXPECT_GE(out.size(), 1048576u);  // at least what memory holds
  EXPECT_TRUE(out == all.substr(dropped));
  auto s = c_->Call({{"op", "process.stream"}, {"processId", "full"}}, 60000);
  ASSERT_FALSE(s.events.empty());
  EXPECT_EQ(s.events[0]["type"], "dropped");
  EXPECT_EQ(s.events[0]["stdout"].get<uint64_t>() + s.Out().size(), all.size());
  EXPECT_EQ(c_->Call({{"op", "process.cleanup"}}).reply["cleanedCount"], 1);
  EXPECT_EQ(SpillBytes(dir_ + "/run"), 0u);
}

TEST_F(AgentProcTest, SurvivesSessionDeleteAndReconnect) {
  c_->Call({{"op", "session.create"}, {"id", "s"}});
  auto r = c_->Call({{"op", "process.start"}, {"command", "sleep 0.8; echo alive"}, {"processId", "bg"}, {"sessionId", "s"}});
  pid_t pid = r.reply["pid"];
  EXPECT_EQ(c_->Call({{"op", "session.delete"}, {"id", "s"}}).reply["id"], "s");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the point: it outlives the session
  EXPECT_TRUE(PidExists(pid));
  c_ = std::make_unique<Client>(sock_);  // replaces the connection
  ASSERT_TRUE(c_->ok());
  EXPECT_TRUE(PidExists(pid));
  size_t connected_fds = FdCount(pid_);
  c_->Close();
  WaitUntil([&] { return FdCount(pid_) < connected_fds; }, "the agent to close the dropped connection");
  c_ = std::make_unique<Client>(sock_);
  json g = WaitDone("bg");
  EXPECT_EQ(g["process"]["status"], "completed");
  EXPECT_EQ(c_->Call({{"op", "process.logs"}, {"processId", "bg"}}).reply["stdout"], "alive\n");
}

// port.watch.
int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A listening socket on 127.0.0.1:port (never accepts), or -1.
int Listen(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 128) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

TEST_F(AgentTest, PortWatchTcpReadyWhenListenerAppears) {
  int port = FreeLoopbackPort();
  uint32_t ch = c_->Send({{"op", "port.watch"}, {"port", port}, {"mode", "tcp"}, {"interval", 100}});
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the point: polls with nothing listening
  int ls = Listen(port);
  ASSERT_GE(ls, 0);
  auto r = c_->Wait(ch, 10000);
  close(ls);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0], (json{{"type", "watching"}, {"port", port}}));
  EXPECT_EQ(r.reply, (json{{"type", "ready"}, {"port", port}}));
}

TEST_F(AgentTest, PortWatchHttpReadyOnlyWhenStatusInRange) {
  if (system("command -v python3 >/dev/null 2>&1") != 0) GTEST_SKIP() << "no python3";
  int port = FreeLoopbackPort();
  std::string script = ws_ + "/srv.py";
  std::ofstream(script) << R"PY(import http.server, sys
n = 0
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global n
        n += 1
        code = 503 if n <= 3 else 200
        print("request", n, self.path, code, flush=True)
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
)PY";
  // A 503-only range never matches... until the server answers 200.
  auto r = c_->Call({{"op", "process.start"}, {"command", "exec python3 srv.py " + std::to_string(port)},
                     {"processId", "web"}});
  ASSERT_EQ(r.reply["processId"], "web") << r.reply;
  r = c_->Call({{"op", "port.watch"}, {"port", port}, {"path", "/health?x=1"}, {"processId", "web"},
                {"interval", 100}},
               20000);
  EXPECT_EQ(r.reply, (json{{"type", "ready"}, {"port", port}, {"statusCode", 200}}));
  std::string logs = c_->Call({{"op", "process.logs"}, {"processId", "web"}}).reply.value("stdout", "");
  EXPECT_NE(logs.find("request 1 /health?x=1 503"), std::string::npos) << logs;
  EXPECT_NE(logs.find("request 4 /health?x=1 200"), std::string::npos) << logs;
  // A custom range: 200 is outside 500-599, so only cancel ends the watch.
  uint32_t ch = c_->Send({{"op", "port.watch"}, {"port", port}, {"statusMin", 500}, {"statusMax", 599},
                          {"interval", 100}});
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // the point: polls that must not end it
  c_->Cancel(ch);
  EXPECT_EQ(c_->Wait(ch).reply, (json{{"type", "cancelled"}}));
  // statusMin/statusMax including 200 is ready at once.
  r = c_->Call({{"op", "port.watch"}, {"port", port}, {"statusMin", 200}, {"statusMax", 200}});
  EXPECT_EQ(r.reply["statusCode"], 200);
  c_->Call({{"op", "process.kill"}, {"processId", "web"}, {"signal", 9}});
}

TEST_F(AgentTest, PortWatchProcessExited) {
  int port = FreeLoopbackPort();
  auto r = c_->Call({{"op", "process.start"}, {"command", "sleep 0.3; exit 7"}, {"processId", "p"}});
  ASSERT_EQ(r.reply["processId"], "p");
  r = c_->Call({{"op", "port.watch"}, {"port", port}, {"mode", "tcp"}, {"processId", "p"}, {"interval", 100}});
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0]["type"], "watching");
  EXPECT_EQ(r.reply, (json{{"type", "process_exited"}, {"port", port}, {"exitCode", 7}}));
  // Already exited: answered at once.
  r = c_->Call({{"op", "port.watch"}, {"port", port}, {"processId", "p"}});
  EXPECT_EQ(r.reply, (json{{"type", "process_exited"}, {"port", port}, {"exitCode", 7}}));
  // Unknown process.
  r = c_->Call({{"op", "port.watch"}, {"port", port}, {"processId", "nope"}});
  EXPECT_EQ(r.Code(), "PROCESS_NOT_FOUND");
  EXPECT_TRUE(r.events.empty());
}

TEST_F(AgentTest, PortWatchValidation) {
  for (json bad : {json{{"op", "port.watch"}},
                   json{{"op", "port.watch"}, {"port", 0}},
                   json{{"op", "port.watch"}, {"port", 65536}},
                   json{{"op", "port.watch"}, {"port", -1}},
                   json{{"op", "port.watch"}, {"port", "80"}},
                   json{{"op", "port.watch"}, {"port", 80.5}},
                   json{{"op", "port.watch"}, {"port", 80}, {"mode", "udp"}},
                   json{{"op", "port.watch"}, {"port", 80}, {"path", "health"}},
                   json{{"op", "port.watch"}, {"port", 80}, {"path", "/a b"}},
                   json{{"op", "port.watch"}, {"port", 80}, {"path", "/a\r\nX: y"}},
                   json{{"op", "port.watch"}, {"port", 80}, {"statusMin", 300}, {"statusMax", 200}},
                   json{{"op", "port.watch"}, {"port", 80}, {"statusMin", 99}},
                   json{{"op", "port.watch"}, {"port", 80}, {"statusMax", 600}},
                   json{{"op", "port.watch"}, {"port", 80}, {"interval", "fast"}},
                   json{{"op", "port.watch"}, {"port", 80}, {"processId", 5}}}) {
    auto r = c_->Call(bad);
    EXPECT_EQ(r.Code(), "VALIDATION_FAILED") << bad;
    EXPECT_TRUE(r.events.empty()) << bad;
  }
}

TEST_F(AgentTest, PortWatchCancelLeaksNoFds) {
  // Warm up (the agent's lazily opened fds), then count.
  c_->Call({{"op", "hello"}});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // no sign of them but the count
  size_t base = FdCount(pid_);
  int closed_port = FreeLoopbackPort();
  int stuck_port = FreeLoopbackPort();
  int ls = Listen(stuck_port);  // accepts into the backlog, never answers: attempts stay open
  ASSERT_GE(ls, 0);
  std::vector<uint32_t> chs;
  for (int i = 0; i < 20; ++i) {
    chs.push_back(c_->Send({{"op", "port.watch"}, {"port", stuck_port}, {"interval", 10000}}));
    chs.push_back(c_->Send({{"op", "port.watch"}, {"port", closed_port}, {"mode", i % 2 ? "tcp" : "http"},
                            {"interval", 100}}));
  }
  WaitUntil([&] { return FdCount(pid_) >= base + 20; }, "the stuck attempts to hold their sockets");
  for (uint32_t ch : chs) c_->Cancel(ch);
  for (uint32_t ch : chs) {
    auto r = c_->Wait(ch);
    EXPECT_EQ(r.reply, (json{{"type", "cancelled"}}));
    ASSERT_EQ(r.events.size(), 1u);
    EXPECT_EQ(r.events[0]["type"], "watching");
  }
  c_->Call({{"op", "hello"}});
  EXPECT_EQ(FdCount(pid_), base);
  // A dropped connection ends the watches too.
  for (int i = 0; i < 10; ++i) c_->Send({{"op", "port.watch"}, {"port", stuck_port}, {"interval", 10000}});
  WaitUntil([&] { return FdCount(pid_) >= base + 10; }, "the ten attempts to hold their sockets");
  c_ = std::make_unique<Client>(sock_);
  ASSERT_TRUE(c_->ok());
  c_->Call({{"op", "hello"}});
  EXPECT_EQ(FdCount(pid_), base);
  close(ls);
  EXPECT_TRUE(AgentAlive());
}


// fs.watch / fs.check.
struct WatchEv {
  std::string type, path;
  bool dir;
};

// Events (type:"event") received on ch within ms; `other` gets everything else.
std::vector<WatchEv> Collect(Client& c, uint32_t ch, int ms, std::vector<json>* other = nullptr) {
  std::vector<WatchEv> out;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
    if (left <= 0) break;
    auto f = c.NextOn(ch, left);
    if (!f) break;
    json j = json::parse(f->payload);
    if (f->type == FrameType::kEvent && j.value("type", "") == "event") {
      EXPECT_EQ(j["timestamp"].get<std::string>().size(), 24u) << j;
      out.push_back({j["eventType"], j["path"], j["isDirectory"]});
    } else if (other) {
      other->push_back(j);
    }
    if (f->type == FrameType::kReply) break;
  }
  return out;
}

bool Has(const std::vector<WatchEv>& evs, const std::string& type, const std::string& path, bool dir) {
  for (auto& e : evs)
    if (e.type == type && e.path == path && e.dir == dir) return true;
  return false;
}
bool HasPath(const std::vector<WatchEv>& evs, const std::string& path) {
  for (auto& e : evs)
    if (e.path == path) return true;
  return false;
}

std::string Dump(const std::vector<WatchEv>& evs) {
  std::string s;
  for (auto& e : evs) s += e.type + " " + e.path + (e.dir ? " (dir)" : "") + "\n";
  return s;
}

class WatchTest : public AgentTest {
 protected:
  // Starts a watch and returns its channel after the watching event.
  uint32_t StartWatch(json req) {
    req["op"] = "fs.watch";
    uint32_t ch = c_->Send(req);
    auto f = c_->NextOn(ch, 5000);
    EXPECT_TRUE(f.has_value());
    if (f) {
      json j = json::parse(f->payload);
      EXPECT_EQ(f->type, FrameType::kEvent) << j;
      EXPECT_EQ(j["type"], "watching") << j;
      watch_id_ = j.value("watchId", "");
      watch_path_ = j.value("path", "");
    }
    return ch;
  }
  void Sh(const std::string& cmd) { ASSERT_EQ(system(("cd " + ws_ + " && " + cmd).c_str()), 0) << cmd; }
  json Stop(uint32_t ch) {
    c_->Cancel(ch);
    return c_->Wait(ch).reply;
  }
  std::string watch_id_, watch_path_;
};

TEST_F(WatchTest, CreateModifyDeleteMove) {
  Sh("mkdir d && echo 1 > d/old");
  uint32_t ch = StartWatch({{"path", "d"}});
  EXPECT_EQ(watch_path_, ws_ + "/d");
  EXPECT_FALSE(watch_id_.empty());
  Sh("touch d/new && echo x >> d/new && mkdir d/sub && mv d/old d/renamed && rm d/new && rmdir d/sub && chmod 600 "
     "d/renamed");
  auto evs = Collect(*c_, ch, 500);
  std::string d = ws_ + "/d";
  EXPECT_TRUE(Has(evs, "create", d + "/new", false)) << Dump(evs);
  EXPECT_TRUE(Has(evs, "modify", d + "/new", false)) << Dump(evs);
  EXPECT_TRUE(Has(evs, "create", d + "/sub", true)) << Dump(evs);
  EXPECT_TRUE(Has(evs, "move_from", d + "/old", false)) << Dump(evs);
  EXPECT_TRUE(Has(evs, "move_to", d + "/renamed", false)) << Dump(evs);
  EXPECT_TRUE(Has(evs, "delete", d + "/new", false)) << Dump(evs);
  EXPECT_TRUE(Has(evs, "delete", d + "/sub", true)) << Dump(evs);
  EXPECT_TRUE(Has(evs, "attrib", d + "/renamed", false)) << Dump(evs);
  // Duplicates within the coalescing window are sent once.
  size_t creates = 0;
  for (auto& e : evs) creates += e.type == "create" && e.path == d + "/new";
  EXPECT_EQ(creates, 1u);
  EXPECT_EQ(Stop(ch), (json{{"type", "stopped"}, {"reason", "cancelled"}}));
}

TEST_F(WatchTest, RecursiveNewDirectories) {
  uint32_t ch = StartWatch({{"path", ws_}});
  Sh("mkdir -p a/b && echo x > a/b/f");
  auto evs = Collect(*c_, ch, 400);
  EXPECT_TRUE(Has(evs, "create", ws_ + "/a", true)) << Dump(evs);
  EXPECT_TRUE(Has(evs, "create", ws_ + "/a/b", true)) << Dump(evs);
  EXPECT_TRUE(Has(evs, "create", ws_ + "/a/b/f", false)) << Dump(evs);
  // The new directories are watched now.
  Sh("echo y > a/b/g && echo z >> a/b/f");
  evs = Collect(*c_, ch, 300);
  EXPECT_TRUE(Has(evs, "create", ws_ + "/a/b/g", false)) << Dump(evs);
  EXPECT_TRUE(Has(evs, "modify", ws_ + "/a/b/f", false)) << Dump(evs);
  // A directory moved within the tree is watched under its new name.
  Sh("mv a c && echo n > c/b/new");
  evs = Collect(*c_, ch, 300);
  EXPECT_TRUE(Has(evs, "move_from", ws_ + "/a", true)) << Dump(evs);
  EXPECT_TRUE(Has(evs, "move_to", ws_ + "/c", true)) << Dump(evs);
  EXPECT_TRUE(Has(evs, "create", ws_ + "/c/b/new", false)) << Dump(evs);
  EXPECT_FALSE(HasPath(evs, ws_ + "/a/b/new")) << Dump(evs);
  // Moved out of the tree: no longer watched.
  Sh("mv c ../out && echo z > ../out/b/z");
  evs = Collect(*c_, ch, 300);
  EXPECT_TRUE(Has(evs, "move_from", ws_ + "/c", true)) << Dump(evs);
  // (late events of the step before may still arrive in this window)
  EXPECT_FALSE(HasPath(evs, ws_ + "/c/b/z")) << Dump(evs);
  EXPECT_FALSE(HasPath(evs, ws_ + "/a/b/z")) << Dump(evs);
  Sh("mv ../out a");
  Collect(*c_, ch, 100);
  Stop(ch);
  // Non-recursive: nothing from subdirectories.
  ch = StartWatch({{"path", ws_}, {"recursive", false}});
  Sh("echo q > a/b/h && echo r > top");
  evs = Collect(*c_, ch, 300);
  EXPECT_FALSE(HasPath(evs, ws_ + "/a/b/h")) << Dump(evs);
  EXPECT_TRUE(Has(evs, "create", ws_ + "/top", false)) << Dump(evs);
  Stop(ch);
}

TEST_F(WatchTest, IncludeExcludeAndEventsFilter) {
  Sh("mkdir -p node_modules/x src/lib .git");
  uint32_t ch = StartWatch({{"path", "."}});
  Sh("echo 1 > node_modules/x/a.js && echo 1 > .git/HEAD && echo 1 > src/a.js && mkdir -p node_modules/y/z");
  auto evs = Collect(*c_, ch, 300);
  EXPECT_TRUE(Has(evs, "create", ws_ + "/src/a.js", false)) << Dump(evs);
  for (auto& e : evs) {
    EXPECT_EQ(e.path.find("node_modules"), std::string::npos) << Dump(evs);
    EXPECT_EQ(e.path.find(".git"), std::string::npos) << Dump(evs);
  }
  Stop(ch);

  ch = StartWatch({{"path", "."}, {"include", {"*.txt"}}});
  Sh("echo 1 > src/a.txt && echo 1 > src/b.js && echo 1 > c.txt");
  evs = Collect(*c_, ch, 300);
  EXPECT_TRUE(Has(evs, "create", ws_ + "/src/a.txt", false)) << Dump(evs);
  EXPECT_TRUE(Has(evs, "create", ws_ + "/c.txt", false)) << Dump(evs);
  EXPECT_FALSE(HasPath(evs, ws_ + "/src/b.js")) << Dump(evs);
  Stop(ch);

  ch = StartWatch({{"path", "."}, {"include", {"**/*.js"}}});
  Sh("echo 2 > src/lib/d.js && echo 2 > e.js && echo 2 > src/f.txt");
  evs = Collect(*c_, ch, 300);
  EXPECT_TRUE(Has(evs, "create", ws_ + "/src/lib/d.js", false)) << Dump(evs);
  EXPECT_TRUE(Has(evs, "create", ws_ + "/e.js", false)) << Dump(evs);
  EXPECT_FALSE(HasPath(evs, ws_ + "/src/f.txt")) << Dump(evs);
  Stop(ch);

  // An explicit exclude replaces the default one.
  ch = StartWatch({{"path", "."}, {"exclude", {"src", "?.log"}}});
  Sh("echo 3 > src/g && echo 3 > node_modules/x/b.js && echo 3 > a.log && echo 3 > ab.log");
  evs = Collect(*c_, ch, 300);
  EXPECT_FALSE(HasPath(evs, ws_ + "/src/g")) << Dump(evs);
  EXPECT_FALSE(HasPath(evs, ws_ + "/a.log")) << Dump(evs);
  EXPECT_TRUE(HasPath(evs, ws_ + "/node_modules/x/b.js")) << Dump(evs);
  EXPECT_TRUE(HasPath(evs, ws_ + "/ab.log")) << Dump(evs);
  Stop(ch);

  // events filter.
  ch = StartWatch({{"path", "."}, {"events", {"delete"}}});
  Sh("echo 4 > h && rm h");
  evs = Collect(*c_, ch, 300);
  ASSERT_EQ(evs.size(), 1u) << Dump(evs);
  EXPECT_TRUE(Has(evs, "delete", ws_ + "/h", false)) << Dump(evs);
  Stop(ch);

  // A single file: its parent is watched and filtered.
  Sh("echo 5 > one && echo 5 > two");
  ch = StartWatch({{"path", "one"}});
  EXPECT_EQ(watch_path_, ws_ + "/one");
  Sh("echo 6 >> two && echo 6 >> one");
  evs = Collect(*c_, ch, 300);
  EXPECT_TRUE(Has(evs, "modify", ws_ + "/one", false)) << Dump(evs);
  EXPECT_FALSE(HasPath(evs, ws_ + "/two")) << Dump(evs);
  Sh("rm one");
  std::vector<json> other;
  evs = Collect(*c_, ch, 2000, &other);
  EXPECT_TRUE(Has(evs, "delete", ws_ + "/one", false)) << Dump(evs);
  ASSERT_FALSE(other.empty());
  EXPECT_EQ(other.back(), (json{{"type", "stopped"}, {"reason", "deleted"}}));
}

TEST_F(WatchTest, DeletedRootAndErrors) {
  Sh("mkdir gone");
  uint32_t ch = StartWatch({{"path", "gone"}});
  Sh("rmdir gone");
  std::vector<json> other;
  auto evs = Collect(*c_, ch, 2000, &other);
  ASSERT_FALSE(other.empty());
  EXPECT_EQ(other.back(), (json{{"type", "stopped"}, {"reason", "deleted"}}));

  EXPECT_EQ(c_->Call({{"op", "fs.watch"}, {"path", "missing"}}).Code(), "FILE_NOT_FOUND");
  EXPECT_EQ(c_->Call({{"op", "fs.check"}, {"path", "missing"}}).Code(), "FILE_NOT_FOUND");
  for (json bad : {json{{"op", "fs.watch"}},
                   json{{"op", "fs.watch"}, {"path", "."}, {"include", {"a"}}, {"exclude", {"b"}}},
                   json{{"op", "fs.check"}, {"path", "."}, {"include", {"a"}}, {"exclude", {"b"}}},
                   json{{"op", "fs.watch"}, {"path", "."}, {"include", "*.txt"}},
                   json{{"op", "fs.watch"}, {"path", "."}, {"include", {"[ab].txt"}}},
                   json{{"op", "fs.watch"}, {"path", "."}, {"events", {"open"}}},
                   json{{"op", "fs.watch"}, {"path", "."}, {"recursive", "yes"}}}) {
    auto r = c_->Call(bad);
    EXPECT_EQ(r.Code(), "VALIDATION_FAILED") << bad;
    EXPECT_TRUE(r.events.empty()) << bad;
  }
}

TEST_F(WatchTest, CancelAndDropLeakNoFds) {
  c_->Call({{"op", "hello"}});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // warm up (lazily opened fds): no other sign
  size_t base = FdCount(pid_);
  Sh("mkdir -p t/a/b t/c");
  for (int round = 0; round < 3; ++round) {
    std::vector<uint32_t> chs;
    for (int i = 0; i < 30; ++i) chs.push_back(StartWatch({{"path", "t"}}));
    EXPECT_GE(FdCount(pid_), base + 30);
    Sh("echo x > t/a/b/f");
    for (uint32_t ch : chs) EXPECT_EQ(Stop(ch), (json{{"type", "stopped"}, {"reason", "cancelled"}}));
    c_->Call({{"op", "hello"}});
    EXPECT_EQ(FdCount(pid_), base);
  }
  for (int i = 0; i < 20; ++i) StartWatch({{"path", "t"}});
  c_ = std::make_unique<Client>(sock_);
  ASSERT_TRUE(c_->ok());
  c_->Call({{"op", "hello"}});
  EXPECT_EQ(FdCount(pid_), base);
  EXPECT_TRUE(AgentAlive());
}

json With(json req, const std::string& since) {
  req["since"] = since;
  return req;
}

TEST_F(WatchTest, CheckCursor) {
  Sh("mkdir w");
  json req{{"op", "fs.check"}, {"path", "w"}};
  auto r = c_->Call(req);
  ASSERT_EQ(r.reply["status"], "unchanged") << r.reply;
  std::string v = r.reply["version"];
  ASSERT_NE(v.find(':'), std::string::npos);
  r = c_->Call(With(req, v));
  EXPECT_EQ(r.reply["status"], "unchanged") << r.reply;
  EXPECT_EQ(r.reply["version"], v);
  Sh("echo 1 > w/f");
  r = c_->Call(With(req, v));
  EXPECT_EQ(r.reply["status"], "changed") << r.reply;
  std::string v2 = r.reply["version"];
  EXPECT_NE(v2, v);
  r = c_->Call(With(req, v2));
  EXPECT_EQ(r.reply["status"], "unchanged") << r.reply;
  // The old version still sees the change.
  EXPECT_EQ(c_->Call(With(req, v)).reply["status"], "changed");
  // Excluded paths do not count.
  Sh("mkdir -p w/node_modules && echo 1 > w/node_modules/x");
  r = c_->Call(With(req, v2));
  EXPECT_EQ(r.reply["status"], "unchanged") << r.reply;
  // A foreign watch id: restarted.
  r = c_->Call(With(req, "bogus:3"));
  EXPECT_EQ(r.reply["status"], "resync") << r.reply;
  EXPECT_EQ(r.reply["reason"], "restarted");
  // Another key (include) has its own watch; a version of another watch is restarted.
  json req2 = req;
  req2["include"] = {"*.txt"};
  r = c_->Call(With(req2, v2));
  EXPECT_EQ(r.reply["status"], "resync") << r.reply;
  EXPECT_EQ(r.reply["reason"], "restarted");
  std::string v3 = r.reply["version"];
  Sh("echo 2 > w/g.js");
  EXPECT_EQ(c_->Call(With(req2, v3)).reply["status"], "unchanged");
  Sh("echo 2 > w/g.txt");
  EXPECT_EQ(c_->Call(With(req2, v3)).reply["status"], "changed");
  // Many changes overflow the change log: expired.
  Sh("for i in $(seq 1 1200); do echo $i > w/n$i; done");
  r = c_->Call(With(req, v2));
  EXPECT_EQ(r.reply["status"], "resync") << r.reply;
  EXPECT_EQ(r.reply["reason"], "expired");
}


TEST_F(WatchTest, FileWriteIsOneModify) {
  Sh("echo old > existing");
  uint32_t ch = StartWatch({{"path", "."}});
  ASSERT_TRUE(c_->Call({{"op", "file.write"}, {"path", "existing"}, {"content", "new"}}).reply.contains("path"));
  ASSERT_TRUE(c_->Call({{"op", "file.write"}, {"path", "fresh"}, {"content", "x"}}).reply.contains("path"));
  auto evs = Collect(*c_, ch, 300);
  ASSERT_EQ(evs.size(), 2u) << Dump(evs);
  EXPECT_TRUE(Has(evs, "modify", ws_ + "/existing", false)) << Dump(evs);
  EXPECT_TRUE(Has(evs, "modify", ws_ + "/fresh", false)) << Dump(evs);
  Stop(ch);
  // A single-file watch sees it too.
  ch = StartWatch({{"path", "existing"}});
  c_->Call({{"op", "file.write"}, {"path", "existing"}, {"content", "newer"}});
  evs = Collect(*c_, ch, 300);
  ASSERT_EQ(evs.size(), 1u) << Dump(evs);
  EXPECT_TRUE(Has(evs, "modify", ws_ + "/existing", false)) << Dump(evs);
  Stop(ch);
}

TEST_F(WatchTest, SlowReaderOverflowIsBounded) {
  // 2000 files with long names, touched 40 times: 80000 attrib events of
  // ~350 bytes while nothing is read, so the connection backs up past its
  // 8 MiB limit and the per-watch queue overflows.
  std::string pre(200, 'n');
  Sh("mkdir flood && cd flood && seq -f '" + pre + "%g' 1 2000 | xargs touch");
  uint32_t ch = StartWatch({{"path", "flood"}, {"events", {"attrib"}}});
  Sh("cd flood && for i in $(seq 1 40); do seq -f '" + pre + "%g' 1 2000 | xargs touch; sleep 0.03; done");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // events keep coming meanwhile: the point
  long rss = AgentRssKb();
  std::vector<json> other;
  auto evs = Collect(*c_, ch, 3000, &other);
  EXPECT_GT(evs.size(), 20000u);
  EXPECT_LT(evs.size(), 80000u);
  uint64_t dropped = 0;
  for (auto& j : other)
    if (j.value("type", "") == "overflow") dropped += j.value("dropped", 0);
  EXPECT_GT(dropped, 0u);
  EXPECT_LT(rss, 200 * 1024);
  // It still works afterwards.
  Sh("touch flood/" + pre + "1");
  evs = Collect(*c_, ch, 300);
  EXPECT_EQ(evs.size(), 1u);
  EXPECT_EQ(Stop(ch), (json{{"type", "stopped"}, {"reason", "cancelled"}}));
  EXPECT_TRUE(AgentAlive());
}


TEST_F(WatchTest, RelativeToSessionCwd) {
  Sh("mkdir -p sub/x");
  ASSERT_EQ(c_->Call({{"op", "session.create"}, {"id", "ws1"}, {"cwd", ws_ + "/sub"}}).reply["id"], "ws1");
  uint32_t ch = StartWatch({{"path", "x"}, {"sessionId", "ws1"}});
  EXPECT_EQ(watch_path_, ws_ + "/sub/x");
  Sh("echo 1 > sub/x/f");
  auto evs = Collect(*c_, ch, 300);
  EXPECT_TRUE(Has(evs, "create", ws_ + "/sub/x/f", false)) << Dump(evs);
  Stop(ch);
  auto r = c_->Call({{"op", "fs.check"}, {"path", "x"}, {"sessionId", "ws1"}});
  EXPECT_EQ(r.reply["status"], "unchanged") << r.reply;
  std::string v = r.reply["version"];
  Sh("touch sub/x/g");
  // The same key through an absolute path.
  r = c_->Call({{"op", "fs.check"}, {"path", ws_ + "/sub/x"}, {"since", v}});
  EXPECT_EQ(r.reply["status"], "changed") << r.reply;
}

// PTY terminals (pty.attach / pty.resize).
class PtyTest : public AgentTest {
 protected:
  uint32_t Attach(const json& extra = json::object()) {
    json req = {{"op", "pty.attach"}, {"sessionId", "t"}};
    for (auto& [k, v] : extra.items()) req[k] = v;
    return c_->Send(req);
  }
  void Input(uint32_t ch, std::string_view s) { c_->SendRaw(EncodeFrame(ch, FrameType::kData, s)); }
  // Decoded output of ch until it contains `want` (or a reply / timeout).
  std::string ReadUntil(uint32_t ch, const std::string& want, json* reply = nullptr, int ms = 10000) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (out.find(want) == std::string::npos) {
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now()).count());
      if (left <= 0) break;
      auto f = c_->NextOn(ch, left);
      if (!f) break;
      json j = json::parse(f->payload, nullptr, false);
      if (f->type == FrameType::kReply) {
        if (reply) *reply = j;
        break;
      }
      if (j.value("type", "") == "output" || j.value("type", "") == "replay")
        out += *Base64Decode(j.value("data", ""));
    }
    return out;
  }
  // Expects replay then ready; returns the replayed bytes.
  std::string Handshake(uint32_t ch) {
    auto f = c_->NextOn(ch, 10000);
    EXPECT_TRUE(f && f->type == FrameType::kEvent);
    if (!f) return "";
    json j = json::parse(f->payload);
    EXPECT_EQ(j["type"], "replay");
    std::string replay = *Base64Decode(j.value("data", ""));
    f = c_->NextOn(ch, 10000);
    EXPECT_TRUE(f && f->type == FrameType::kEvent);
    if (f) {
      EXPECT_EQ(json::parse(f->payload), (json{{"type", "ready"}}));
    }
    return replay;
  }
};

TEST_F(PtyTest, EchoSizeResizeReplayDetachExit) {
  c_->Call({{"op", "hello"}});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // warm up (lazily opened fds): no other sign
  size_t base = FdCount(pid_);

  uint32_t a = Attach({{"cols", 120}, {"rows", 40}});
  EXPECT_EQ(Handshake(a), "");
  Input(a, "echo hi-from-$((1+1))-pty\r");
  EXPECT_NE(ReadUntil(a, "hi-from-2-pty").find("hi-from-2-pty"), std::string::npos);
  Input(a, "stty size; echo T=$TERM\r");
  std::string o = ReadUntil(a, "T=xterm-256color\r");
  EXPECT_NE(o.find("40 120"), std::string::npos) << o;

  auto r = c_->Call({{"op", "pty.resize"}, {"sessionId", "t"}, {"cols", 100}, {"rows", 30}});
  EXPECT_EQ(r.reply, json::object());
  Input(a, "stty size; echo done-$((0+1))\r");
  o = ReadUntil(a, "done-1\r");
  EXPECT_NE(o.find("30 100"), std::string::npos) << o;
  EXPECT_EQ(c_->Call({{"op", "pty.resize"}, {"sessionId", "nope"}, {"cols", 10}, {"rows", 10}}).Code(),
            "PTY_NOT_FOUND");
  EXPECT_EQ(c_->Call({{"op", "pty.resize"}, {"sessionId", "t"}, {"cols", 0}, {"rows", 10}}).Code(),
            "VALIDATION_FAILED");

  // A second attach replays earlier output; both get live output.
  uint32_t b = Attach();
  EXPECT_NE(Handshake(b).find("hi-from-2-pty"), std::string::npos);
  Input(b, "echo both-$((2+2))\r");
  EXPECT_NE(ReadUntil(a, "both-4").find("both-4"), std::string::npos);
  EXPECT_NE(ReadUntil(b, "both-4").find("both-4"), std::string::npos);

  // Cancel detaches one channel; the shell keeps running.
  c_->Cancel(b);
  auto rb = c_->Wait(b);
  EXPECT_EQ(rb.reply, (json{{"type", "detached"}}));
  Input(a, "echo still-$((3+3))\r");
  EXPECT_NE(ReadUntil(a, "still-6").find("still-6"), std::string::npos);
  uint32_t d = Attach({{"cols", 5000}});  // size ignored... but validated
  EXPECT_EQ(c_->Wait(d).reply["error"]["code"], "VALIDATION_FAILED");
  uint32_t e = Attach();
  EXPECT_NE(Handshake(e).find("still-6"), std::string::npos);

  // exit 3: every attached channel gets the exit reply; the PTY is gone.
  Input(e, "exit 3\r");
  json ra, re;
  ReadUntil(a, "\x01never", &ra);
  ReadUntil(e, "\x01never", &re);
  EXPECT_EQ(ra, (json{{"type", "exit"}, {"code", 3}}));
  EXPECT_EQ(re, (json{{"type", "exit"}, {"code", 3}}));
  EXPECT_EQ(c_->Call({{"op", "pty.resize"}, {"sessionId", "t"}, {"cols", 10}, {"rows", 10}}).Code(),
            "PTY_NOT_FOUND");
  c_->Call({{"op", "hello"}});
  EXPECT_EQ(FdCount(pid_), base);

  // The next attach makes a new PTY (empty replay); detaching leaves no fds once it exits.
  uint32_t f = Attach({{"shell", "sh"}});
  EXPECT_EQ(Handshake(f), "");
  Input(f, "echo new-$((4+4))\r");
  EXPECT_NE(ReadUntil(f, "new-8").find("new-8"), std::string::npos);
  c_->Cancel(f);
  EXPECT_EQ(c_->Wait(f).reply, (json{{"type", "detached"}}));
  uint32_t g = Attach();
  Handshake(g);
  Input(g, "kill -9 $$\r");
  json rg;
  ReadUntil(g, "\x01never", &rg);
  EXPECT_EQ(rg, (json{{"type", "exit"}, {"code", 137}, {"signal", "SIGKILL"}}));
  c_->Call({{"op", "hello"}});
  EXPECT_EQ(FdCount(pid_), base);
  EXPECT_TRUE(AgentAlive());
}

TEST_F(PtyTest, ValidationAndSessionCwdEnv) {
  EXPECT_EQ(c_->Call({{"op", "session.create"}, {"id", "t"}, {"env", {{"PTYVAR", "pv"}}}}).reply["id"], "t");
  EXPECT_EQ(c_->Call({{"op", "pty.attach"}}).Code(), "VALIDATION_FAILED");
  EXPECT_EQ(c_->Call({{"op", "pty.attach"}, {"sessionId", "t"}, {"shell", "no-such-shell-xyz"}}).Code(),
            "VALIDATION_FAILED");
  EXPECT_EQ(c_->Call({{"op", "pty.attach"}, {"sessionId", "t"}, {"shell", "bin/sh"}}).Code(),
            "VALIDATION_FAILED");
  fs::create_directories(ws_ + "/sub");
  EXPECT_EQ(c_->Call(Exec("cd sub", "t")).reply["exitCode"], 0);
  uint32_t a = Attach();
  Handshake(a);
  Input(a, "echo \"[$PWD:$PTYVAR]\"\r");
  std::string want = "[" + ws_ + "/sub:pv]";
  std::string got = ReadUntil(a, want);
  EXPECT_NE(got.find(want), std::string::npos) << got;
  // Input larger than the PTY accepts (the shell is not reading) does not block the agent.
  Input(a, "sleep 30\r");
  WaitUntil([&] { return AgentRuns("sleep 30"); }, "sleep to run in the PTY's shell");
  Input(a, std::string(300000, 'x'));
  EXPECT_EQ(c_->Call({{"op", "hello"}}, 5000).reply["version"].is_string(), true);
  EXPECT_TRUE(AgentAlive());
}

TEST_F(PtyTest, FloodWithSlowReaderStaysResponsive) {
  uint32_t a = Attach();
  Handshake(a);
  Input(a, "head -c 20000000 /dev/zero | base64 -w 100; echo flood-$((5+5))\r");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // not reading
  Client other(sock_);
  // A second connection replaces the first; the agent stays healthy and the PTY survives.
  ASSERT_TRUE(other.ok());
  auto h = other.Call({{"op", "hello"}}, 5000);
  EXPECT_TRUE(h.reply["version"].is_string());
  long rss = AgentRssKb();
  EXPECT_LT(rss, 64 * 1024) << rss;
  uint32_t b = other.Send({{"op", "pty.attach"}, {"sessionId", "t"}});
  auto f = other.NextOn(b, 10000);
  ASSERT_TRUE(f);
  EXPECT_EQ(json::parse(f->payload)["type"], "replay");
  EXPECT_LE(Base64Decode(json::parse(f->payload)["data"].get<std::string>())->size(), 256u << 10);
}

}  // namespace
}  // namespace cove::agent
