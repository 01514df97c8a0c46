// File watching (reference routes #36 and #37): /api/watch streams inotify
// events from cove-agent as SSE; /api/watch/check answers change cursors.
#include "agent/ops.h"
#include "api/agent_reply.h"
#include "api/errors.h"
#include "api/fields.h"
#include "api/route_table.h"

namespace cove::api {
namespace {

// Reads a list of strings (globs or event names); nullopt when absent or with a problem noted.
std::optional<agent::Strings> StrList(Fields& f, const Json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_array() || it->size() > 256) {
    f.Fail(std::string("field '") + key + "' must be a list of at most 256 strings");
    return std::nullopt;
  }
  agent::Strings list;
  for (const auto& v : *it) {
    if (!v.is_string() || v.get_ref<const std::string&>().size() > 4096) {
      f.Fail(std::string("field '") + key + "' must be a list of strings");
      return std::nullopt;
    }
    list.push_back(v.get<std::string>());
  }
  return list;
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

// The fields fs.watch and fs.check share.
template <class Op>
Op BuildWatched(RouteInput& in) {
  Fields& f = in.f;
  Op op;
  op.path = f.Str("path", true);
  op.recursive = f.Bool("recursive", true);
  op.session_id = SessionOf(f);
  op.include = StrList(f, in.body, "include");
  op.exclude = StrList(f, in.body, "exclude");
  return op;
}

agent::FsWatchOp BuildWatch(RouteInput& in) {
  auto op = BuildWatched<agent::FsWatchOp>(in);
  op.events = StrList(in.f, in.body, "events");
  if (op.include && op.exclude) in.f.Fail("'include' and 'exclude' cannot be used together");
  return op;
}

agent::FsCheckOp BuildCheck(RouteInput& in) {
  auto op = BuildWatched<agent::FsCheckOp>(in);
  if (op.include && op.exclude) in.f.Fail("'include' and 'exclude' cannot be used together");
  op.since = in.f.OptStr("since");
  return op;
}

Json Checked(const agent::FsCheckOp&, const Json& r) {
  Json out = {{"status", StrOf(r, "status")}, {"version", StrOf(r, "version")}};
  if (auto reason = StrOf(r, "reason"); !reason.empty()) out["reason"] = reason;
  return out;
}

// The watch is established (or refused) before the stream starts, so errors are plain answers.
Task<HttpResponse> Watch(RouteInput&, AgentPtr agent, agent::FsWatchOp op) {
  auto call_r = agent->Start(agent::ToJson(op));
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

}  // namespace

std::vector<Route> WatchRoutes() {
  return {AgentRoute<agent::FsWatchOp>("POST", "/api/watch", BuildWatch, Watch),
          AgentRoute<agent::FsCheckOp>("POST", "/api/watch/check", BuildCheck, Checked)};
}

}  // namespace cove::api
