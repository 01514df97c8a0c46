// Terminals: pty.attach / pty.resize (docs/agent-protocol.md, "PTY
// terminals"); coved's /ws/pty.
//
// One PTY per session id, created by the first attach: the shell runs as a
// session leader with the PTY's slave side as its controlling terminal, in
// the session's cwd, env and identity. The master is always read (output goes
// into a ring of the newest kPtyRing bytes and into each attached channel's
// bounded queue), so neither the shell nor the agent ever waits for coved.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agent/part.h"
#include "sys/unique_fd.h"

namespace cove::agent {

class Terminals : public Part {
 public:
  Terminals(const PartEnv& env, SessionLookup session);
  ~Terminals() override;

  void Handle(const Chan& c, AnyOp& any) override;  // pty.*
  // A data frame on channel chan_id: keystrokes for the PTY it is attached
  // to. False if it is not an attached channel.
  bool Input(uint32_t chan_id, std::string_view data);
  void OnConnectionLost() override;  // detaches every client
  void OnCredit() override { pty_lagging_ = true; }
  bool Pump() override;
  void Shutdown() override;

 private:
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

  void PtyAttach(const Chan& c, const PtyAttachOp& op);
  void OnPtyEvent(const std::string& sid, uint32_t events);
  void PtyRead(Pty* p);
  void PtyWatchMask(Pty* p);
  bool PumpPty(Pty* p, bool force);  // true if held back by backpressure
  void PumpAllPtys();
  void OnPtyExit(const std::string& sid, int status);
  void PtyDetach(const std::string& sid, uint64_t gen, uint32_t chan_id);


  SessionLookup session_;
  std::map<std::string, std::unique_ptr<Pty>> ptys_;
  std::unordered_map<uint32_t, std::string> pty_chans_;  // attached channel -> session id
  bool pty_lagging_ = false;  // a client waits for the connection or its channel
};

}  // namespace cove::agent
