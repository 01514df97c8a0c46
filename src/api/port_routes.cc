// /api/port-watch (reference route #19, behind Process.waitForPort): the agent
// polls the port inside the sandbox; coved relays its answer as SSE.
#include <algorithm>

#include "agent/ops.h"
#include "api/agent_reply.h"
#include "api/errors.h"
#include "api/fields.h"
#include "api/route_table.h"

namespace cove::api {
namespace {

std::string SsePortEvent(const Json& event, int64_t port) {
  if (StrOf(event, "type") != "watching") return {};
  return Sse({{"type", "watching"}, {"port", port}});
}

std::string SsePortFinal(const Json& reply, int64_t port) {
  if (auto e = AgentError(reply)) return Sse({{"type", "error"}, {"port", port}, {"error", (*e)["message"]}});
  std::string type = StrOf(reply, "type");
  if (type == "ready") {
    Json ev = {{"type", "ready"}, {"port", port}};
    if (reply.contains("statusCode") && reply["statusCode"].is_number_integer()) ev["statusCode"] = reply["statusCode"];
    return Sse(ev);
  }
  if (type == "process_exited")
    return Sse({{"type", "process_exited"}, {"port", port}, {"exitCode", IntOf(reply, "exitCode", -1)}});
  return {};
}

std::string SsePortError(const std::string& message, int64_t port) {
  return Sse({{"type", "error"}, {"port", port}, {"error", message}});
}

agent::PortWatchOp BuildPortWatch(RouteInput& in) {
  Fields& f = in.f;
  agent::PortWatchOp op;
  if (!in.body.contains("port")) f.Fail("missing required field 'port'");
  op.port = f.Int("port", 1, 65535).value_or(0);
  op.mode = f.Str("mode", false, "http");
  if (op.mode != "http" && op.mode != "tcp") f.Fail("field 'mode' must be 'http' or 'tcp'");
  op.path = f.Str("path", false, "/");
  op.status_min = f.Int("statusMin", 100, 599);
  op.status_max = f.Int("statusMax", 100, 599);
  if (auto v = f.Int("interval", 0, agent::kMaxTimeoutMs)) op.interval = std::clamp<int64_t>(*v, 100, 10000);
  if (auto pid = f.OptStr("processId")) {
    if (auto why = ProcessIdProblem("processId", *pid); !why.empty()) f.Fail(why);
    op.process_id = *pid;
  }
  return op;
}

Task<HttpResponse> PortWatch(RouteInput&, AgentPtr agent, agent::PortWatchOp op) {
  int64_t port = op.port;
  SseMapping map{[port](const Json& e) { return SsePortEvent(e, port); },
                 [port](const Json& r) { return SsePortFinal(r, port); },
                 [port](const std::string& m) { return SsePortError(m, port); }, "", std::nullopt};
  co_return SseResponse([agent, op = agent::ToJson(op), map](BodyStream& out) -> Task<void> {
    co_await StartAndRelay(agent, op, out, map);
  });
}

}  // namespace

std::vector<Route> PortRoutes() {
  return {AgentRoute<agent::PortWatchOp>("POST", "/api/port-watch", BuildPortWatch, PortWatch)};
}

}  // namespace cove::api
