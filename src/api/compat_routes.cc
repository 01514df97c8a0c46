// The Cloudflare-compatible container API under /v1/sandboxes/{id}: each route
// validates its body, turns it into one cove-agent op, and shapes the answer
// as the reference (shared/reference/cloudflare-container-api.md §2.3) says.
#include <fmt/format.h>

#include <algorithm>

#include "agent/ops.h"
#include "api/agent_reply.h"
#include "api/errors.h"
#include "api/fields.h"
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
std::string SseExecStart(const Json& op) {
  return Sse({{"type", "start"}, {"command", op["command"]}, {"timestamp", IsoNow()}});
}
std::string SseExecOutput(const Json& event) {
  std::string type = StrOf(event, "type");
  if (type != "stdout" && type != "stderr") return {};
  return Sse({{"type", type}, {"data", StrOf(event, "data")}, {"timestamp", IsoNow()}});
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
  if (type == "chunk") return Sse({{"type", "chunk"}, {"data", StrOf(b, "data")}});
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

// Copies the request's sessionId into an agent op. Without one, requests use
// the sandbox's "default" session, as in Cloudflare's server.
void CopySession(Fields& f, Json* op) {
  auto s = f.Id("sessionId");
  (*op)["sessionId"] = s && !s->empty() ? *s : "default";
}

}  // namespace

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
  if (rest.rfind("/api/", 0) != 0) co_return ErrorResponse("NOT_FOUND", "no route for " + req.method + " " + req.path);
  const std::string route = rest.substr(4);  // "/execute", "/read", ...
  static constexpr std::pair<std::string_view, std::string_view> kRoutes[] = {
      {"/ping", "GET"},          {"/version", "GET"},      {"/session/list", "GET"},
      {"/session/create", "POST"}, {"/session/delete", "POST"}, {"/execute", "POST"},
      {"/execute/stream", "POST"}, {"/read", "POST"},        {"/read/stream", "POST"},
      {"/write", "POST"},        {"/delete", "POST"},      {"/exists", "POST"},
      {"/rename", "POST"},       {"/move", "POST"},        {"/mkdir", "POST"},
      {"/list-files", "POST"}, {"/git/checkout", "POST"}, {"/port-watch", "POST"},
      {"/watch", "POST"}, {"/watch/check", "POST"}};
  if (route.rfind("/process/", 0) == 0) co_return co_await Processes(req, id, route);
  if (route == "/contexts" || route.rfind("/contexts/", 0) == 0 || route == "/execute/code" ||
      route == "/interpreter/health")
    co_return co_await Interpreter(req, id, route);
  auto known = std::find_if(std::begin(kRoutes), std::end(kRoutes), [&](const auto& r) { return r.first == route; });
  if (known == std::end(kRoutes)) co_return ErrorResponse("NOT_FOUND", "no route for " + req.method + " " + req.path);
  if (known->second != req.method)
    co_return ErrorResponse("METHOD_NOT_ALLOWED", req.method + " is not allowed on " + req.path + "; use " +
                                                      std::string(known->second));

  if (route == "/ping")
    co_return JsonResponse(Success({{"status", "healthy"}, {"message", "pong"}}));
  if (route == "/version") co_return JsonResponse(Success({{"version", kVersion}}));
  if (route == "/git/checkout") co_return co_await GitCheckout(req, id);
  if (route == "/port-watch") co_return co_await PortWatch(req, id);
  if (route == "/watch" || route == "/watch/check") co_return co_await Watch(req, id, route == "/watch/check");

  Json body;
  if (req.method == "POST") {
    if (auto p = ParseJsonObject(req.body, &body); !p.empty()) co_return ErrorResponse("VALIDATION_FAILED", p);
  }
  Fields f(body);
  Json op;
  std::optional<std::string> data;  // raw payload sent after the op (file writes)
  // Build the agent op for the route; validation first, so bad input changes nothing.
  enum class Kind { kSimple, kExec, kExecStream, kRead, kReadStream } kind = Kind::kSimple;
  if (route == "/session/create") {
    auto sid = f.Id("id");
    if (sid && sid->empty()) f.Fail(IdProblem("id", *sid));
    op = {{"op", "session.create"}, {"id", sid.value_or(fmt::format("session_{}", NowUnixMs()))}};
    if (body.contains("env")) op["env"] = f.EnvMap("env");
    if (auto cwd = f.OptStr("cwd")) op["cwd"] = *cwd;
    if (auto t = f.Int("commandTimeoutMs", 1, int64_t{1} << 40)) op["commandTimeoutMs"] = *t;
    if (auto user = f.OptStr("user")) {  // cove extension: "root" or "user"
      if (*user != "root" && *user != "user") f.Fail("field 'user' must be \"root\" or \"user\"");
      op["user"] = *user;
    }
  } else if (route == "/session/delete") {
    op = {{"op", "session.delete"}, {"id", f.Id("sessionId", true).value_or("")}};
  } else if (route == "/session/list") {
    op = {{"op", "session.list"}};
  } else if (route == "/execute" || route == "/execute/stream") {
    op = {{"op", "exec"}, {"command", f.Command("command")}};
    CopySession(f, &op);
    if (body.contains("env")) op["env"] = f.EnvMap("env");
    if (auto cwd = f.OptStr("cwd")) op["cwd"] = *cwd;
    if (auto t = f.Int("timeoutMs", 1, int64_t{1} << 40)) op["timeoutMs"] = *t;
    kind = route == "/execute" ? Kind::kExec : Kind::kExecStream;
    if (route == "/execute" && f.Bool("background")) {  // answers like /api/process/start
      Json start = ProcessStartOp(f, body);
      if (!f.ok()) co_return ErrorResponse("VALIDATION_FAILED", f.problem());
      auto agent_r = co_await manager_->Agent(id, true, req.arrival);
      if (!agent_r.ok()) co_return ErrorResponse(agent_r.error());
      co_return co_await StartProcess(std::move(*agent_r), std::move(start));
    }
  } else if (route == "/read" || route == "/read/stream") {
    op = {{"op", "file.read"}, {"path", f.Str("path", true)}};
    CopySession(f, &op);
    if (route == "/read") {
      if (auto enc = f.OptStr("encoding")) {
        if (*enc != "utf-8" && *enc != "utf8" && *enc != "base64")
          f.Fail("field 'encoding' must be 'utf-8' or 'base64'");
        op["encoding"] = *enc == "base64" ? "base64" : "utf-8";
      }
      op["maxBytes"] = kMaxFileBytes;
      kind = Kind::kRead;
    } else {
      kind = Kind::kReadStream;
    }
  } else if (route == "/write") {
    std::string path = f.Str("path", true);
    if (!body.contains("content")) f.Fail("missing required field 'content'");
    std::string content = f.Str("content");
    std::string enc = f.Str("encoding", false, "utf-8");
    if (enc == "utf8") enc = "utf-8";
    if (enc != "utf-8" && enc != "base64") f.Fail("field 'encoding' must be 'utf-8' or 'base64'");
    if (!f.ok()) co_return ErrorResponse("VALIDATION_FAILED", f.problem());
    // The decoded size, padding counted (a file of exactly the limit is allowed).
    size_t pad = enc == "base64" && content.ends_with('=') ? (content.ends_with("==") ? 2 : 1) : 0;
    int64_t size = static_cast<int64_t>(enc == "base64" ? content.size() / 4 * 3 - std::min(pad, content.size() / 4 * 3)
                                                        : content.size());
    if (size > kMaxFileBytes)
      co_return ErrorResponse("FILE_TOO_LARGE", fmt::format("file content is {} bytes; the limit is {} bytes", size, kMaxFileBytes),
                              {{"path", path}});
    if (enc == "base64") {
      auto raw = Base64Decode(content);
      if (!raw) co_return ErrorResponse("VALIDATION_FAILED", "field 'content' is not valid base64");
      data = std::move(*raw);
    } else {
      data = std::move(content);
    }
    // The raw bytes follow as one Data frame: no second JSON escaping or base64 in the agent.
    op = {{"op", "file.write"}, {"path", path}, {"contentInData", true}};
    CopySession(f, &op);
  } else if (route == "/delete" || route == "/exists") {
    op = {{"op", route == "/delete" ? "file.delete" : "file.exists"}, {"path", f.Str("path", true)}};
    CopySession(f, &op);
  } else if (route == "/rename") {
    op = {{"op", "file.rename"}, {"oldPath", f.Str("oldPath", true)}, {"newPath", f.Str("newPath", true)}};
    CopySession(f, &op);
  } else if (route == "/move") {
    op = {{"op", "file.move"}, {"sourcePath", f.Str("sourcePath", true)},
          {"destinationPath", f.Str("destinationPath", true)}};
    CopySession(f, &op);
  } else if (route == "/mkdir") {
    op = {{"op", "file.mkdir"}, {"path", f.Str("path", true)}, {"recursive", f.Bool("recursive")}};
    CopySession(f, &op);
  } else if (route == "/list-files") {
    op = {{"op", "file.list"}, {"path", f.Str("path", true)}};
    if (auto it = body.find("options"); it != body.end() && !it->is_null()) {
      if (!it->is_object()) {
        f.Fail("field 'options' must be an object");
      } else {
        Fields of(*it);
        op["recursive"] = of.Bool("recursive");
        op["includeHidden"] = of.Bool("includeHidden");
        if (!of.ok()) f.Fail("options: " + of.problem());
      }
    }
    CopySession(f, &op);
  }
  if (!f.ok()) co_return ErrorResponse("VALIDATION_FAILED", f.problem());

  auto agent_r = co_await manager_->Agent(id, true, req.arrival);
  if (!agent_r.ok()) co_return ErrorResponse(agent_r.error());
  std::shared_ptr<AgentConnection> agent = std::move(*agent_r);

  switch (kind) {
    case Kind::kExec: co_return co_await Execute(req, agent, op);
    case Kind::kExecStream: co_return ExecuteStream(agent, op);
    case Kind::kRead: co_return co_await Read(req, agent, op);
    case Kind::kReadStream: co_return ReadStream(agent, op);
    case Kind::kSimple: break;
  }

  auto reply = co_await Call(agent, op, data);
  if (!reply.ok()) co_return ErrorResponse(reply.error());
  if (auto e = AgentError(*reply)) co_return AgentErrorResponse(*e);
  const Json& r = *reply;
  const std::string o = op["op"];
  if (o == "session.create") {
    std::string sid = op["id"];
    co_return JsonResponse(Success({{"id", sid}, {"message", "Session created"}, {"data", {{"id", sid}}},
                                    {"containerPlacementId", nullptr}}));
  }
  if (o == "session.delete") co_return JsonResponse(Success({{"sessionId", op["id"]}}));
  if (o == "session.list") {
    Json list = r.contains("sessions") && r["sessions"].is_array() ? r["sessions"] : Json::array();
    co_return JsonResponse(Success({{"data", list}}));
  }
  if (o == "file.write" || o == "file.delete") co_return JsonResponse(Success({{"path", op["path"]}}));
  if (o == "file.exists") co_return JsonResponse(Success({{"path", op["path"]}, {"exists", BoolOf(r, "exists")}}));
  if (o == "file.rename")
    co_return JsonResponse(Success({{"path", op["oldPath"]}, {"newPath", op["newPath"]}}));
  if (o == "file.move")
    co_return JsonResponse(Success({{"path", op["sourcePath"]}, {"newPath", op["destinationPath"]}}));
  if (o == "file.mkdir")
    co_return JsonResponse(Success({{"path", op["path"]}, {"recursive", op["recursive"]}}));
  // file.list
  Json files = r.contains("files") && r["files"].is_array() ? r["files"] : Json::array();
  size_t count = files.size();
  co_return JsonResponse(Success({{"path", op["path"]}, {"files", std::move(files)}, {"count", count}}));
}

