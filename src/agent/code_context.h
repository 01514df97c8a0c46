// CodeContexts: code-interpreter contexts, context.create/list/get/delete/
// restart/interrupt/run/health (docs/agent-protocol.md, docs/interpreter.md).
//
// A context is one runner process (python_runner.py or node_runner.js from
// the read-only runner directory). Python contexts are forked by a zygote
// that has already imported everything; JavaScript and TypeScript contexts
// take a pre-started Node runner (the spare), and a new spare is started at
// once. Runners are untrusted: their control lines are bounded and checked,
// and a runner that misbehaves is killed and its context reported crashed.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/part.h"
#include "base/error.h"
#include "sys/unique_fd.h"

namespace cove::agent {

class CodeContexts : public Part {
 public:
  explicit CodeContexts(const PartEnv& env);
  ~CodeContexts() override;

  void Handle(const Chan& c, AnyOp& any) override;  // context.*
  void Shutdown() override;  // kills the runners and the zygote

 private:
  // A Runner is one runner process: a context's, or a warm spare of a
  // language family (python: forked from the zygote; node: started), which
  // the next context takes.
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
  void CreateContext(const Chan& c, const ContextCreateOp& op);
  void RunCode(const Chan& c, ContextRunOp& op);
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


  std::map<std::string, std::unique_ptr<Runner>> contexts_;
  std::map<std::string, std::unique_ptr<Runner>> spares_;  // by family
  std::unique_ptr<Zygote> zygote_;
  uint64_t next_incarnation_ = 0;  // Runner::incarnation: unique across runners
};

}  // namespace cove::agent
