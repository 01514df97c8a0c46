// Collecting one agent call's answer whole: its events (command output,
// "files" batches, file metadata and content) and its reply, within bounds.
// Every route that answers once the agent has finished (/api/execute,
// /api/read, /api/git/checkout, Call) goes through here.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "api/http.h"
#include "manager/agent_connection.h"

namespace cove::api {

inline constexpr size_t kMaxBufferedOutput = 64 << 20;        // what one answer may accumulate
inline constexpr auto kOpTimeout = std::chrono::seconds(60);  // agent ops other than exec

struct CollectOptions {
  std::optional<AgentConnection::Clock::duration> timeout = kOpTimeout;  // nullopt: none
  // Everything received (events and reply, as sent); beyond it the call fails
  // with kResourceExhausted.
  size_t max_bytes = kMaxBufferedOutput;
  // stdout + stderr held; beyond it collection stops with Overflow::kOutput.
  size_t max_output = SIZE_MAX;
  // A stream that holds this much takes no more output (the rest is dropped).
  size_t keep_per_stream = SIZE_MAX;
  // Content bytes from Data frames; beyond it collection stops with
  // Overflow::kContent. Chunk events (encoded text, from older agents) may
  // hold twice as much.
  size_t max_content = SIZE_MAX;
  bool accept_data = false;                 // the call may answer with Data frames
  size_t window = agent::kChannelWindow;    // the credit the agent may run ahead by (AgentConnection::Start)
  const HttpRequest* cancel_with = nullptr;  // the call is cancelled if this request's client goes away
};

struct Collected {
  enum class Overflow { kNone, kOutput, kContent };
  Overflow overflow = Overflow::kNone;  // set: collection stopped there, the call was cancelled
  nlohmann::json reply;                 // the final reply (possibly an error reply)
  std::string output[2];                // the data of stdout and stderr events, in order
  nlohmann::json files = nlohmann::json::array();  // the "files" arrays of events, concatenated
  nlohmann::json metadata;              // the last "metadata" event (null if none)
  std::string content;                  // Data frames, or the data of "chunk" events
  bool raw_content = false;             // content came in Data frames
};

// Starts `op` (with `data` as one Data frame when given) and collects its
// answer. Fails when the call cannot start, is lost, times out or exceeds max_bytes.
Task<Result<Collected>> Collect(const std::shared_ptr<AgentConnection>& agent, const nlohmann::json& op,
                                CollectOptions options = {}, std::optional<std::string_view> data = std::nullopt);

}  // namespace cove::api
