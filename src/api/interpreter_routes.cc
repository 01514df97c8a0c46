// Code interpreter (reference routes #28-#32 and section 4): /api/contexts,
// /api/execute/code, /api/interpreter/health. cove-agent runs the contexts
// (agent/code_context.cc); coved validates, forwards and turns the agent's
// events into Cloudflare's SSE events (stdout, stderr, result, error,
// execution_complete). Extensions: GET /api/contexts/{id},
// POST /api/contexts/{id}/restart and /interrupt.
#include "agent/ops.h"
#include "api/agent_reply.h"
#include "api/errors.h"
#include "api/fields.h"
#include "api/route_table.h"
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

// A context record, rebuilt from its typed reading; {} when malformed.
Json ContextJson(const Json& c) {
  auto info = agent::ParseContextInfo(c);
  if (!info.ok()) return Json::object();
  Json j = {{"id", info->id},         {"language", info->language},
            {"cwd", info->cwd},       {"status", info->status},
            {"executionCount", info->execution_count}, {"createdAt", info->created_at}};
  if (info->pid) j["pid"] = *info->pid;
  if (info->error) j["error"] = *info->error;
  return j;
}

// contextId/language/cwd of a context.create or context.restart reply.
template <class Op>
Json Opened(const Op&, const Json& r) {
  return {{"contextId", StrOf(r, "contextId")}, {"language", StrOf(r, "language")}, {"cwd", StrOf(r, "cwd")}};
}

agent::ContextHealthOp BuildHealth(RouteInput&) { return {}; }
Json Health(const agent::ContextHealthOp&, const Json& r) {
  Json languages = {{"python", BoolOf(r, "python")}, {"javascript", BoolOf(r, "javascript")},
                    {"typescript", BoolOf(r, "typescript")}};
  bool any = BoolOf(r, "python") || BoolOf(r, "javascript");
  return {{"status", any ? "healthy" : "unhealthy"}, {"languages", std::move(languages)},
          {"contexts", IntOf(r, "contexts")}};
}

agent::ContextListOp BuildContextList(RouteInput&) { return {}; }
Json ContextList(const agent::ContextListOp&, const Json& r) {
  Json list = Json::array();
  if (auto it = r.find("contexts"); it != r.end() && it->is_array())
    for (const auto& c : *it)
      if (c.is_object()) list.push_back(ContextJson(c));
  return {{"contexts", std::move(list)}};
}

agent::ContextCreateOp BuildContextCreate(RouteInput& in) {
  agent::ContextCreateOp op;
  op.language = in.f.Str("language", false, "python");
  op.cwd = in.f.OptStr("cwd");
  if (in.body.contains("env_vars")) op.env = in.f.EnvMap("env_vars");
  return op;
}

agent::ContextRunOp BuildRun(RouteInput& in) {
  Fields& f = in.f;
  agent::ContextRunOp op;
  auto context = f.Id("context_id");
  if (!context) context = f.Id("contextId");
  if (!context || context->empty()) f.Fail("missing required field 'context_id'");
  op.context_id = context.value_or("");
  op.code = f.Str("code", true);
  if (op.code.size() > kMaxCodeBytes) f.Fail("field 'code' is larger than 8 MiB");
  op.language = f.OptStr("language");
  op.timeout_ms = in.body.contains("timeout_ms") ? f.Int("timeout_ms", 1, agent::kMaxTimeoutMs)
                                                 : f.Int("timeoutMs", 1, agent::kMaxTimeoutMs);
  return op;
}

// The agent accepts the run (or refuses it: unknown or crashed context) before
// the stream starts, so a refusal is a plain HTTP error.
Task<HttpResponse> Run(RouteInput&, AgentPtr agent, agent::ContextRunOp op) {
  auto call_r = agent->Start(agent::ToJson(op));
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

// The routes naming one context (/api/contexts/{id}[/...]).
template <class Op>
Op BuildContextRef(RouteInput& in) {
  Op op;
  op.context_id = in.params.at(0);
  if (auto why = IdProblem("contextId", op.context_id); !why.empty()) in.f.Fail(why);
  return op;
}
Json ContextGot(const agent::ContextGetOp&, const Json& r) {
  auto it = r.find("context");
  return {{"context", it != r.end() && it->is_object() ? ContextJson(*it) : Json::object()}};
}
Json Interrupted(const agent::ContextInterruptOp& op, const Json& r) {
  return {{"contextId", op.context_id}, {"interrupted", BoolOf(r, "interrupted")}};
}
Json ContextDeleted(const agent::ContextDeleteOp& op, const Json&) { return {{"contextId", op.context_id}}; }

}  // namespace

std::vector<Route> InterpreterRoutes() {
  using namespace agent;
  return {
      AgentRoute<ContextHealthOp>("GET", "/api/interpreter/health", BuildHealth, Health),
      AgentRoute<ContextListOp>("GET", "/api/contexts", BuildContextList, ContextList),
      AgentRoute<ContextCreateOp>("POST", "/api/contexts", BuildContextCreate, Opened<ContextCreateOp>),
      AgentRoute<ContextRunOp>("POST", "/api/execute/code", BuildRun, Run),
      AgentRoute<ContextGetOp>("GET", "/api/contexts/{id}", BuildContextRef<ContextGetOp>, ContextGot),
      AgentRoute<ContextDeleteOp>("DELETE", "/api/contexts/{id}", BuildContextRef<ContextDeleteOp>, ContextDeleted),
      AgentRoute<ContextRestartOp>("POST", "/api/contexts/{id}/restart", BuildContextRef<ContextRestartOp>,
                                   Opened<ContextRestartOp>),
      AgentRoute<ContextInterruptOp>("POST", "/api/contexts/{id}/interrupt", BuildContextRef<ContextInterruptOp>,
                                     Interrupted),
  };
}

}  // namespace cove::api
