// Reading the JSON events of coved's SSE streams (exec, file reads, code runs).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "base/error.h"
#include "cli/http_client.h"

namespace cove::cli {

struct JsonEvent {
  nlohmann::json body;  // always an object
  std::string type;     // its "type" field, else the SSE event name
};

// An error (kInternal) when the event's data is not a JSON object.
Result<JsonEvent> ParseJsonEvent(const SseEvent& ev);

// A field as text: "" when absent or null; a string as it is; any other value as JSON.
std::string Str(const nlohmann::json& j, const char* key);

}  // namespace cove::cli
