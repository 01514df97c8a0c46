// /api/port-watch (reference route #19, behind Process.waitForPort): the agent
// polls the port inside the sandbox; coved relays its answer as SSE.
#include "api/agent_reply.h"
#include "api/errors.h"
#include "api/fields.h"
#include "api/routes.h"

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

}  // namespace

Task<HttpResponse> CompatRoutes::PortWatch(HttpRequest& req, const std::string& id) {
  Json body;
  if (auto p = ParseJsonObject(req.body, &body); !p.empty()) co_return ErrorResponse("VALIDATION_FAILED", p);
  Fields f(body);
  if (!body.contains("port")) f.Fail("missing required field 'port'");
  int64_t port = f.Int("port", 1, 65535).value_or(0);
  std::string mode = f.Str("mode", false, "http");
  if (mode != "http" && mode != "tcp") f.Fail("field 'mode' must be 'http' or 'tcp'");
  Json op = {{"op", "port.watch"}, {"port", port}, {"mode", mode}, {"path", f.Str("path", false, "/")}};
  if (auto v = f.Int("statusMin", 100, 599)) op["statusMin"] = *v;
  if (auto v = f.Int("statusMax", 100, 599)) op["statusMax"] = *v;
  if (auto v = f.Int("interval", 0, int64_t{1} << 40)) op["interval"] = std::clamp<int64_t>(*v, 100, 10000);
  if (auto pid = f.OptStr("processId")) {
    if (auto why = ProcessIdProblem("processId", *pid); !why.empty()) f.Fail(why);
    op["processId"] = *pid;
  }
  if (!f.ok()) co_return ErrorResponse("VALIDATION_FAILED", f.problem());

  auto agent_r = co_await manager_->Agent(id, true, req.arrival);
  if (!agent_r.ok()) co_return ErrorResponse(agent_r.error());
  std::shared_ptr<AgentConnection> agent = std::move(*agent_r);
  SseMapping map{[port](const Json& e) { return SsePortEvent(e, port); },
                 [port](const Json& r) { return SsePortFinal(r, port); },
                 [port](const std::string& m) { return SsePortError(m, port); }, "", std::nullopt};
  co_return SseResponse([agent, op, map](BodyStream& out) -> Task<void> {
    co_await StartAndRelay(agent, op, out, map);
  });
}

}  // namespace cove::api