Task<HttpResponse> CompatRoutes::Execute(const HttpRequest& req, std::shared_ptr<AgentConnection> agent, Json op) {
  std::optional<int64_t> timeout_ms;
  if (auto t = op.find("timeoutMs"); t != op.end()) timeout_ms = t->get<int64_t>();
  CollectOptions o;
  o.timeout = timeout_ms ? std::optional(Clock::duration(std::chrono::milliseconds(*timeout_ms) + std::chrono::seconds(10)))
                         : std::nullopt;
  o.max_bytes = SIZE_MAX;  // only output is held, within max_output
  o.max_output = kMaxExecOutput;
  o.cancel_with = &req;  // a client that left stops its command and frees its session
  int64_t started = NowUnixMs();
  auto got = co_await Collect(agent, op, o);
  if (!got.ok()) co_return ErrorResponse(got.error());
  if (got->overflow != Collected::Overflow::kNone)  // returning cancelled the command
    co_return ErrorResponse("OUTPUT_TOO_LARGE",
                            fmt::format("the command wrote more than {} bytes to stdout and stderr, the limit of "
                                        "/api/execute; it was stopped. Use /api/execute/stream, or redirect "
                                        "its output to a file",
                                        kMaxExecOutput),
                            {{"limit", kMaxExecOutput}, {"command", op["command"]}});
  if (auto e = AgentError(got->reply)) co_return AgentErrorResponse(*e);
  auto reply = agent::ParseExecReply(got->reply);
  if (!reply.ok()) co_return ErrorResponse(MalformedAnswer(reply.error()));
  std::string& err = got->output[1];
  if (reply->timed_out)
    err += fmt::format("{}Command timed out{}", err.empty() || err.back() == '\n' ? "" : "\n",
                       timeout_ms ? fmt::format(" after {}ms", *timeout_ms) : "");
  Json res = Success({{"exitCode", reply->exit_code}, {"stdout", std::move(got->output[0])}, {"stderr", std::move(err)},
                      {"command", op["command"]}, {"duration", NowUnixMs() - started}});
  res["success"] = reply->exit_code == 0;
  if (op.contains("sessionId")) res["sessionId"] = op["sessionId"];
  co_return JsonResponse(res);
}

