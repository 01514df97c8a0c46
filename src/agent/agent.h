// Agent: cove-agent's state and its single epoll loop (no threads).
//
// It serves one coved connection at a time on a listening socket, runs
// sessions (persistent shells), sessionless commands and file operations
// (docs/agent-protocol.md), and reaps every child and orphan. All work
// outlives the connection: when it drops, output and replies of running
// work are discarded, and a new connection sees the same sessions.
#pragma once

#include <sys/types.h>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/child_env.h"
#include "agent/children.h"
#include "agent/config.h"
#include "agent/files.h"
#include "agent/frame.h"
#include "agent/link.h"
#include "agent/loop.h"
#include "agent/output_pipe.h"
#include "agent/process_log.h"
#include "agent/reply.h"
#include "agent/util.h"
#include "sys/unique_fd.h"

namespace cove::agent {

class Agent : private Link {
 public:
  explicit Agent(AgentConfig cfg);
  ~Agent();
  // Runs until SIGTERM/SIGINT/SIGHUP. Returns the process exit code.
  int Run();

 private:
  // An open channel of the current connection: how to stop its work, its
  // send credit (frame.h), and the output watches paused until it has credit.
  struct Channel {
    std::function<void()> cancel;
    int64_t credit = 0;  // coved grants the first window after the request
    std::vector<uint64_t> paused;
  };
  struct SessionSpec {
    std::vector<std::pair<std::string, std::string>> env;
    std::string cwd;
    Identity ident;
    uint64_t default_timeout_ms = 0;  // for exec without timeoutMs (0 = none)
  };
  struct ExecJob {
    Chan chan;
    std::string command;
    std::vector<std::pair<std::string, std::string>> env;
    std::string cwd;
    bool has_cwd = false;
    std::optional<uint64_t> timeout_ms;
  };
  enum class Kill { kNone, kTimeout, kCancel };
  struct Session {
    std::string id;
    SessionSpec spec;
    pid_t pid = -1;
    bool bash = true;
    UniqueFd in, out, err, mark;
    uint64_t out_tok = 0, err_tok = 0, mark_tok = 0;
    std::string mark_buf;
    bool exiting = false;  // in OnShellExit: start nothing
    uint64_t seq = 0;
    std::deque<ExecJob> queue;
    std::optional<ExecJob> cur;
    uint64_t cur_seq = 0;
    Kill kill = Kill::kNone;
    uint64_t timer = 0;
    int64_t kill_started_ns = 0;
    int quiet_rounds = 0;
    unsigned long long start_ticks = 0;
    int64_t started_ns = 0;
    Utf8JsonStream out_dec, err_dec;
    std::string cmd_file;
  };
  struct Proc {  // a sessionless command
    uint64_t id = 0;
    pid_t pid = -1;
    Chan chan;
    UniqueFd out, err;
    uint64_t out_tok = 0, err_tok = 0;
    Utf8JsonStream out_dec, err_dec;
    uint64_t timer = 0;
    Kill kill = Kill::kNone;
    int64_t started_ns = 0;
  };
  // Background processes (process.start). Output is kept in a ProcessLog.
  struct Follower {  // a process.stream channel
    Chan chan;
    LogReader::Cursor cur;
    uint64_t pos[2] = {0, 0};  // stream offsets sent (or reported dropped) so far
    LogReader reader;
  };
  struct LogsTask {  // a process.logs answer too large for one frame
    Chan chan;
    std::string id;
    std::shared_ptr<const ProcessLog::State> snap;  // the output when it was asked for
    LogReader reader;
    LogReader::Cursor cur;
    int pass = 0;  // stdout, then stderr
  };
  struct BgProc {
    std::string id, command, tag;
    pid_t pid = -1;
    std::string status = "running";
    int64_t start_ms = 0, end_ms = 0;
    std::optional<int> exit_code;
    bool exited = false;    // reaped (or never started)
    bool killed = false;    // by process.kill/killAll/timeout
    bool timed_out = false;
    int kill_sig = 0;
    UniqueFd fd[2];
    uint64_t tok[2] = {0, 0};
    std::unique_ptr<ProcessLog> log;
    std::string carry[2];  // incomplete UTF-8 tail of the last read per stream
    std::vector<Follower> followers;
    uint64_t timer = 0;
  };
  // port.watch (watch.cc): polls 127.0.0.1:port until it accepts (tcp) or
  // answers with a status in range (http).
  struct PortWatch {
    uint64_t id = 0;
    Chan chan;
    int port = 0;
    bool http = true;
    std::string path = "/";
    int status_min = 200, status_max = 399;
    std::string process_id;
    int64_t interval_ms = 500;
    int64_t attempt_start_ns = 0;
    UniqueFd sock;           // the current attempt's socket
    uint64_t tok = 0;        // its watch
    uint64_t timeout = 0;    // its timeout timer
    uint64_t next = 0;       // timer of the next attempt
    bool connected = false;
    std::string wbuf, rbuf;  // request left to send, response read so far
  };
  // fs.watch / fs.check (fswatch.cc): one inotify fd per watch.
  struct FsWatch {
    uint64_t num = 0;
    std::string id;          // watchId
    Chan chan;               // fs.watch channel (unused for check watches)
    bool check = false;      // a persistent fs.check watch
    std::string key;         // its key in check_keys_
    int64_t last_used_ns = 0;
    std::string root;        // watched directory (absolute)
    std::string file;        // watching one file: its name in root ("" = directory)
    bool recursive = true;
    uint32_t events = 0;     // bit per event type (kFsEv*)
    std::vector<std::string> include, exclude;
    UniqueFd ifd;
    uint64_t tok = 0;
    std::unordered_map<int, std::string> wds;  // wd -> directory path
    std::unordered_map<std::string, int> dirs; // directory path -> wd
    std::unordered_map<std::string, int64_t> recent;  // coalescing: "type\0path" -> ns
    std::deque<std::string> queue;  // events not yet sent (backpressure)
    uint64_t dropped = 0;
    bool kernel_overflow = false;
    std::vector<uint32_t> temp_cookies;  // renames of file.write's temp files
    uint32_t dir_move_cookie = 0;        // a directory moved away, maybe within the tree
    std::string dir_move_from;
    // fs.check change log: cursor = events seen; changes remembered from floor.
    uint64_t cursor = 0;
    uint64_t floor = 0;  // cursors below this are expired
    std::deque<uint64_t> log;
  };
  struct PendingWrite {  // file.write waiting for its data frame
    FileCtx ctx;
    json req;
  };
  struct ReadTask {
    Chan chan;
    std::unique_ptr<FileReader> reader;
  };
  // PTY terminals (pty.cc): one per session id, created by the first pty.attach.
  struct PtyClient {  // an attached channel
    Chan chan;
    std::deque<std::string> q;  // output not yet sent (raw bytes)
    size_t qbytes = 0;
    uint64_t dropped = 0;
  };
  struct Pty {
    std::string sid;
    pid_t pid = -1;
    UniqueFd master;
    uint64_t tok = 0;         // master watch (0 once the slave side hung up)
    std::string ring;         // newest output (at most kPtyRing bytes)
    std::string in;           // input waiting for the master to accept it
    std::vector<PtyClient> clients;
  };

