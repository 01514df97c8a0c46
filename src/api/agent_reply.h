// Helpers shared by the compatible routes: reading agent replies (which are
// untrusted), calling the agent, and shaping success and SSE answers.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "api/collector.h"
#include "api/http.h"
#include "manager/agent_connection.h"

namespace cove::api {

using Json = nlohmann::json;
using Clock = AgentConnection::Clock;

// Typed reads of agent JSON with defaults (wrong types read as the default).
std::string StrOf(const Json& j, const char* key);
// The same without a copy: valid while j is unchanged.
std::string_view StrView(const Json& j, const char* key);
int64_t IntOf(const Json& j, const char* key, int64_t fallback = 0);
bool BoolOf(const Json& j, const char* key);

// An agent error reply ({"error": {...}}) as coved's error envelope, checked:
// codes must look like codes, context must be an object.
std::optional<Json> AgentError(const Json& reply);
HttpResponse AgentErrorResponse(const Json& envelope);
// A reply or event that a typed reader (agent/ops.h) refused, as an internal
// error naming what was wrong.
Error MalformedAnswer(const Error& parse_error);

// One SSE event: "data: <json>\n\n".
std::string Sse(const Json& event);
// The SSE event {"type":TYPE,"data":DATA,KEY:VALUE...} (all strings) built as
// text: output, the bulk of a stream, is escaped once, straight into it.
std::string SseOutput(std::string_view type, std::string_view data,
                      std::initializer_list<std::pair<std::string_view, std::string_view>> more = {});
HttpResponse SseResponse(std::function<Task<void>(BodyStream&)> body);
// Adds success:true and a timestamp.
Json Success(Json j);

// Bytes of SSE events a stream gathers into one write (RelayToSse) while
// more are queued: at most one agent call's window (agent::kChannelWindow)
// plus one event is queued anyway.
inline constexpr size_t kSseCoalesceBytes = 256 << 10;

// How one streamed op's messages become SSE events ("" sends nothing).
struct SseMapping {
  std::function<std::string(const Json& event)> event;
  std::function<std::string(const Json& reply)> final;
  std::function<std::string(const std::string& message)> error;  // the call failed or was lost
  std::string opening;  // sent once the call is open, before any event
  std::optional<Clock::duration> per_message_timeout;
};

// Cancels `call` in the agent if the request's client goes away first.
void CancelOnHangUp(const HttpRequest& req, const std::shared_ptr<AgentConnection::Call>& call);

// Relays an open call to `out` until its reply, its loss, or the client leaving
// (which cancels the call in the agent). Events that are already queued when
// one is written join it, in one write of up to about kSseCoalesceBytes.
Task<void> RelayToSse(std::shared_ptr<AgentConnection::Call> call, BodyStream& out, const SseMapping& map);
// Opens `op` on the agent, then relays it as above.
Task<void> StartAndRelay(std::shared_ptr<AgentConnection> agent, Json op, BodyStream& out, const SseMapping& map);

// Sends one op (with optional raw data) and waits for its reply, collected
// (Collect) within kOpTimeout and kMaxBufferedOutput. Large answers arrive
// partly as events first: their "files" arrays and stdout/stderr data are put
// in front of the reply's "files", "stdout" and "stderr".
Task<Result<Json>> Call(const std::shared_ptr<AgentConnection>& agent, const Json& op,
                        const std::optional<std::string>& data = std::nullopt);

}  // namespace cove::api
