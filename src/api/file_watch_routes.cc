// File watching (reference routes #36 and #37): /api/watch streams inotify
// events from cove-agent as SSE; /api/watch/check answers change cursors.
#include "api/agent_reply.h"
#include "api/errors.h"
#include "api/fields.h"
#include "api/routes.h"

namespace cove::api {
namespace {

// Reads a list of strings (globs or event names); false with a problem noted.
void StrList(Fields& f, const Json& body, const char* key, Json* op) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return;
  if (!it->is_array() || it->size() > 256) {
    f.Fail(std::string("field '") + key + "' must be a list of at most 256 strings");
    return;
  }
  for (const auto& v : *it)
    if (!v.is_string() || v.get_ref<const std::string&>().size() > 4096) {
      f.Fail(std::string("field '") + key + "' must be a list of strings");
      return;
    }
  (*op)[key] = *it;
}

std::string SseWatchEvent(const Json& e) {
  std::string type = StrOf(e, "type");
  if (type == "watching") return Sse({{"type", "watching"}, {"path", StrOf(e, "path")}, {"watchId", StrOf(e, "watchId")}});
  if (type == "event")
    return Sse({{"type", "event"}, {"eventType", StrOf(e, "eventType")}, {"path", StrOf(e, "path")},
                {"isDirectory", BoolOf(e, "isDirectory")}, {"timestamp", StrOf(e, "timestamp")}});
  if (type == "overflow") return Sse({{"type", "overflow"}, {"dropped", IntOf(e, "dropped")}});
  return {};
}

std::string SseWatchFinal(const Json& reply) {
  if (auto e = AgentError(reply)) return Sse({{"type", "error"}, {"error", (*e)["message"]}, {"code", (*e)["code"]}});
  return Sse({{"type", "stopped"}, {"reason", StrOf(reply, "reason")}});
}

std::string SseWatchError(const std::string& message) { return Sse({{"type", "error"}, {"error", message}}); }

}  // namespace

Task<HttpResponse> CompatRoutes::Watch(HttpRequest& req, const std::string& id, bool check) {
  Json body;
  if (auto p = ParseJsonObject(req.body, &body); !p.empty()) co_return ErrorResponse("VALIDATION_FAILED", p);
  Fields f(body);
  Json op = {{"op", check ? "fs.check" : "fs.watch"}, {"path", f.Str("path", true)},
             {"recursive", f.Bool("recursive", true)}};
  auto s = f.Id("sessionId");
  op["sessionId"] = s && !s->empty() ? *s : "default";
  StrList(f, body, "include", &op);
  StrList(f, body, "exclude", &op);
  if (!check) StrList(f, body, "events", &op);
  if (op.contains("include") && op.contains("exclude")) f.Fail("'include' and 'exclude' cannot be used together");
  if (check)
    if (auto since = f.OptStr("since")) op["since"] = *since;
  if (!f.ok()) co_return ErrorResponse("VALIDATION_FAILED", f.problem());

  auto agent_r = co_await manager_->Agent(id, true, req.arrival);
  if (!agent_r.ok()) co_return ErrorResponse(agent_r.error());
  std::shared_ptr<AgentConnection> agent = std::move(*agent_r);
  if (check) {
    auto reply = co_await Call(agent, op);
    if (!reply.ok()) co_return ErrorResponse(reply.error());
    if (auto e = AgentError(*reply)) co_return AgentErrorResponse(*e);
    Json out = Success({{"status", StrOf(*reply, "status")}, {"version", StrOf(*reply, "version")}});
    if (auto reason = StrOf(*reply, "reason"); !reason.empty()) out["reason"] = reason;
    co_return JsonResponse(out);
  }
  // The watch is established (or refused) before the stream starts, so errors are plain answers.
  auto call_r = agent->Start(op);
  if (!call_r.ok()) co_return ErrorResponse(call_r.error());
  auto call = std::move(*call_r);
  auto first = co_await call->Next(Clock::now() + kOpTimeout);
  if (!first.ok()) co_return ErrorResponse(first.error());
  if (first->final) {  // refused, or ended at once
    if (auto e = AgentError(first->body)) co_return AgentErrorResponse(*e);
    std::string last = SseWatchFinal(first->body);
    co_return SseResponse([last](BodyStream& out) -> Task<void> { co_await out.Write(last); });
  }
  SseMapping map{SseWatchEvent, SseWatchFinal, SseWatchError, SseWatchEvent(first->body), std::nullopt};
  co_return SseResponse([call, map](BodyStream& out) -> Task<void> { co_await RelayToSse(call, out, map); });
}

}  // namespace cove::api