  // Code-interpreter contexts (interpreter.cc). A Runner is one runner
  // process: a context's, or a warm spare of a language family (python:
  // forked from the zygote; node: started), which the next context takes.
  enum class RunnerState { kStarting, kWaiting, kInitializing, kIdle, kBusy, kDead };
  struct CodeRun {
    Chan chan;
    std::string code, language;
    uint64_t timeout_ms = 0;  // 0 = none
  };
  struct Runner {
    std::string context_id, language, cwd;  // language: python | javascript | typescript;
                                            // context_id of a spare: "spare:FAMILY"
    std::vector<std::pair<std::string, std::string>> env;
    int64_t created_ms = 0;
    pid_t pid = -1;
    UniqueFd ctl, out, err;
    uint64_t ctl_tok = 0, out_tok = 0, err_tok = 0;
    std::string inbuf;  // control bytes after the last complete line
    RunnerState state = RunnerState::kStarting;
    std::optional<Chan> opener;  // context.create / restart, answered once initialized
    // Starting may be retried when what it relied on died before it was used
    // (a spare, or the zygote, killed from inside the sandbox); at most kMaxStartAttempts.
    bool retry_start = false;
    int start_attempts = 0;
    uint64_t incarnation = 0;    // unique per runner process (a restart gets a new one)
    std::deque<CodeRun> queue;
    std::optional<CodeRun> cur;
    uint64_t run_seq = 0;  // the current execution's id is its decimal string
    uint64_t timer = 0;
    uint64_t eof_timer = 0;  // control socket closed: waiting briefly for the exit status
    uint64_t interrupt_timer = 0;  // repeats SIGINT until the execution ends
    bool timed_out = false, saw_error = false;
    uint64_t execution_count = 0;
    Utf8JsonStream out_dec, err_dec;
    std::string log;    // output outside executions (newest 4 KiB), for crash reports
    std::string death;  // why the process is gone (kDead)
  };
  struct Zygote {  // the Python template that forks contexts
    pid_t pid = -1;
    UniqueFd sock;
    uint64_t tok = 0;
    bool ready = false;
    std::deque<std::string> waiting;  // contexts to fork once ready
    std::deque<std::string> forking;  // fork requests sent, in order
    UniqueFd err;                      // its stderr, for start-up failures
    uint64_t err_tok = 0;
    std::string log;
  };
  void HandleContextOp(const Chan& c, const std::string& op, const json& req);
  void CreateContext(const Chan& c, const json& req);
  void RunCode(const Chan& c, const json& req);
  // Starts (or restarts) a context's process, from the spare when there is
  // one. When the language is unavailable the opener is answered and the
  // context removed (r is then gone).
  void StartRunner(Runner* r);
  // Starts the first of `programs` found on PATH with the runner file and
  // args, as the sandbox's default user, in its own session, with `fds`.
  Result<pid_t> SpawnInterpreter(const std::vector<const char*>& programs, const char* runner,
                                 std::vector<std::string> args, std::vector<std::pair<int, int>> fds);
  bool SpawnNodeRunner(Runner* r, std::string* err);
  void EnsureSpare(const std::string& family);  // "python" | "node"
  void NoteRunnerExit(pid_t pid, int status);
  static bool IsSpare(const Runner& r);
  bool EnsureZygote(std::string* err);
  void ZygoteFork(Runner* r);
  void OnZygoteReadable();
  void StopZygote(const std::string& why);
  void WatchRunner(Runner* r);
  Runner* FindRunner(const std::string& context_id);  // spares too
  void OnRunnerControl(Runner* r);
  void OnRunnerMessage(Runner* r, const json& msg);
  void SendInit(Runner* r);  // the context's cwd and environment
  void OnRunnerOutput(Runner* r, int stream);
  void DrainRunnerOutput(Runner* r);
  void StartNextRun(Runner* r);
  void FinishRun(Runner* r, const json* error_event);
  void RunnerDied(Runner* r, std::string why);
  void KillRunner(Runner* r);
  void InterruptRun(Runner* r);
  json ContextInfo(const Runner& r) const;

