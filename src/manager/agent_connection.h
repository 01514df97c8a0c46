// AgentConnection: coved's end of the framed stream to one sandbox's cove-agent.
//
// Everything the agent sends is hostile input: frames are bounded
// (agent::kMaxAgentFrame), payloads must be JSON objects, and any violation
// closes the connection and reports it through the failure callback (the
// manager then marks that sandbox failed).
//
// Flow control is per call (agent/frame.h): a call takes a window from the
// shared FlowBudget and grants it to the agent, which may send the call that
// much ahead of its consumer; credit goes back as the consumer takes events.
// So a slow consumer stalls only its own producer; the connection is always
// read, and pings and other calls go on. An agent that sends beyond a call's
// credit violates the protocol.
//
// Threading: every method runs on the connection's executor (its sandbox's
// shard, io/shards.h), except alive() and executor(), which any thread may call.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "agent/frame.h"
#include "base/error.h"
#include "io/async_signal.h"
#include "manager/flow_budget.h"

namespace cove {

using Json = nlohmann::json;

class AgentConnection : public std::enable_shared_from_this<AgentConnection> {
 public:
  using Clock = AsyncSignal::Clock;

  // One message of a call: an event, or the final reply.
  struct Message {
    bool final = false;
    Json body;              // null for raw data
    size_t wire_bytes = 0;  // payload size on the wire, for the queue bound
    bool raw = false;       // a Data frame: its bytes are in `data`, not `body`
    std::string data;
  };

  // One request/answer channel. Destroying an unfinished call cancels it.
  class Call : public std::enable_shared_from_this<Call> {
   public:
    ~Call();
    // The next event or the reply, in order. After the reply, or once the
    // connection is lost (kUnavailable) or the deadline passes (kTimeout), no more.
    Task<Result<Message>> Next(Clock::time_point deadline = Clock::time_point::max());
    // Asks the agent to stop the work; the reply still arrives.
    void Cancel();
    // Sends raw bytes to the open request (a Data frame), e.g. terminal input.
    // Over kMaxOutboxBytes the call fails instead.
    void SendData(std::string_view bytes);
    // Lets the agent answer this call with Data frames too (a file.read with
    // rawData:true); from any other call a Data frame is a protocol violation.
    void AcceptData() { accepts_data_ = true; }
    bool finished() const { return finished_; }
    // Next() would answer at once, without waiting: a message is queued, or
    // the call has failed.
    bool ready() const { return !queue_.empty() || (error_ && !finished_); }
    // The reply has arrived (maybe not yet taken), or the call failed.
    bool answered() const { return replied_ || error_.has_value(); }

   private:
    friend class AgentConnection;
    Call(std::shared_ptr<AgentConnection> conn, uint32_t channel);
    void Push(Message m);
    void Fail(Error e);

    std::weak_ptr<AgentConnection> conn_;
    std::shared_ptr<FlowBudget> budget_;
    uint32_t channel_;
    // Takes the call's window from the budget and grants it (or waits in line).
    void OpenWindow();
    // Sends credit for what the consumer has taken, once it is worth a frame.
    void Grant(size_t consumed);
    void SendWindow(size_t bytes);

    std::deque<Message> queue_;
    size_t queued_bytes_ = 0;   // event bytes received, not yet taken
    size_t window_ = agent::kChannelWindow;  // the credit the agent may run ahead by
    bool window_open_ = false;  // holds window_ of the budget
    size_t ungranted_ = 0;      // event bytes taken, credit not yet sent
    uint64_t granted_ = 0;      // credit sent, in all
    uint64_t received_ = 0;     // event bytes received, in all
    bool finished_ = false;   // reply consumed, or failed
    bool replied_ = false;    // reply received
    bool cancelled_ = false;
    bool accepts_data_ = false;
    std::optional<Error> error_;
    AsyncSignal signal_;
  };

