// Processes: background processes, process.start/list/get/kill/killAll/
// logs/stream/cleanup (docs/agent-protocol.md, "Background processes").
//
// A background process is `bash -c CMD` in its own session and process
// group, a direct child of the agent. Its pipes are always read: output goes
// into its ProcessLog (memory, then spill files on the sandbox's disk, up to a
// limit), so a flooding process never waits for anyone; process.logs and
// process.stream read the log, with flow control per channel, and are told how
// much the log no longer holds.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/part.h"
#include "agent/process_log.h"
#include "sys/unique_fd.h"

namespace cove::agent {

class Processes : public Part {
 public:
  // on_exit(id, exit code) runs when a background process has exited (after
  // its followers were answered); the code is nullopt when it was not
  // known (never started).
  using ExitFn = std::function<void(const std::string& id, std::optional<int> exit_code)>;
  Processes(const PartEnv& env, SessionLookup session, ExitFn on_exit);
  ~Processes() override;

  void Handle(const Chan& c, AnyOp& any) override;  // process.*
  void OnConnectionLost() override;  // drops followers and pending logs answers
  void OnCredit() override { bg_lagging_ = true; }
  bool Pump() override;
  void Shutdown() override;  // kills the running processes

  // Background process `id`: whether it has exited, and its exit code.
  struct State {
    bool exited = false;
    std::optional<int> exit_code;
  };
  std::optional<State> Find(const std::string& id) const;

 private:
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
  json StartBgProcess(ProcessStartOp& op);
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


  SessionLookup session_;
  ExitFn on_exit_;
  std::map<std::string, std::unique_ptr<BgProc>> bg_;
  std::deque<std::string> bg_finished_;  // ids in the order they finished
  std::vector<std::unique_ptr<LogsTask>> bg_logs_;
  bool bg_lagging_ = false;              // a follower waits for the connection
  uint64_t bg_tags_ = 0;
};

}  // namespace cove::agent