  // Connection.
  void OnAccept();
  void DropConnection(const char* why);
  void OnConnEvent(uint32_t events);
  void HandleFrame(Frame f);
  void HandleRequest(const Chan& c, json& req);
  // Link (link.h).
  bool Live(const Chan& c) const override { return conn_.valid() && c.gen == gen_; }
  void SendFrame(const Chan& c, FrameType t, std::string_view payload) override;
  void Reply(const Chan& c, const json& j) override;
  void ReplyRaw(const Chan& c, std::string_view payload) override;
  void SetCancel(const Chan& c, std::function<void()> fn) override;
  bool Blocked() const override { return conn_.valid() && Pending() > cfg_.out_high; }
  bool Starved(const Chan& c) const override;
  bool HoldOutput(uint64_t token, const Chan* c) override;
  std::optional<int64_t> Credit(const Chan& c) const override;

  void Flush();
  size_t Pending() const { return out_.size() - out_off_; }
  void OnWindow(uint32_t channel, std::string_view payload);
  // Forgets an open channel, resuming the output it held paused.
  void CloseChannel(uint32_t channel);

  // Output pipes (output_pipe.h).
  bool PumpOnce(int fd, const char* type, Utf8JsonStream* dec, const Chan* c, size_t max) {
    return agent::PumpOnce(*this, fd, type, dec, c, max);
  }
  void Drain(int fd, const char* type, Utf8JsonStream* dec, const Chan* c) { agent::Drain(*this, fd, type, dec, c); }
  void FinishStreams(Utf8JsonStream* out, Utf8JsonStream* err, const Chan* c) {
    agent::FinishStreams(*this, out, err, c);
  }
  void OnOutputReadable(uint64_t* token, int fd, const char* type, Utf8JsonStream* dec, const Chan* c) {
    agent::OnOutputReadable(*this, loop_, token, fd, type, dec, c);
  }