  // Connects to the agent's listening socket and checks it answers `hello`.
  // Calls take their windows from `budget` (null: no global bound).
  static Task<Result<std::shared_ptr<AgentConnection>>> Connect(asio::any_io_executor ex,
                                                                 std::string socket_path,
                                                                 std::string sandbox_id,
                                                                 Clock::duration timeout,
                                                                 Clock::duration ping_interval = kPingInterval,
                                                                 std::shared_ptr<FlowBudget> budget = nullptr);
  ~AgentConnection();

  // Called once when the connection fails (EOF or a read or write error: the
  // agent died; a protocol violation; unanswered pings), with what happened
  // ("its agent died (...)"). Calls in flight then fail with
  // kFailedPrecondition, "sandbox ID failed: " + that.
  void SetFailureHandler(std::function<void(const Error&)> fn) { on_failure_ = std::move(fn); }

  // Opens a channel with `request` (a JSON object with "op"), followed by one
  // Data frame holding `data` when given (even if empty).
  // `window`: the call's credit (more than agent::kChannelWindow lets a bulk
  // transfer, like a file read into memory, run ahead of its consumer).
  Result<std::shared_ptr<Call>> Start(const Json& request, std::optional<std::string_view> data = std::nullopt,
                                      size_t window = agent::kChannelWindow);
  // Sends a request and waits for its reply, skipping events.
  Task<Result<Json>> Request(const Json& request, Clock::duration timeout);

  bool alive() const { return alive_; }
  asio::any_io_executor executor() { return socket_.get_executor(); }
  const Json& hello() const { return hello_; }
  // The agent takes a file.write's content in several Data frames (dataSize);
  // an older one (adopted across an upgrade) takes exactly one.
  bool writes_in_frames() const { return writes_in_frames_; }
  // Closes the connection; pending and later calls fail with `code` and `reason`
  // (kNotFound when the sandbox was deleted: the request answers 404, not 502).
  void Close(const std::string& reason = "agent connection is closed", ErrorCode code = ErrorCode::kUnavailable);

  // An agent without flow control (older than this coved, adopted across an
  // upgrade): reading from it pauses while a call holds this much unread.
  static constexpr size_t kMaxQueuedPerCall = 8 << 20;
  // The agent is pinged every ping_interval; one that does not answer within
  // as long again (stopped, stuck, or lying) fails the connection.
  static constexpr Clock::duration kPingInterval = std::chrono::seconds(15);
  // Bytes waiting to be written to the agent (requests, file contents, terminal
  // input) beyond which new calls and data are refused (kUnavailable): an agent
  // that stops reading costs coved at most this plus one request.
  static constexpr size_t kMaxOutboxBytes = 64 << 20;

 private:
  AgentConnection(asio::any_io_executor ex, std::string sandbox_id);
  Task<void> ReadLoop();
  Task<void> WriteLoop();
  Task<void> PingLoop();
  void Send(std::string bytes);
  // The error for a new call or data while kMaxOutboxBytes wait; else nullopt.
  std::optional<Error> OutboxFull() const;
  void Fail(Error e);
  void Forget(uint32_t channel) { calls_.erase(channel); }

  asio::local::stream_protocol::socket socket_;
  std::string sandbox_id_;
  agent::FrameDecoder decoder_{agent::kMaxAgentFrame};
  std::map<uint32_t, Call*> calls_;
  uint32_t next_channel_ = 1;
  std::deque<std::string> outbox_;
  size_t outbox_bytes_ = 0;
  AsyncSignal outbox_signal_;
  AsyncSignal drained_signal_;  // a call's queue shrank
  asio::steady_timer ping_timer_;
  Clock::duration ping_interval_ = kPingInterval;
  std::atomic<bool> alive_{true};
  bool flow_control_ = false;  // the agent said it honours Window frames
  bool writes_in_frames_ = false;
  std::shared_ptr<FlowBudget> budget_;
  Error closed_{ErrorCode::kUnavailable, 0, "agent connection is closed", {}};  // what calls get once closed
  Json hello_;
  std::function<void(const Error&)> on_failure_;
};

}  // namespace cove
