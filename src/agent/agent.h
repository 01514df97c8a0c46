// Agent: cove-agent's connection to coved and its single epoll loop (no
// threads).
//
// It serves one coved connection at a time on a listening socket: it reads
// frames, keeps the open channels and their credit (docs/agent-protocol.md),
// parses each request once into its typed op (ops.h) and hands the op to the
// part (part.h) that serves it: Sessions
// (persistent shells and exec), Commands (sessionless exec), FileOps,
// Processes (background processes), PortWatches, FileWatches, Terminals
// (PTYs) and CodeContexts (code interpreter). It reaps every child and
// orphan (Children routes an exit to the part that started the child), and
// shuts everything down on SIGTERM/SIGINT/SIGHUP. All work outlives the
// connection: when it drops, output and replies of running work are
// discarded, and a new connection sees the same sessions.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agent/children.h"
#include "agent/code_context.h"
#include "agent/commands.h"
#include "agent/config.h"
#include "agent/file_ops.h"
#include "agent/file_watch.h"
#include "agent/frame.h"
#include "agent/link.h"
#include "agent/loop.h"
#include "agent/part.h"
#include "agent/port_watch.h"
#include "agent/processes.h"
#include "agent/sessions.h"
#include "agent/terminal.h"
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
  // Ops a part serves: an exact op name, or a prefix ending in '.'.
  struct Route {
    std::string_view op;
    Part* part;
  };

  // Connection.
  void OnAccept();
  void DropConnection(const char* why);
  void OnConnEvent(uint32_t events);
  void HandleFrame(Frame f);
  // Parses `req` into its op (ops.h), lets go of it, and hands the op to
  // the part that serves it (hello is the agent's own).
  void HandleRequest(const Chan& c, json req);
  void Flush();
  size_t Pending() const { return out_.size() - out_off_; }
  void OnWindow(uint32_t channel, std::string_view payload);
  // Forgets an open channel, resuming the output it held paused.
  void CloseChannel(uint32_t channel);

  // Link (link.h), for the parts.
  bool Live(const Chan& c) const override { return conn_.valid() && c.gen == gen_; }
  void SendFrame(const Chan& c, FrameType t, std::string_view payload) override;
  void Reply(const Chan& c, const json& j) override;
  void ReplyRaw(const Chan& c, std::string_view payload) override;
  void SetCancel(const Chan& c, std::function<void()> fn) override;
  bool Blocked() const override { return conn_.valid() && Pending() > cfg_.out_high; }
  bool Starved(const Chan& c) const override;
  bool HoldOutput(uint64_t token, const Chan* c) override;
  std::optional<int64_t> Credit(const Chan& c) const override;

  // Signals and shutdown.
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
  // The heap keeps what large operations freed (no mmap/munmap and page
  // faults per buffer) until the agent has been idle for kHeapTrimDelayNs.
  static constexpr int64_t kHeapTrimDelayNs = 2'000'000'000;
  uint64_t heap_trim_timer_ = 0;
  int64_t last_frame_ns_ = 0;
  void NoteActivity();  // a frame arrived
  void ArmHeapTrim();
  UniqueFd conn_;
  uint64_t conn_tok_ = 0;
  uint64_t gen_ = 0;
  std::unique_ptr<FrameDecoder> decoder_;
  std::string out_;
  size_t out_off_ = 0;
  std::unordered_map<uint32_t, Channel> open_;
  std::vector<uint64_t> paused_;  // output watches paused until the connection drains

  Children children_;
  std::string run_dir_;

  // The parts, destroyed before what they borrow. parts_ holds them in the
  // order they are pumped, told of the connection's loss and shut down.
  std::unique_ptr<Commands> commands_;
  std::unique_ptr<Sessions> sessions_;
  std::unique_ptr<FileOps> file_ops_;
  std::unique_ptr<Processes> processes_;
  std::unique_ptr<PortWatches> port_watches_;
  std::unique_ptr<FileWatches> file_watches_;
  std::unique_ptr<Terminals> terminals_;
  std::unique_ptr<CodeContexts> code_contexts_;
  std::vector<Part*> parts_;
  std::vector<Route> routes_;  // op -> part
};

}  // namespace cove::agent
