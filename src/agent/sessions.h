// Sessions: persistent shells, session.create/delete/list and exec
// (docs/agent-protocol.md, "Sessions").
//
// A session is a bash (else sh) whose stdin takes one command line at a
// time: each command is eval'd in the shell itself (so cd and exports
// persist), its output streamed on the exec channel, and its exit code
// reported through a marker line on fd kMarkerFd. Commands queue per
// session. A timed-out or cancelled command has its processes killed; a
// shell that does not finish it is replaced. Unknown sessions are created
// on first use (exec, file ops, terminals, background processes). exec
// without a session goes to Commands.
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

#include "agent/commands.h"
#include "agent/exec_job.h"
#include "agent/files.h"
#include "agent/part.h"
#include "base/error.h"
#include "sys/unique_fd.h"

namespace cove::agent {

class Sessions : public Part {
 public:
  // Sessionless exec requests go to `commands` (borrowed).
  Sessions(const PartEnv& env, Commands& commands);
  ~Sessions() override;

  void Handle(const Chan& c, AnyOp& op) override;  // exec, session.*
  void Shutdown() override;  // kills every shell and what it runs

  // Session ids, in order.
  json Ids() const;
  // The cwd, user and env of session_id, which is created when unknown (SessionLookup).
  SessionContext Context(const std::string& session_id);
  // The directory a file op's relative paths start from: the cwd of the
  // op's session (created when unknown), else the workspace; and the owner
  // of what it creates (a non-root session's user).
  FileCtx MakeFileCtx(const std::optional<std::string>& session_id);

 private:
  struct SessionSpec {
    std::vector<std::pair<std::string, std::string>> env;
    std::string cwd;
    Identity ident;
    uint64_t default_timeout_ms = 0;  // for exec without timeoutMs (0 = none)
  };
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

  void HandleExec(const Chan& c, ExecOp& op);
  Session* GetOrCreateSession(const std::string& id);
  json CreateSession(SessionCreateOp& op);
  json DeleteSession(const SessionDeleteOp& op);
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

  Commands& commands_;
  std::map<std::string, std::unique_ptr<Session>> sessions_;
};

}  // namespace cove::agent
