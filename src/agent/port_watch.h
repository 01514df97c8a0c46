// PortWatches: port.watch (docs/agent-protocol.md, "Port watches"). Each
// watch polls 127.0.0.1:port from the event loop (non-blocking connect,
// epoll, timers) until it accepts a connection (tcp) or answers an HTTP GET
// with a status in range (http), or until the background process it names
// exits. Watches end with the connection.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "agent/part.h"
#include "sys/unique_fd.h"

namespace cove::agent {

class PortWatches : public Part {
 public:
  // A background process as a port watch sees it (nullopt: no such process).
  struct ProcessState {
    bool exited = false;
    std::optional<int> exit_code;
  };
  using ProcessLookup = std::function<std::optional<ProcessState>(const std::string& process_id)>;

  PortWatches(const PartEnv& env, ProcessLookup find_process);
  ~PortWatches() override;

  void Handle(const Chan& c, AnyOp& any) override;  // port.watch
  void OnConnectionLost() override;
  // Background process `process_id` exited: its watches answer process_exited.
  void OnProcessExit(const std::string& process_id, std::optional<int> exit_code);

 private:
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

  void StartPortWatch(const Chan& c, const PortWatchOp& op);
  void PortAttempt(uint64_t id);
  void OnPortEvent(uint64_t id, uint32_t events);
  void PortAttemptFailed(PortWatch* w);
  void ClosePortAttempt(PortWatch* w);
  void FinishPortWatch(uint64_t id, const json* reply);  // reply null: no reply (dead channel)

  ProcessLookup find_process_;
  std::map<uint64_t, std::unique_ptr<PortWatch>> port_watches_;
  uint64_t next_port_watch_ = 1;
};

}  // namespace cove::agent