  // Sessions.
  Session* GetOrCreateSession(const std::string& id);
  json CreateSession(const json& req);
  json DeleteSession(const json& req);
  std::vector<std::string> BuildEnv(const std::vector<std::pair<std::string, std::string>>& extra,
                                    const Identity* ident) const {
    return agent::BuildEnv(cfg_.env, extra, ident);
  }
  Status SpawnShell(Session* s);
  void CloseShell(Session* s, bool kill);
  void StartNext(Session* s);
  void OnMarker(const std::string& id);
  // Reads available completion markers; false on EOF/error.
  bool ReadMarkers(Session* s);
  void CompleteSession(Session* s, int code, bool terminated, bool reset);
  void OnShellExit(const std::string& id, int status);
  void KillSessionCommand(const std::string& id, Kill why);
  void OnKillGrace(const std::string& id);
  void CancelSessionJob(const std::string& id, uint32_t chan_id, uint64_t gen);
  std::string SessionCwd(const std::string& session_id);
  FileCtx MakeFileCtx(const json& req);

  // Sessionless commands.
  void RunSessionless(ExecJob job);
  void OnProcExit(uint64_t id, int status);
  void KillProc(uint64_t id, Kill why);

  // Exec request.
  void HandleExec(const Chan& c, const json& req);

  // Background processes (process.cc).
  void HandleProcessOp(const Chan& c, const std::string& op, const json& req);
  json StartBgProcess(const json& req);
  json BgInfo(const BgProc& p) const;
  void OnBgReadable(const std::string& id, int stream);
  void BgAppend(BgProc* p, int stream, std::string_view data, bool raw);
  void BgCloseStream(BgProc* p, int stream);
  void OnBgExit(const std::string& id, int status);
  void KillBg(BgProc* p, int sig, bool timeout);
  // Sends followers what they have not seen; true if one is held back by
  // connection backpressure.
  bool PumpFollowers(BgProc* p);
  bool PumpFollower(BgProc* p, Follower* f);  // false once it was answered
  void PumpAllFollowers();
  void BgLogs(const Chan& c, BgProc* p);
  bool PumpLogs(LogsTask* t);  // false once answered
  std::string ProcessLogPrefix(uint64_t n);
  void EvictFinished();

  // Port watches (watch.cc).
  void StartPortWatch(const Chan& c, const json& req);
  void PortAttempt(uint64_t id);
  void OnPortEvent(uint64_t id, uint32_t events);
  void PortAttemptFailed(PortWatch* w);
  void ClosePortAttempt(PortWatch* w);
  void FinishPortWatch(uint64_t id, const json* reply);  // reply null: no reply (dead channel)
  void OnBgExitWatches(const BgProc& p);
  void StopAllPortWatches();

