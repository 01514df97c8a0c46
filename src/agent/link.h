// Link: what the agent's parts may do with the coved connection
// (docs/agent-protocol.md): send events, data and the one reply on the
// channels of the requests they serve, within each channel's credit and the
// connection's backpressure. Agent implements it; a part never sees the
// socket, the frames it receives, or other parts' channels.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

#include "agent/frame.h"
#include "agent/reply.h"

namespace cove::agent {

// A channel of one connection. Once that connection is gone the channel is
// dead: sending on it does nothing.
struct Chan {
  uint64_t gen = 0;  // connection generation the channel belongs to
  uint32_t id = 0;
};

class Link {
 public:
  // c belongs to the current connection and has not been answered.
  virtual bool Live(const Chan& c) const = 0;
  virtual void SendFrame(const Chan& c, FrameType t, std::string_view payload) = 0;
  void Event(const Chan& c, std::string_view payload) { SendFrame(c, FrameType::kEvent, payload); }
  // The final reply: ends the channel (a reply on a dead channel is dropped).
  virtual void Reply(const Chan& c, const json& j) = 0;
  virtual void ReplyRaw(const Chan& c, std::string_view payload) = 0;  // a serialised reply
  // What a Cancel frame on c does (replacing the previous one).
  virtual void SetCancel(const Chan& c, std::function<void()> fn) = 0;
  // The connection is backed up: no producer may send.
  virtual bool Blocked() const = 0;
  // c is open and has used up its credit: its producers wait for a Window frame.
  virtual bool Starved(const Chan& c) const = 0;
  // Events for c must wait (Blocked or Starved).
  bool Held(const Chan& c) const { return Blocked() || Starved(c); }
  // If events for c (null: output is discarded) must wait, pauses the output
  // watch `token` until they may flow again and returns true.
  virtual bool HoldOutput(uint64_t token, const Chan* c) = 0;
  // Send credit left on c (nullopt: not an open channel).
  virtual std::optional<int64_t> Credit(const Chan& c) const = 0;

 protected:
  ~Link() = default;
};

}  // namespace cove::agent
