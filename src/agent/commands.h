// Commands: sessionless commands, exec without a session (or with
// "__DISABLE_SESSION__"): each is `bash -c CMD` (else `sh -c`) in its own
// process group as the sandbox's default user, streaming its output on the
// exec channel until it exits, is timed out or is cancelled.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "agent/exec_job.h"
#include "agent/part.h"
#include "sys/unique_fd.h"

namespace cove::agent {

class Commands : public Part {
 public:
  explicit Commands(const PartEnv& env);
  ~Commands() override;

  // Commands has no op of its own: Sessions hands it the sessionless exec
  // requests. Starts job; its channel is answered when the command ends.
  void RunSessionless(ExecJob job);
  void Shutdown() override;  // kills every command's process group

 private:
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

  void OnProcExit(uint64_t id, int status);
  void KillProc(uint64_t id, Kill why);

  std::unordered_map<uint64_t, std::unique_ptr<Proc>> procs_;
  uint64_t next_proc_ = 1;
};

}  // namespace cove::agent