  // File watches (fswatch.cc).
  void StartFsWatch(const Chan& c, const json& req);
  void FsCheck(const Chan& c, const json& req);
  // Parses the common fields; on error returns false and sets *err.
  bool ParseFsWatch(const json& req, bool check, FsWatch* w, json* err);
  bool OpenFsWatch(FsWatch* w, json* err);
  void AddFsDir(FsWatch* w, const std::string& dir, bool scan_events, int depth);
  void RemoveFsDirTree(FsWatch* w, const std::string& dir);
  void RenameFsDirTree(FsWatch* w, const std::string& from, const std::string& to);
  void OnFsReadable(uint64_t num);
  void FsEmit(FsWatch* w, const char* type, const std::string& path, bool is_dir);
  bool PumpFsWatch(FsWatch* w);  // true if held back by backpressure
  void PumpAllFsWatches();
  void FinishFsWatch(uint64_t num, const json* reply);
  void StopAllFsStreams();

  // PTY terminals (pty.cc).
  void HandlePtyOp(const Chan& c, const std::string& op, const json& req);
  void PtyAttach(const Chan& c, const json& req);
  bool PtyInput(uint32_t chan_id, std::string_view data);  // false: not a PTY channel
  void OnPtyEvent(const std::string& sid, uint32_t events);
  void PtyRead(Pty* p);
  void PtyWatchMask(Pty* p);
  bool PumpPty(Pty* p, bool force);  // true if held back by backpressure
  void PumpAllPtys();
  void OnPtyExit(const std::string& sid, int status);
  void PtyDetach(const std::string& sid, uint64_t gen, uint32_t chan_id);
  void DropPtyClients();

  // Children and signals.
  void OnSignal();
  void Shutdown();

  std::string RunDir();

  AgentConfig cfg_;
  EventLoop loop_;
  UniqueFd sigfd_;
  UniqueFd devnull_;
  int64_t start_ns_ = 0;
  bool stop_ = false;

  uint64_t listen_tok_ = 0;
  UniqueFd conn_;
  uint64_t conn_tok_ = 0;
  uint64_t gen_ = 0;
  std::unique_ptr<FrameDecoder> decoder_;
  std::string out_;
  size_t out_off_ = 0;
  std::unordered_map<uint32_t, Channel> open_;
  std::vector<uint64_t> paused_;  // output watches paused until the connection drains
  std::unordered_map<uint32_t, PendingWrite> pending_writes_;

  std::map<std::string, std::unique_ptr<Session>> sessions_;
  std::unordered_map<uint64_t, std::unique_ptr<Proc>> procs_;
  uint64_t next_proc_ = 1;
  std::deque<ReadTask> reads_;
  Children children_;
  std::string run_dir_;

  std::map<std::string, std::unique_ptr<BgProc>> bg_;
  std::deque<std::string> bg_finished_;  // ids in the order they finished
  std::vector<std::unique_ptr<LogsTask>> bg_logs_;
  bool bg_lagging_ = false;              // a follower waits for the connection
  uint64_t bg_tags_ = 0;

  std::map<uint64_t, std::unique_ptr<PortWatch>> port_watches_;
  uint64_t next_port_watch_ = 1;

  std::map<uint64_t, std::unique_ptr<FsWatch>> fs_watches_;
  std::unordered_map<std::string, uint64_t> check_keys_;  // fs.check key -> watch num
  uint64_t next_fs_watch_ = 1;
  bool fs_lagging_ = false;

  std::map<std::string, std::unique_ptr<Runner>> contexts_;
  std::map<std::string, std::unique_ptr<Runner>> spares_;  // by family
  std::unique_ptr<Zygote> zygote_;
  uint64_t next_incarnation_ = 0;  // Runner::incarnation: unique across runners

  std::map<std::string, std::unique_ptr<Pty>> ptys_;
  std::unordered_map<uint32_t, std::string> pty_chans_;  // attached channel -> session id
  bool pty_lagging_ = false;
};

}  // namespace cove::agent
