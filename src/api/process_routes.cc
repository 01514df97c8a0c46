// Background processes of the compatible API (reference routes #20-#26):
// /api/process/start, list, kill-all, {id}, {id}/logs, {id}/stream, and
// /api/execute with background:true. The processes live in cove-agent.
#include <fmt/format.h>

#include "api/agent_reply.h"
#include "api/errors.h"
#include "api/fields.h"
#include "api/routes.h"
#include "base/time.h"
#include "base/utf8.h"

namespace cove::api {
namespace {

// A process record from the agent, rebuilt field by field (the agent is not trusted).
Json ProcessInfo(const Json& p) {
  Json out = {{"id", StrOf(p, "id")}, {"pid", IntOf(p, "pid")}, {"command", StrOf(p, "command")},
              {"status", StrOf(p, "status")}, {"startTime", StrOf(p, "startTime")}};
  if (auto end = StrOf(p, "endTime"); !end.empty()) out["endTime"] = end;
  if (p.contains("exitCode") && p["exitCode"].is_number_integer()) out["exitCode"] = p["exitCode"];
  return out;
}

std::string SseProcessInfo(const Json& info) {
  return Sse({{"type", "process_info"}, {"processId", info["id"]}, {"command", info["command"]},
              {"status", info["status"]}, {"timestamp", IsoNow()}});
}

std::string SseProcessEvent(const Json& event, const std::string& process_id) {
  std::string type = StrOf(event, "type");
  if (type == "stdout" || type == "stderr") {
    // Output is most of a stream: escaped straight into the event, no JSON value built.
    std::string sse = "data: {\"type\":\"" + type + "\",\"data\":\"";
    AppendJsonUtf8(StrOf(event, "data"), &sse);
    sse += "\",\"processId\":\"";
    AppendJsonUtf8(process_id, &sse);
    sse += "\",\"timestamp\":\"" + IsoNow() + "\"}\n\n";
    return sse;
  }
  if (type == "dropped")  // older output no longer held in the process's buffers
    return Sse({{"type", "dropped"}, {"stdout", IntOf(event, "stdout")}, {"stderr", IntOf(event, "stderr")},
                {"processId", process_id}, {"timestamp", IsoNow()}});
  return {};
}

std::string SseProcessFinal(const Json& reply, const std::string& process_id) {
  if (auto e = AgentError(reply))
    return Sse({{"type", "error"}, {"processId", process_id}, {"error", (*e)["message"]}, {"code", (*e)["code"]},
                {"timestamp", IsoNow()}});
  if (StrOf(reply, "type") != "exit") return {};
  int64_t code = IntOf(reply, "exitCode", -1);
  return Sse({{"type", "exit"}, {"processId", process_id}, {"exitCode", code},
              {"data", fmt::format("Process completed with exit code {}", code)}, {"timestamp", IsoNow()}});
}

std::string SseProcessError(const std::string& message, const std::string& process_id) {
  return Sse({{"type", "error"}, {"processId", process_id}, {"error", message}, {"timestamp", IsoNow()}});
}

bool ValidProcessId(const std::string& id) { return ProcessIdProblem("processId", id).empty(); }

// The tail of a getProcessLogs body after its output fields.
std::string LogsTail(const Json& reply) {
  return fmt::format("\"stdoutDropped\":{},\"stderrDropped\":{},\"success\":true,\"timestamp\":\"{}\"}}",
                     IntOf(reply, "stdoutDropped"), IntOf(reply, "stderrDropped"), IsoNow());
}

}  // namespace

Json CompatRoutes::ProcessStartOp(Fields& f, const Json& body) {
  Json op = {{"op", "process.start"}, {"command", f.Command("command")}};
  auto s = f.Id("sessionId");
  op["sessionId"] = s && !s->empty() ? *s : "default";
  if (auto pid = f.OptStr("processId")) {
    if (auto why = ProcessIdProblem("processId", *pid); !why.empty()) f.Fail(why);
    op["processId"] = *pid;
  }
  if (body.contains("env")) op["env"] = f.EnvMap("env");
  if (auto cwd = f.OptStr("cwd")) op["cwd"] = *cwd;
  if (auto t = f.Int("timeoutMs", 1, int64_t{1} << 40)) op["timeoutMs"] = *t;
  (void)f.OptStr("encoding");
  (void)f.Bool("autoCleanup");
  return op;
}

Task<HttpResponse> CompatRoutes::StartProcess(std::shared_ptr<AgentConnection> agent, Json op) {
  auto reply = co_await Call(agent, op);
  if (!reply.ok()) co_return ErrorResponse(reply.error());
  if (auto e = AgentError(*reply)) co_return AgentErrorResponse(*e);
  co_return JsonResponse(Success({{"processId", StrOf(*reply, "processId")},
                                  {"pid", IntOf(*reply, "pid")},
                                  {"command", op["command"]}}));
}

Task<HttpResponse> CompatRoutes::Processes(HttpRequest& req, const std::string& id, const std::string& route) {
  // route: "/process/start", "/process/list", "/process/kill-all", "/process/{pid}[/logs|/stream]"
  std::string rest = route.substr(std::string("/process/").size());
  std::string pid, tail;
  if (size_t slash = rest.find('/'); slash != std::string::npos) {
    pid = rest.substr(0, slash);
    tail = rest.substr(slash);
  } else {
    pid = rest;
  }
  std::string want;  // the method the path accepts
  Json op;
  enum class Kind { kStart, kList, kKillAll, kGet, kKill, kLogs, kStream } kind;
  if (pid == "start" && tail.empty()) {
    want = "POST";
    kind = Kind::kStart;
  } else if (pid == "list" && tail.empty()) {
    want = "GET";
    kind = Kind::kList;
    op = {{"op", "process.list"}};
    if (auto it = req.query.find("status"); it != req.query.end()) op["status"] = it->second;
  } else if (pid == "kill-all" && tail.empty()) {
    want = "DELETE";
    kind = Kind::kKillAll;
    op = {{"op", "process.killAll"}};
  } else if (ValidProcessId(pid) && (tail.empty() || tail == "/logs" || tail == "/stream")) {
    kind = tail == "/logs" ? Kind::kLogs : tail == "/stream" ? Kind::kStream
           : req.method == "DELETE" ? Kind::kKill : Kind::kGet;
    want = kind == Kind::kKill ? "DELETE" : "GET";
    const char* name = kind == Kind::kLogs ? "process.logs" : kind == Kind::kStream ? "process.stream"
                       : kind == Kind::kKill ? "process.kill" : "process.get";
    op = {{"op", name}, {"processId", pid}};
  } else {
    co_return ErrorResponse("NOT_FOUND", "no route for " + req.method + " " + req.path);
  }
  if (req.method != want)
    co_return ErrorResponse("METHOD_NOT_ALLOWED", req.method + " is not allowed on " + req.path + "; use " + want);
  if (kind == Kind::kStart) {
    Json body;
    if (auto p = ParseJsonObject(req.body, &body); !p.empty()) co_return ErrorResponse("VALIDATION_FAILED", p);
    Fields f(body);
    op = ProcessStartOp(f, body);
    if (!f.ok()) co_return ErrorResponse("VALIDATION_FAILED", f.problem());
  }

  auto agent_r = co_await manager_->Agent(id, true, req.arrival);
  if (!agent_r.ok()) co_return ErrorResponse(agent_r.error());
  std::shared_ptr<AgentConnection> agent = std::move(*agent_r);
  if (kind == Kind::kStart) co_return co_await StartProcess(agent, op);
  if (kind == Kind::kStream) co_return co_await StreamProcess(agent, pid);
  if (kind == Kind::kLogs) co_return co_await ProcessLogs(agent, pid);

  auto reply = co_await Call(agent, op);
  if (!reply.ok()) co_return ErrorResponse(reply.error());
  if (auto e = AgentError(*reply)) co_return AgentErrorResponse(*e);
  const Json& r = *reply;
  switch (kind) {
    case Kind::kList: {
      Json list = Json::array();
      if (r.contains("processes") && r["processes"].is_array())
        for (const auto& p : r["processes"]) list.push_back(ProcessInfo(p));
      co_return JsonResponse(Success({{"processes", std::move(list)}}));
    }
    case Kind::kKillAll: co_return JsonResponse(Success({{"cleanedCount", IntOf(r, "cleanedCount")}}));
    case Kind::kGet: {
      Json p = r.contains("process") && r["process"].is_object() ? ProcessInfo(r["process"]) : Json::object();
      co_return JsonResponse(Success({{"process", std::move(p)}}));
    }
    case Kind::kKill: co_return JsonResponse(Success({{"processId", pid}}));
    default: break;
  }
  co_return ErrorResponse("INTERNAL_ERROR", "unhandled process route");
}

Task<HttpResponse> CompatRoutes::ProcessLogs(std::shared_ptr<AgentConnection> agent, std::string pid) {
  Json op = {{"op", "process.logs"}, {"processId", pid}};
  auto started = agent->Start(op);
  if (!started.ok()) co_return ErrorResponse(started.error());
  std::shared_ptr<AgentConnection::Call> call = std::move(*started);
  auto first = co_await call->Next(Clock::now() + kOpTimeout);
  if (!first.ok()) co_return ErrorResponse(first.error());
  if (first->final) {  // small: all of it in the reply
    const Json& r = first->body;
    if (auto e = AgentError(r)) co_return AgentErrorResponse(*e);
    co_return JsonResponse(Success({{"processId", pid}, {"stdout", StrOf(r, "stdout")}, {"stderr", StrOf(r, "stderr")},
                                    {"stdoutDropped", IntOf(r, "stdoutDropped")},
                                    {"stderrDropped", IntOf(r, "stderrDropped")}}));
  }
  // Large (up to the process's log limit): the same JSON object, written as the
  // agent's events arrive (all of stdout, then all of stderr), so coved never
  // holds it whole. A failure midway aborts the response (BodyStream::Abort).
  HttpResponse res;
  res.stream = [call, pid, first = std::move(*first)](BodyStream& out) mutable -> Task<void> {
    out.OnClientGone([call] { call->Cancel(); });
    int section = 0;  // 0: in stdout, 1: in stderr
    if (!co_await out.Write("{\"processId\":" + Json(pid).dump() + ",\"stdout\":\"")) co_return;
    AgentConnection::Message m = std::move(first);
    for (;;) {
      if (m.final) {
        const Json& r = m.body;
        if (auto e = AgentError(r)) {
          out.Abort(AgentErrorResponse(*e));
          co_return;
        }
        std::string end;
        if (section == 0) {
          AppendJsonUtf8(StrOf(r, "stdout"), &end);
          end += "\",\"stderr\":\"";
        }
        AppendJsonUtf8(StrOf(r, "stderr"), &end);
        end += "\"," + LogsTail(r);
        co_await out.Write(std::move(end));
        co_return;
      }
      std::string type = StrOf(m.body, "type");
      std::string chunk;
      if (type == "stderr" && section == 0) {
        section = 1;
        chunk = "\",\"stderr\":\"";
      }
      if ((type == "stdout" && section == 0) || type == "stderr") AppendJsonUtf8(StrOf(m.body, "data"), &chunk);
      if (!chunk.empty() && !co_await out.Write(std::move(chunk))) co_return;
      auto next = co_await call->Next(Clock::now() + kOpTimeout);
      if (!next.ok()) {
        out.Abort(ErrorResponse(next.error()));
        co_return;
      }
      m = std::move(*next);
    }
  };
  co_return res;
}

Task<HttpResponse> CompatRoutes::StreamProcess(std::shared_ptr<AgentConnection> agent, std::string pid) {
  // The process must exist before the stream starts (a missing one is a plain 404).
  Json get = {{"op", "process.get"}, {"processId", pid}};
  auto info = co_await Call(agent, get);
  if (!info.ok()) co_return ErrorResponse(info.error());
  if (auto e = AgentError(*info)) co_return AgentErrorResponse(*e);
  Json process = info->contains("process") && (*info)["process"].is_object() ? ProcessInfo((*info)["process"])
                                                                            : Json::object();
  Json op = {{"op", "process.stream"}, {"processId", pid}};
  SseMapping map{[pid](const Json& e) { return SseProcessEvent(e, pid); },
                 [pid](const Json& r) { return SseProcessFinal(r, pid); },
                 [pid](const std::string& m) { return SseProcessError(m, pid); }, SseProcessInfo(process),
                 std::nullopt};
  co_return SseResponse([agent, op, map](BodyStream& out) -> Task<void> {
    co_await StartAndRelay(agent, op, out, map);
  });
}

}  // namespace cove::api
