// The Cloudflare-compatible container API under /v1/sandboxes/{id}: each route
// validates its body, turns it into one cove-agent op, and shapes the answer
// as the reference (shared/reference/cloudflare-container-api.md §2.3) says.
#include <fmt/format.h>

#include <algorithm>

#include "agent/ops.h"
#include "api/agent_reply.h"
#include "api/collector.h"
#include "api/errors.h"
#include "api/fields.h"
#include "api/route_table.h"
#include "api/routes.h"
#include "base/base64.h"
#include "base/time.h"
#include "base/utf8.h"

namespace cove::api {
namespace {

constexpr int64_t kMaxFileBytes = 32 << 20;  // the reference's JSON file limit
constexpr size_t kMaxExecOutput = 16 << 20;   // stdout + stderr one /api/execute answer may hold
constexpr char kVersion[] = "cove-0.1.0";

// SSE events of /api/execute/stream and /api/read/stream, built outside the
// coroutines (GCC 12 cannot keep JSON-literal temporaries in a coroutine frame).
std::string SseExecStart(const std::string& command) {
  return Sse({{"type", "start"}, {"command", command}, {"timestamp", IsoNow()}});
}
std::string SseExecOutput(const Json& event) {
  std::string type = StrOf(event, "type");
  if (type != "stdout" && type != "stderr") return {};
  return SseOutput(type, StrView(event, "data"), {{"timestamp", IsoNow()}});
}
std::string SseExecError(const std::string& message, const std::string& code) {
  Json ev = {{"type", "error"}, {"data", message}, {"error", message}, {"timestamp", IsoNow()}};
  if (!code.empty()) ev["code"] = code;
  return Sse(ev);
}
std::string SseExecFinal(const Json& reply) {
  if (auto e = AgentError(reply)) return SseExecError((*e)["message"], (*e)["code"]);
  Json ev = {{"type", "complete"}, {"exitCode", IntOf(reply, "exitCode", -1)}, {"timestamp", IsoNow()}};
  if (BoolOf(reply, "timedOut")) ev["timedOut"] = true;
  return Sse(ev);
}
std::string SseReadEvent(const Json& b) {
  std::string type = StrOf(b, "type");
  if (type == "metadata")
    return Sse({{"type", "metadata"}, {"mimeType", StrOf(b, "mimeType")}, {"size", IntOf(b, "size")},
                {"isBinary", BoolOf(b, "isBinary")},
                {"encoding", StrOf(b, "encoding") == "base64" ? "base64" : "utf-8"}});
  if (type == "chunk") return SseOutput("chunk", StrView(b, "data"));
  return {};
}
std::string SseReadError(const std::string& message, const std::string& code) {
  Json ev = {{"type", "error"}, {"error", message}};
  if (!code.empty()) ev["code"] = code;
  return Sse(ev);
}
std::string SseReadFinal(const Json& reply) {
  if (auto e = AgentError(reply)) return SseReadError((*e)["message"], (*e)["code"]);
  return Sse({{"type", "complete"}, {"bytesRead", IntOf(reply, "bytesRead")}});
}

// The body of `res` (whose "content" is "") with `content` put in as JSON text:
// base64 of the raw bytes, or the UTF-8 text escaped (invalid sequences become
// U+FFFD), each in one pass and without a JSON value of a file's size.
HttpResponse SpliceContent(const Json& res, std::string_view content, bool base64) {
  std::string shell = res.dump(-1, ' ', false, Json::error_handler_t::replace);
  // The first unescaped `"content":""` is the key: inside a string its quotes would be escaped.
  constexpr std::string_view kEmpty = "\"content\":\"\"";
  size_t at = shell.find(kEmpty) + kEmpty.size() - 1;
  HttpResponse out;
  out.body.reserve(shell.size() + (base64 ? (content.size() + 2) / 3 * 4 : content.size() + content.size() / 8));
  out.body.append(shell, 0, at);
  if (base64) {
    AppendBase64(content, &out.body);
  } else {
    AppendJsonUtf8(content, &out.body);
  }
  out.body.append(shell, at, std::string::npos);
  return out;
}

Task<HttpResponse> Answered(HttpResponse res) { co_return res; }

// /api/execute: a command run to its end (or, with background:true, a process
// started as by /api/process/start).
using ExecuteOp = std::variant<agent::ExecOp, agent::ProcessStartOp>;

agent::ExecOp BuildExec(RouteInput& in) {
  agent::ExecOp op;
  op.command = in.f.Command("command");
  op.session_id = SessionOf(in.f);
  if (in.body.contains("env")) op.env = in.f.EnvMap("env");
  op.cwd = in.f.OptStr("cwd");
  op.timeout_ms = in.f.Int("timeoutMs", 1, agent::kMaxTimeoutMs);
  return op;
}

ExecuteOp BuildExecute(RouteInput& in) {
  agent::ExecOp exec = BuildExec(in);
  if (in.f.Bool("background")) return BuildProcessStart(in);
  return exec;
}

Task<HttpResponse> Execute(RouteInput& in, AgentPtr agent, agent::ExecOp op) {
  CollectOptions o;
  if (op.timeout_ms) o.timeout = std::chrono::milliseconds(*op.timeout_ms) + std::chrono::seconds(10);
  else o.timeout = std::nullopt;
  o.max_bytes = SIZE_MAX;  // only output is held, within max_output
  o.max_output = kMaxExecOutput;
  o.cancel_with = &in.req;  // a client that left stops its command and frees its session
  int64_t started = NowUnixMs();
  const Json request = agent::ToJson(op);  // named: a temporary would not survive the co_await (GCC 12)
  auto got = co_await Collect(agent, request, o);
  if (!got.ok()) co_return ErrorResponse(got.error());
  if (got->overflow != Collected::Overflow::kNone)  // returning cancelled the command
    co_return ErrorResponse("OUTPUT_TOO_LARGE",
                            fmt::format("the command wrote more than {} bytes to stdout and stderr, the limit of "
                                        "/api/execute; it was stopped. Use /api/execute/stream, or redirect "
                                        "its output to a file",
                                        kMaxExecOutput),
                            {{"limit", kMaxExecOutput}, {"command", op.command}});
  if (auto e = AgentError(got->reply)) co_return AgentErrorResponse(*e);
  auto reply = agent::ParseExecReply(got->reply);
  if (!reply.ok()) co_return ErrorResponse(MalformedAnswer(reply.error()));
  std::string& err = got->output[1];
  if (reply->timed_out)
    err += fmt::format("{}Command timed out{}", err.empty() || err.back() == '\n' ? "" : "\n",
                       op.timeout_ms ? fmt::format(" after {}ms", *op.timeout_ms) : "");
  Json res = Success({{"exitCode", reply->exit_code}, {"stdout", std::move(got->output[0])}, {"stderr", std::move(err)},
                      {"command", op.command}, {"duration", NowUnixMs() - started}});
  res["success"] = reply->exit_code == 0;
  res["sessionId"] = *op.session_id;
  co_return JsonResponse(res);
}

Task<HttpResponse> AnswerExecute(RouteInput& in, AgentPtr agent, ExecuteOp op) {
  if (auto* start = std::get_if<agent::ProcessStartOp>(&op))
    return AnswerProcessStart(in, std::move(agent), std::move(*start));
  return Execute(in, std::move(agent), std::get<agent::ExecOp>(std::move(op)));
}

Task<HttpResponse> ExecuteStream(RouteInput&, AgentPtr agent, agent::ExecOp op) {
  SseMapping map{SseExecOutput, SseExecFinal, [](const std::string& m) { return SseExecError(m, ""); },
                 SseExecStart(op.command), std::nullopt};
  return Answered(SseResponse([agent, op = agent::ToJson(op), map](BodyStream& out) -> Task<void> {
    co_await StartAndRelay(agent, op, out, map);
  }));
}

agent::FileReadOp BuildRead(RouteInput& in) {
  agent::FileReadOp op;
  op.path = in.f.Str("path", true);
  op.session_id = SessionOf(in.f);
  if (auto enc = in.f.OptStr("encoding")) {
    if (*enc != "utf-8" && *enc != "utf8" && *enc != "base64") in.f.Fail("field 'encoding' must be 'utf-8' or 'base64'");
    op.encoding = *enc == "base64" ? "base64" : "utf-8";
  }
  op.max_bytes = kMaxFileBytes;
  op.raw_data = true;  // the content as Data frames, encoded once below (older agents send chunk events)
  return op;
}

Task<HttpResponse> Read(RouteInput& in, AgentPtr agent, agent::FileReadOp op) {
  CollectOptions o;
  o.max_bytes = SIZE_MAX;  // only the content is held, within max_content
  o.max_content = kMaxFileBytes;
  o.accept_data = true;
  o.window = 4 << 20;  // the agent reads ahead while coved takes the content (held whole anyway)
  o.cancel_with = &in.req;
  const Json request = agent::ToJson(op);
  auto got = co_await Collect(agent, request, o);
  if (!got.ok()) co_return ErrorResponse(got.error());
  if (got->overflow != Collected::Overflow::kNone)
    co_return ErrorResponse("FILE_TOO_LARGE", "file is larger than the read limit", {{"path", op.path}});
  if (auto e = AgentError(got->reply)) co_return AgentErrorResponse(*e);
  agent::FileMetadata meta;  // an agent that sent none: an empty text file
  meta.encoding = "utf-8";
  if (!got->metadata.is_null()) {
    auto m = agent::ParseFileMetadata(got->metadata);
    if (!m.ok()) co_return ErrorResponse(MalformedAnswer(m.error()));
    meta = std::move(*m);
  }
  bool base64 = meta.encoding == "base64";
  Json res = Success({{"path", op.path},
                      {"content", got->raw_content ? "" : std::move(got->content)},
                      {"encoding", base64 ? "base64" : "utf-8"},
                      {"isBinary", meta.is_binary},
                      {"mimeType", meta.mime_type},
                      {"size", meta.size}});
  if (!got->raw_content) co_return JsonResponse(res);
  co_return SpliceContent(res, got->content, base64);
}

// /api/read/stream: no size limit, no raw data (the agent's chunk events are relayed).
agent::FileReadOp BuildReadStream(RouteInput& in) {
  agent::FileReadOp op;
  op.path = in.f.Str("path", true);
  op.session_id = SessionOf(in.f);
  return op;
}

Task<HttpResponse> ReadStream(RouteInput&, AgentPtr agent, agent::FileReadOp op) {
  SseMapping map{SseReadEvent, SseReadFinal, [](const std::string& m) { return SseReadError(m, ""); }, "",
                 kOpTimeout};
  return Answered(SseResponse([agent, op = agent::ToJson(op), map](BodyStream& out) -> Task<void> {
    co_await StartAndRelay(agent, op, out, map);
  }));
}

// /api/write: the raw bytes follow the op in Data frames (no second JSON
// escaping or base64 in the agent).
struct WriteOp {
  agent::FileWriteOp op;
  std::string data;
};

WriteOp BuildWrite(RouteInput& in) {
  Fields& f = in.f;
  WriteOp w;
  w.op.path = f.Str("path", true);
  if (!in.body.contains("content")) f.Fail("missing required field 'content'");
  std::string content;  // moved out of the body: a file's size is not copied
  if (auto it = in.body.find("content"); it != in.body.end() && it->is_string())
    content = std::move(it->get_ref<std::string&>());
  else
    content = f.Str("content");  // refuses what is not a string
  std::string enc = f.Str("encoding", false, "utf-8");
  if (enc == "utf8") enc = "utf-8";
  if (enc != "utf-8" && enc != "base64") f.Fail("field 'encoding' must be 'utf-8' or 'base64'");
  w.op.session_id = SessionOf(f);
  w.op.content_in_data = true;
  if (!f.ok()) return w;
  // The decoded size, padding counted (a file of exactly the limit is allowed).
  size_t pad = enc == "base64" && content.ends_with('=') ? (content.ends_with("==") ? 2 : 1) : 0;
  int64_t size = static_cast<int64_t>(enc == "base64" ? content.size() / 4 * 3 - std::min(pad, content.size() / 4 * 3)
                                                      : content.size());
  if (size > kMaxFileBytes) {
    in.Refuse(ErrorResponse("FILE_TOO_LARGE",
                            fmt::format("file content is {} bytes; the limit is {} bytes", size, kMaxFileBytes),
                            {{"path", w.op.path}}));
  } else if (enc == "base64") {
    auto raw = Base64Decode(content);
    if (!raw) in.Refuse(ErrorResponse("VALIDATION_FAILED", "field 'content' is not valid base64"));
    else w.data = std::move(*raw);
  } else {
    w.data = std::move(content);
  }
  return w;
}

// The content crosses in Data frames of this size (dataSize in the op), each
// handed to the connection's writer before the next is made: the agent writes
// one into its temporary file while the next crosses the socket.
constexpr size_t kWriteFrame = 512 << 10;

Task<HttpResponse> Write(RouteInput& in, AgentPtr agent, WriteOp w) {
  const bool frames = agent->writes_in_frames();  // else one frame (an agent older than this coved)
  if (frames) w.op.data_size = static_cast<int64_t>(w.data.size());
  const Json request = agent::ToJson(w.op);
  std::optional<std::string_view> whole;
  if (!frames) whole = w.data;
  auto started = agent->Start(request, whole);
  if (!started.ok()) co_return ErrorResponse(started.error());
  std::shared_ptr<AgentConnection::Call> call = std::move(*started);
  CancelOnHangUp(in.req, call);  // a client that left: the agent removes the temporary file
  std::string_view rest = frames ? std::string_view(w.data) : std::string_view();
  // An early answer (a full disk, a bad path) ends the sending: the agent ignores the rest.
  while (!rest.empty() && !call->answered()) {
    size_t n = std::min(rest.size(), kWriteFrame);
    call->SendData(rest.substr(0, n));
    rest.remove_prefix(n);
    if (!rest.empty()) co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  }
  const auto deadline = AgentConnection::Clock::now() + kOpTimeout;
  for (;;) {
    auto m = co_await call->Next(deadline);
    if (!m.ok()) co_return ErrorResponse(m.error());
    if (!m->final) continue;
    if (auto e = AgentError(m->body)) co_return AgentErrorResponse(*e);
    co_return JsonResponse(Success({{"path", w.op.path}}));
  }
}

agent::SessionCreateOp BuildSessionCreate(RouteInput& in) {
  Fields& f = in.f;
  agent::SessionCreateOp op;
  auto sid = f.Id("id");
  if (sid && sid->empty()) f.Fail(IdProblem("id", *sid));
  op.id = sid.value_or(fmt::format("session_{}", NowUnixMs()));
  if (in.body.contains("env")) op.env = f.EnvMap("env");
  op.cwd = f.OptStr("cwd");
  op.command_timeout_ms = f.Int("commandTimeoutMs", 1, agent::kMaxTimeoutMs);
  op.user = f.OptStr("user");  // cove extension: "root" or "user"
  if (op.user && *op.user != "root" && *op.user != "user") f.Fail("field 'user' must be \"root\" or \"user\"");
  return op;
}
Json SessionCreated(const agent::SessionCreateOp& op, const Json&) {
  return {{"id", op.id}, {"message", "Session created"}, {"data", {{"id", op.id}}}, {"containerPlacementId", nullptr}};
}

agent::SessionDeleteOp BuildSessionDelete(RouteInput& in) { return {in.f.Id("sessionId", true).value_or("")}; }
Json SessionDeleted(const agent::SessionDeleteOp& op, const Json&) { return {{"sessionId", op.id}}; }

agent::SessionListOp BuildSessionList(RouteInput&) { return {}; }
Json SessionList(const agent::SessionListOp&, const Json& r) {
  Json list = Json::array();
  if (auto it = r.find("sessions"); it != r.end() && it->is_array())
    for (const auto& s : *it)
      if (s.is_string()) list.push_back(s);
  return {{"data", std::move(list)}};
}

template <class Op>
Op BuildPathOp(RouteInput& in) {
  Op op;
  op.path = in.f.Str("path", true);
  op.session_id = SessionOf(in.f);
  return op;
}
Json FileDeleted(const agent::FileDeleteOp& op, const Json&) { return {{"path", op.path}}; }
Json FileExists(const agent::FileExistsOp& op, const Json& r) {
  auto it = r.find("exists");
  return {{"path", op.path}, {"exists", it != r.end() && it->is_boolean() && it->get<bool>()}};
}

agent::FileRenameOp BuildRename(RouteInput& in) {
  agent::FileRenameOp op;
  op.old_path = in.f.Str("oldPath", true);
  op.new_path = in.f.Str("newPath", true);
  op.session_id = SessionOf(in.f);
  return op;
}
Json Renamed(const agent::FileRenameOp& op, const Json&) { return {{"path", op.old_path}, {"newPath", op.new_path}}; }

agent::FileMoveOp BuildMove(RouteInput& in) {
  agent::FileMoveOp op;
  op.source_path = in.f.Str("sourcePath", true);
  op.destination_path = in.f.Str("destinationPath", true);
  op.session_id = SessionOf(in.f);
  return op;
}
Json Moved(const agent::FileMoveOp& op, const Json&) {
  return {{"path", op.source_path}, {"newPath", op.destination_path}};
}

agent::FileMkdirOp BuildMkdir(RouteInput& in) {
  agent::FileMkdirOp op;
  op.path = in.f.Str("path", true);
  op.recursive = in.f.Bool("recursive");
  op.session_id = SessionOf(in.f);
  return op;
}
Json Made(const agent::FileMkdirOp& op, const Json&) { return {{"path", op.path}, {"recursive", op.recursive}}; }

agent::FileListOp BuildList(RouteInput& in) {
  agent::FileListOp op;
  op.path = in.f.Str("path", true);
  if (auto it = in.body.find("options"); it != in.body.end() && !it->is_null()) {
    if (!it->is_object()) {
      in.f.Fail("field 'options' must be an object");
    } else {
      Fields of(*it);
      op.recursive = of.Bool("recursive");
      op.include_hidden = of.Bool("includeHidden");
      if (!of.ok()) in.f.Fail("options: " + of.problem());
    }
  }
  op.session_id = SessionOf(in.f);
  return op;
}
Json Listed(const agent::FileListOp& op, const Json& r) {
  Json files = Json::array();
  if (auto it = r.find("files"); it != r.end() && it->is_array()) files = *it;
  size_t count = files.size();
  return {{"path", op.path}, {"files", std::move(files)}, {"count", count}};
}

Route Static(std::string_view method, std::string_view path, HttpResponse (*answer)()) {
  return {method, path, [answer](RouteInput&, Manager&) { return Answered(answer()); }};
}
HttpResponse Pong() { return JsonResponse(Success({{"status", "healthy"}, {"message", "pong"}})); }
HttpResponse Version() { return JsonResponse(Success({{"version", kVersion}})); }

}  // namespace

std::vector<Route> SessionAndFileRoutes() {
  using namespace agent;
  return {
      Static("GET", "/api/ping", Pong),
      Static("GET", "/api/version", Version),
      AgentRoute<SessionListOp>("GET", "/api/session/list", BuildSessionList, SessionList),
      AgentRoute<SessionCreateOp>("POST", "/api/session/create", BuildSessionCreate, SessionCreated),
      AgentRoute<SessionDeleteOp>("POST", "/api/session/delete", BuildSessionDelete, SessionDeleted),
      AgentRoute<ExecuteOp>("POST", "/api/execute", BuildExecute, AnswerExecute),
      AgentRoute<ExecOp>("POST", "/api/execute/stream", BuildExec, ExecuteStream),
      AgentRoute<FileReadOp>("POST", "/api/read", BuildRead, Read),
      AgentRoute<FileReadOp>("POST", "/api/read/stream", BuildReadStream, ReadStream),
      AgentRoute<WriteOp>("POST", "/api/write", BuildWrite, Write),
      AgentRoute<FileDeleteOp>("POST", "/api/delete", BuildPathOp<FileDeleteOp>, FileDeleted),
      AgentRoute<FileExistsOp>("POST", "/api/exists", BuildPathOp<FileExistsOp>, FileExists),
      AgentRoute<FileRenameOp>("POST", "/api/rename", BuildRename, Renamed),
      AgentRoute<FileMoveOp>("POST", "/api/move", BuildMove, Moved),
      AgentRoute<FileMkdirOp>("POST", "/api/mkdir", BuildMkdir, Made),
      AgentRoute<FileListOp>("POST", "/api/list-files", BuildList, Listed),
  };
}

Task<HttpResponse> CompatRoutes::Handle(HttpRequest& req, const std::string& id, const std::string& rest) {
  if (rest == "/" && req.method == "GET") {
    HttpResponse res;
    res.content_type = "text/plain; charset=utf-8";
    res.body = "cove sandbox " + id + " is ready\n";
    // Cloudflare's server answers "/" even before the container is up; we create it like getSandbox.
    auto agent = co_await manager_->Agent(id, true, req.arrival);
    if (!agent.ok()) co_return ErrorResponse(agent.error());
    co_return res;
  }
  static const std::vector<Route> kTable = [] {
    std::vector<Route> all;
    for (auto part : {SessionAndFileRoutes, ProcessRoutes, InterpreterRoutes, GitRoutes, PortRoutes, WatchRoutes})
      for (Route& r : part()) all.push_back(std::move(r));
    return all;
  }();
  co_return co_await ServeRoute(kTable, *manager_, req, id, rest);
}

}  // namespace cove::api
