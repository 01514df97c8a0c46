// Background processes of the compatible API (reference routes #20-#26):
// /api/process/start, list, kill-all, {id}, {id}/logs, {id}/stream, and
// /api/execute with background:true. The processes live in cove-agent.
#include <fmt/format.h>

#include "agent/ops.h"
#include "api/agent_reply.h"
#include "api/errors.h"
#include "api/fields.h"
#include "api/route_table.h"
#include "base/time.h"
#include "base/utf8.h"

namespace cove::api {
namespace {

// A process record from the agent, rebuilt from its typed reading (the agent
// is not trusted); nullopt when malformed.
std::optional<Json> ProcessInfoJson(const Json& p) {
  auto info = agent::ParseProcessInfo(p);
  if (!info.ok()) return std::nullopt;
  Json out = {{"id", info->id}, {"pid", info->pid.value_or(0)}, {"command", info->command},
              {"status", info->status}, {"startTime", info->start_time}};
  if (info->end_time && !info->end_time->empty()) out["endTime"] = *info->end_time;
  if (info->exit_code) out["exitCode"] = *info->exit_code;
  return out;
}

std::string SseProcessInfo(const Json& info) {
  return Sse({{"type", "process_info"}, {"processId", info["id"]}, {"command", info["command"]},
              {"status", info["status"]}, {"timestamp", IsoNow()}});
}

std::string SseProcessEvent(const Json& event, const std::string& process_id) {
  std::string type = StrOf(event, "type");
  if (type == "stdout" || type == "stderr")
    return SseOutput(type, StrView(event, "data"), {{"processId", process_id}, {"timestamp", IsoNow()}});
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

// The tail of a getProcessLogs body after its output fields.
std::string LogsTail(const Json& reply) {
  return fmt::format("\"stdoutDropped\":{},\"stderrDropped\":{},\"success\":true,\"timestamp\":\"{}\"}}",
                     IntOf(reply, "stdoutDropped"), IntOf(reply, "stderrDropped"), IsoNow());
}

// The "process" of a process.get reply ({} when missing or malformed).
Json ProcessOf(const Json& reply) {
  auto it = reply.find("process");
  if (it == reply.end()) return Json::object();
  return ProcessInfoJson(*it).value_or(Json::object());
}

Task<HttpResponse> ProcessLogs(RouteInput&, AgentPtr agent, agent::ProcessLogsOp op) {
  std::string pid = op.process_id;
  auto started = agent->Start(agent::ToJson(op));
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

Task<HttpResponse> StreamProcess(RouteInput&, AgentPtr agent, agent::ProcessStreamOp stream) {
  // The process must exist before the stream starts (a missing one is a plain 404).
  std::string pid = stream.process_id;
  const Json get = agent::ToJson(agent::ProcessGetOp{pid});
  auto info = co_await Call(agent, get);
  if (!info.ok()) co_return ErrorResponse(info.error());
  if (auto e = AgentError(*info)) co_return AgentErrorResponse(*e);
  Json process = ProcessOf(*info);
  Json op = agent::ToJson(stream);
  SseMapping map{[pid](const Json& e) { return SseProcessEvent(e, pid); },
                 [pid](const Json& r) { return SseProcessFinal(r, pid); },
                 [pid](const std::string& m) { return SseProcessError(m, pid); }, SseProcessInfo(process),
                 std::nullopt};
  co_return SseResponse([agent, op, map](BodyStream& out) -> Task<void> {
    co_await StartAndRelay(agent, op, out, map);
  });
}

agent::ProcessGetOp BuildProcessRef(RouteInput& in) {
  const std::string& pid = in.params.at(0);
  // An id that cannot be a process's is no route at all.
  if (!ProcessIdProblem("processId", pid).empty())
    in.Refuse(ErrorResponse("NOT_FOUND", "no route for " + in.req.method + " " + in.req.path));
  return {pid};
}
template <class Op>
Op BuildProcessRefAs(RouteInput& in) {
  Op op;
  op.process_id = BuildProcessRef(in).process_id;
  return op;
}

agent::ProcessListOp BuildProcessList(RouteInput& in) {
  agent::ProcessListOp op;
  if (auto it = in.req.query.find("status"); it != in.req.query.end()) op.status = it->second;
  return op;
}
Json ProcessList(const agent::ProcessListOp&, const Json& r) {
  Json list = Json::array();
  if (auto it = r.find("processes"); it != r.end() && it->is_array())
    for (const auto& p : *it)
      if (auto info = ProcessInfoJson(p)) list.push_back(std::move(*info));
  return {{"processes", std::move(list)}};
}

agent::ProcessKillAllOp BuildKillAll(RouteInput&) { return {}; }
Json KilledAll(const agent::ProcessKillAllOp&, const Json& r) { return {{"cleanedCount", IntOf(r, "cleanedCount")}}; }

Json ProcessGot(const agent::ProcessGetOp&, const Json& r) { return {{"process", ProcessOf(r)}}; }
Json ProcessKilled(const agent::ProcessKillOp& op, const Json&) { return {{"processId", op.process_id}}; }

}  // namespace

agent::ProcessStartOp BuildProcessStart(RouteInput& in) {
  Fields& f = in.f;
  agent::ProcessStartOp op;
  op.command = f.Command("command");
  op.session_id = SessionOf(f);
  if (auto pid = f.OptStr("processId")) {
    if (auto why = ProcessIdProblem("processId", *pid); !why.empty()) f.Fail(why);
    op.process_id = *pid;
  }
  if (in.body.contains("env")) op.env = f.EnvMap("env");
  op.cwd = f.OptStr("cwd");
  op.timeout_ms = f.Int("timeoutMs", 1, agent::kMaxTimeoutMs);
  (void)f.OptStr("encoding");
  (void)f.Bool("autoCleanup");
  return op;
}

Task<HttpResponse> AnswerProcessStart(RouteInput&, AgentPtr agent, agent::ProcessStartOp op) {
  const Json request = agent::ToJson(op);
  auto reply = co_await Call(agent, request);
  if (!reply.ok()) co_return ErrorResponse(reply.error());
  if (auto e = AgentError(*reply)) co_return AgentErrorResponse(*e);
  auto started = agent::ParseProcessStartReply(*reply);
  if (!started.ok()) co_return ErrorResponse(MalformedAnswer(started.error()));
  co_return JsonResponse(Success({{"processId", started->process_id}, {"pid", started->pid}, {"command", op.command}}));
}

std::vector<Route> ProcessRoutes() {
  using namespace agent;
  return {
      AgentRoute<ProcessStartOp>("POST", "/api/process/start", BuildProcessStart, AnswerProcessStart),
      AgentRoute<ProcessListOp>("GET", "/api/process/list", BuildProcessList, ProcessList),
      AgentRoute<ProcessKillAllOp>("DELETE", "/api/process/kill-all", BuildKillAll, KilledAll),
      AgentRoute<ProcessGetOp>("GET", "/api/process/{id}", BuildProcessRef, ProcessGot),
      AgentRoute<ProcessKillOp>("DELETE", "/api/process/{id}", BuildProcessRefAs<ProcessKillOp>, ProcessKilled),
      AgentRoute<ProcessLogsOp>("GET", "/api/process/{id}/logs", BuildProcessRefAs<ProcessLogsOp>, ProcessLogs),
      AgentRoute<ProcessStreamOp>("GET", "/api/process/{id}/stream", BuildProcessRefAs<ProcessStreamOp>,
                                  StreamProcess),
  };
}

}  // namespace cove::api