HttpResponse CompatRoutes::ExecuteStream(std::shared_ptr<AgentConnection> agent, Json op) {
  SseMapping map{SseExecOutput, SseExecFinal, [](const std::string& m) { return SseExecError(m, ""); },
                 SseExecStart(op), std::nullopt};
  return SseResponse([agent, op, map](BodyStream& out) -> Task<void> {
    co_await StartAndRelay(agent, op, out, map);
  });
}

Task<HttpResponse> CompatRoutes::Read(const HttpRequest& req, std::shared_ptr<AgentConnection> agent, Json op) {
  op["rawData"] = true;  // the content as Data frames, encoded once below (older agents send chunk events)
  CollectOptions o;
  o.max_bytes = SIZE_MAX;  // only the content is held, within max_content
  o.max_content = kMaxFileBytes;
  o.accept_data = true;
  o.cancel_with = &req;
  auto got = co_await Collect(agent, op, o);
  if (!got.ok()) co_return ErrorResponse(got.error());
  if (got->overflow != Collected::Overflow::kNone)
    co_return ErrorResponse("FILE_TOO_LARGE", "file is larger than the read limit", {{"path", op["path"]}});
  if (auto e = AgentError(got->reply)) co_return AgentErrorResponse(*e);
  agent::FileMetadata meta;  // an agent that sent none: an empty text file
  meta.encoding = "utf-8";
  if (!got->metadata.is_null()) {
    auto m = agent::ParseFileMetadata(got->metadata);
    if (!m.ok()) co_return ErrorResponse(MalformedAnswer(m.error()));
    meta = std::move(*m);
  }
  bool base64 = meta.encoding == "base64";
  Json res = Success({{"path", op["path"]},
                      {"content", got->raw_content ? "" : std::move(got->content)},
                      {"encoding", base64 ? "base64" : "utf-8"},
                      {"isBinary", meta.is_binary},
                      {"mimeType", meta.mime_type},
                      {"size", meta.size}});
  if (!got->raw_content) co_return JsonResponse(res);
  co_return SpliceContent(res, got->content, base64);
}

HttpResponse CompatRoutes::ReadStream(std::shared_ptr<AgentConnection> agent, Json op) {
  SseMapping map{SseReadEvent, SseReadFinal, [](const std::string& m) { return SseReadError(m, ""); }, "",
                 kOpTimeout};
  return SseResponse([agent, op, map](BodyStream& out) -> Task<void> {
    co_await StartAndRelay(agent, op, out, map);
  });
}

}  // namespace cove::api
