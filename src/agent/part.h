// Part: one concept of cove-agent (sessions, sessionless commands,
// background processes, port watches, file watches, terminals, code
// contexts, file operations). A part owns its state; Agent owns the
// connection and drives the parts: it hands each its ops, typed (Handle),
// and tells it about the connection and the loop (the hooks below).
// A part answers through the Link, watches fds and sets timers on the
// EventLoop, and registers the children it starts in Children.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/child_env.h"
#include "agent/children.h"
#include "agent/config.h"
#include "agent/link.h"
#include "agent/loop.h"
#include "agent/ops.h"
#include "agent/output_pipe.h"
#include "base/utf8.h"

namespace cove::agent {

// What every part borrows from the agent (all outlive the parts).
struct PartEnv {
  const AgentConfig& cfg;
  EventLoop& loop;
  Link& link;
  Children& children;
  int devnull;                 // /dev/null, read-write
  const std::string& run_dir;  // the agent's private directory (set before the first request)
};

// The reply to an op no part serves.
inline json UnknownOp(const std::string& op) {
  return ErrorReply("VALIDATION_FAILED", "unknown op '" + op + "'", json{{"op", op}});
}

class Part {
 public:
  explicit Part(const PartEnv& env)
      : cfg_(env.cfg), loop_(env.loop), link_(env.link), children_(env.children), devnull_(env.devnull),
        run_dir_(env.run_dir) {}
  virtual ~Part() = default;
  Part(const Part&) = delete;
  Part& operator=(const Part&) = delete;

  // Serves an op this part is routed (agent.cc), parsed and checked (ops.h);
  // the part may move what it keeps out of `op`. c is answered now or later
  // (a Cancel frame runs what SetCancel installed); data frames on c come
  // through the part's own entry (FileOps::Data, Terminals::Input). The
  // default answers that the op is unknown.
  virtual void Handle(const Chan& c, AnyOp& op);
  // The connection dropped: all its channels are dead; forget what is kept per channel.
  virtual void OnConnectionLost() {}
  // A channel got credit: producers that keep their own queues look again.
  virtual void OnCredit() {}
  // Runs between polls while the connection is not backed up. Returns true
  // when it has more to send at once (the loop then does not sleep).
  virtual bool Pump() { return false; }
  // The agent is exiting: kill this part's processes (reaped afterwards).
  virtual void Shutdown() {}

 protected:
  // Shorthands for the Link.
  bool Live(const Chan& c) const { return link_.Live(c); }
  void SendFrame(const Chan& c, FrameType t, std::string_view payload) { link_.SendFrame(c, t, payload); }
  void Event(const Chan& c, std::string_view payload) { link_.Event(c, payload); }
  void Reply(const Chan& c, const json& j) { link_.Reply(c, j); }
  void ReplyRaw(const Chan& c, std::string_view payload) { link_.ReplyRaw(c, payload); }
  void SetCancel(const Chan& c, std::function<void()> fn) { link_.SetCancel(c, std::move(fn)); }
  bool Blocked() const { return link_.Blocked(); }
  bool Starved(const Chan& c) const { return link_.Starved(c); }
  bool Held(const Chan& c) const { return link_.Held(c); }
  bool HoldOutput(uint64_t token, const Chan* c) { return link_.HoldOutput(token, c); }
  // A child's environment on top of the agent's (child_env.h).
  std::vector<std::string> BuildEnv(const std::vector<std::pair<std::string, std::string>>& extra,
                                    const Identity* ident) const {
    return agent::BuildEnv(cfg_.env, extra, ident);
  }
  const std::string& RunDir() const { return run_dir_; }

  // Output pipes of children (output_pipe.h).
  bool PumpOnce(int fd, const char* type, Utf8JsonStream* dec, const Chan* c, size_t max, int reads = 1) {
    return agent::PumpOnce(link_, fd, type, dec, c, max, reads);
  }
  void Drain(int fd, const char* type, Utf8JsonStream* dec, const Chan* c) {
    agent::Drain(link_, fd, type, dec, c);
  }
  void FinishStreams(Utf8JsonStream* out, Utf8JsonStream* err, const Chan* c) {
    agent::FinishStreams(link_, out, err, c);
  }
  void OnOutputReadable(uint64_t* token, int fd, const char* type, Utf8JsonStream* dec, const Chan* c) {
    agent::OnOutputReadable(link_, loop_, token, fd, type, dec, c);
  }

  const AgentConfig& cfg_;
  EventLoop& loop_;
  Link& link_;
  Children& children_;
  const int devnull_;

 private:
  const std::string& run_dir_;
};

}  // namespace cove::agent
