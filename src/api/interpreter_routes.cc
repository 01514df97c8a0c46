// Code interpreter (reference routes #28-#32 and section 4): /api/contexts,
// /api/execute/code, /api/interpreter/health. cove-agent runs the contexts
// (agent/code_context.cc); coved validates, forwards and turns the agent's
// events into Cloudflare's SSE events (stdout, stderr, result, error,
// execution_complete). Extensions: GET /api/contexts/{id},
// POST /api/contexts/{id}/restart and /interrupt.
#include "api/agent_reply.h"
#include "api/errors.h"
#include "api/fields.h"
#include "api/routes.h"
#include "base/time.h"

namespace cove::api {
namespace {

constexpr size_t kMaxCodeBytes = 8 << 20;

// The agent's events are untrusted: only the contract's fields, of the right types, go on.
std::string SseCodeEvent(const Json& e) {
  static constexpr const char* kFormats[] = {"text", "html", "png", "jpeg", "svg", "latex", "markdown", "javascript"};
  std::string type = StrOf(e, "type");
  if (type == "stdout" || type == "stderr")
    return Sse({{"type", type}, {"text", StrOf(e, "data")}, {"timestamp", NowUnixMs()}});
  if (type == "result") {
    Json out = {{"type", "result"}};
    for (const char* k : kFormats)
      if (e.contains(k) && e[k].is_string()) out[k] = e[k];
    if (e.contains("json")) out["json"] = e["json"];
    return Sse(out);
  }
  if (type == "error") {
    Json traceback = Json::array();
    if (e.contains("traceback") && e["traceback"].is_array())
      for (const auto& line : e["traceback"])
        if (line.is_string()) traceback.push_back(line);
    return Sse({{"type", "error"}, {"ename", StrOf(e, "ename")}, {"evalue", StrOf(e, "evalue")},
                {"traceback", std::move(traceback)}});
  }
  return {};
}

std::string SseCodeError(const std::string& name, const std::string& message) {
  return Sse({{"type", "error"}, {"ename", name}, {"evalue", message}, {"traceback", Json::array()}});
}

std::string SseCodeFinal(const Json& reply) {
  if (auto e = AgentError(reply)) return SseCodeError(StrOf(*e, "code"), StrOf(*e, "message"));
  Json done = {{"type", "execution_complete"}, {"execution_count", IntOf(reply, "execution_count")},
               {"timestamp", NowUnixMs()}};
  if (BoolOf(reply, "timedOut")) done["timed_out"] = true;
  if (BoolOf(reply, "cancelled")) done["cancelled"] = true;
  return Sse(done);
}

Json ContextJson(const Json& c) {
  Json j = {{"id", StrOf(c, "id")},         {"language", StrOf(c, "language")},
            {"cwd", StrOf(c, "cwd")},       {"status", StrOf(c, "status")},
            {"executionCount", IntOf(c, "executionCount")}, {"createdAt", StrOf(c, "createdAt")}};
  if (c.contains("pid") && c["pid"].is_number_integer()) j["pid"] = c["pid"];
  if (c.contains("error")) j["error"] = StrOf(c, "error");
  return j;
}

// contextId/language/cwd of a context.create or context.restart reply.
Json OpenedJson(const Json& r) {
  return Success({{"contextId", StrOf(r, "contextId")}, {"language", StrOf(r, "language")}, {"cwd", StrOf(r, "cwd")}});
}

}  // namespace

Task<HttpResponse> CompatRoutes::Interpreter(HttpRequest& req, const std::string& id, const std::string& route) {
  // route: "/interpreter/health", "/contexts", "/contexts/{ctx}[/restart|/interrupt]" or "/execute/code".
  std::string ctx, action;
  if (route.rfind("/contexts/", 0) == 0) {
    ctx = route.substr(10);
    if (size_t slash = ctx.find('/'); slash != std::string::npos) {
      action = ctx.substr(slash + 1);
      ctx.resize(slash);
    }
    if (ctx.empty() || (!action.empty() && action != "restart" && action != "interrupt"))
      co_return ErrorResponse("NOT_FOUND", "no route for " + req.method + " " + req.path);
    if (auto why = IdProblem("contextId", ctx); !why.empty()) co_return ErrorResponse("VALIDATION_FAILED", why);
  }
  auto allow = [&](const char* method) { return req.method == method; };
  bool ok = route == "/interpreter/health" ? allow("GET")
            : route == "/execute/code"     ? allow("POST")
            : route == "/contexts"         ? allow("GET") || allow("POST")
            : !action.empty()              ? allow("POST")
                                           : allow("GET") || allow("DELETE");
  if (!ok) co_return ErrorResponse("METHOD_NOT_ALLOWED", req.method + " is not allowed on " + req.path);

  Json body;
  if (req.method == "POST") {
    if (auto p = ParseJsonObject(req.body, &body); !p.empty()) co_return ErrorResponse("VALIDATION_FAILED", p);
  }
  Fields f(body);
  Json op;
  if (route == "/interpreter/health") {
    op = {{"op", "context.health"}};
  } else if (route == "/contexts" && req.method == "GET") {
    op = {{"op", "context.list"}};
  } else if (route == "/contexts") {
    op = {{"op", "context.create"}, {"language", f.Str("language", false, "python")}};
    if (auto cwd = f.OptStr("cwd")) op["cwd"] = *cwd;
    if (body.contains("env_vars")) op["env"] = f.EnvMap("env_vars");
  } else if (route == "/execute/code") {
    auto context = f.Id("context_id");
    if (!context) context = f.Id("contextId");
    if (!context || context->empty()) f.Fail("missing required field 'context_id'");
    std::string code = f.Str("code", true);
    if (code.size() > kMaxCodeBytes) f.Fail("field 'code' is larger than 8 MiB");
    op = {{"op", "context.run"}, {"contextId", context.value_or("")}, {"code", std::move(code)}};
    if (auto l = f.OptStr("language")) op["language"] = *l;
    auto timeout = body.contains("timeout_ms") ? f.Int("timeout_ms", 1, int64_t{1} << 40)
                                               : f.Int("timeoutMs", 1, int64_t{1} << 40);
    if (timeout) op["timeoutMs"] = *timeout;
  } else {
    const char* name = action == "restart"     ? "context.restart"
                       : action == "interrupt" ? "context.interrupt"
                       : req.method == "GET"   ? "context.get"
                                               : "context.delete";
    op = {{"op", name}, {"contextId", ctx}};
  }
  if (!f.ok()) co_return ErrorResponse("VALIDATION_FAILED", f.problem());

  auto agent_r = co_await manager_->Agent(id, true, req.arrival);
  if (!agent_r.ok()) co_return ErrorResponse(agent_r.error());
  std::shared_ptr<AgentConnection> agent = std::move(*agent_r);

  if (route == "/execute/code") {
    // The agent accepts the run (or refuses it: unknown or crashed context)
    // before the stream starts, so a refusal is a plain HTTP error.
    auto call_r = agent->Start(op);
    if (!call_r.ok()) co_return ErrorResponse(call_r.error());
    std::shared_ptr<AgentConnection::Call> call = std::move(*call_r);
    auto first = co_await call->Next(Clock::now() + kOpTimeout);
    if (!first.ok()) co_return ErrorResponse(first.error());
    if (first->final) {
      if (auto e = AgentError(first->body)) co_return AgentErrorResponse(*e);
      co_return ErrorResponse("INTERNAL_ERROR", "the agent ended the execution before accepting it");
    }
    SseMapping map{SseCodeEvent, SseCodeFinal,
                   [](const std::string& m) { return SseCodeError("SandboxUnavailable", m); }, "", std::nullopt};
    co_return SseResponse([call, map](BodyStream& out) -> Task<void> { co_await RelayToSse(call, out, map); });
  }

  auto reply = co_await Call(agent, op);
  if (!reply.ok()) co_return ErrorResponse(reply.error());
  if (auto e = AgentError(*reply)) co_return AgentErrorResponse(*e);
  const Json& r = *reply;
  const std::string name = op["op"];
  if (name == "context.health") {
    Json languages = {{"python", BoolOf(r, "python")}, {"javascript", BoolOf(r, "javascript")},
                      {"typescript", BoolOf(r, "typescript")}};
    bool any = BoolOf(r, "python") || BoolOf(r, "javascript");
    co_return JsonResponse(Success({{"status", any ? "healthy" : "unhealthy"}, {"languages", std::move(languages)},
                                    {"contexts", IntOf(r, "contexts")}}));
  }
  if (name == "context.list") {
    Json list = Json::array();
    if (r.contains("contexts") && r["contexts"].is_array())
      for (const auto& c : r["contexts"])
        if (c.is_object()) list.push_back(ContextJson(c));
    co_return JsonResponse(Success({{"contexts", std::move(list)}}));
  }
  if (name == "context.create" || name == "context.restart") co_return JsonResponse(OpenedJson(r));
  if (name == "context.get") {
    Json c = r.contains("context") && r["context"].is_object() ? ContextJson(r["context"]) : Json::object();
    co_return JsonResponse(Success({{"context", std::move(c)}}));
  }
  if (name == "context.interrupt")
    co_return JsonResponse(Success({{"contextId", ctx}, {"interrupted", BoolOf(r, "interrupted")}}));
  co_return JsonResponse(Success({{"contextId", ctx}}));
}

}  // namespace cove::api
