#include "cli/sse_json.h"

namespace cove::cli {

Result<JsonEvent> ParseJsonEvent(const SseEvent& ev) {
  JsonEvent out{nlohmann::json::parse(ev.data, nullptr, false), ""};
  if (!out.body.is_object()) return MakeError(ErrorCode::kInternal, "coved sent an invalid event: " + ev.data);
  out.type = Str(out.body, "type");
  if (out.type.empty()) out.type = ev.event;
  return out;
}

std::string Str(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

}  // namespace cove::cli
