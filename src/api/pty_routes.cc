// Terminals (reference §3, `/ws/pty`): a WebSocket per attached client, the
// PTY itself in cove-agent (one per session, created lazily, kept when a
// client leaves). Binary frames carry terminal bytes both ways; text frames
// carry JSON: ready/exit/error from coved, resize from the client.
#include "agent/ops.h"
#include "api/agent_reply.h"
#include "api/errors.h"
#include "api/routes.h"
#include "base/base64.h"
#include "base/json_limits.h"

namespace cove::api {
namespace {

std::string Text(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

int QueryInt(const HttpRequest& req, const char* key, int fallback, int lo, int hi, bool* bad) {
  auto it = req.query.find(key);
  if (it == req.query.end() || it->second.empty()) return fallback;
  char* end = nullptr;
  long v = std::strtol(it->second.c_str(), &end, 10);
  if (*end != '\0' || v < lo || v > hi) *bad = true;
  return static_cast<int>(v);
}

// One agent message as a WebSocket frame (binary for terminal bytes, text for
// status JSON); nullopt when there is nothing to send. Built outside the
// coroutine (GCC 12 cannot keep JSON-literal temporaries in a frame).
struct Frame {
  std::string data;
  bool binary = false;
};

std::optional<Frame> ToFrame(const AgentConnection::Message& m) {
  const Json& b = m.body;
  std::string type = StrOf(b, "type");
  if (m.final) {
    if (auto e = AgentError(b)) return Frame{Text({{"type", "error"}, {"message", (*e)["message"]}})};
    if (type != "exit") return std::nullopt;
    Json ev = {{"type", "exit"}, {"code", IntOf(b, "code", -1)}};
    if (b.contains("signal") && !b["signal"].is_null()) ev["signal"] = b["signal"];
    return Frame{Text(ev)};
  }
  if (type == "ready") return Frame{Text({{"type", "ready"}})};
  if (type == "replay" || type == "output") {
    auto bytes = Base64Decode(StrOf(b, "data"));
    if (bytes && !bytes->empty()) return Frame{std::move(*bytes), true};
  }
  return std::nullopt;
}

std::string ErrorText(const std::string& message) { return Text({{"type", "error"}, {"message", message}}); }

// Agent -> client, until the shell exits or the attach ends; then closes the socket.
Task<void> Pump(std::shared_ptr<AgentConnection::Call> call, WebSocket& ws) {
  for (;;) {
    auto m = co_await call->Next();
    if (!m.ok()) {
      co_await ws.Write(ErrorText(m.error().message));
      break;
    }
    auto frame = ToFrame(*m);
    if (frame && !co_await ws.Write(std::move(frame->data), frame->binary)) break;
    if (m->final) break;
  }
  co_await ws.Close();
}

}  // namespace

Task<HttpResponse> CompatRoutes::Terminal(HttpRequest& req, const std::string& id) {
  if (req.Header("upgrade").find("ebsocket") == std::string::npos)
    co_return ErrorResponse("VALIDATION_FAILED", "/ws/pty needs a WebSocket upgrade");
  std::string session = req.query.count("sessionId") ? req.query["sessionId"] : "";
  if (session.empty()) co_return ErrorResponse("VALIDATION_FAILED", "query parameter 'sessionId' is required");
  if (auto why = IdProblem("sessionId", session); !why.empty()) co_return ErrorResponse("VALIDATION_FAILED", why);
  bool bad = false;
  int cols = QueryInt(req, "cols", 80, 1, 1000, &bad);
  int rows = QueryInt(req, "rows", 24, 1, 1000, &bad);
  if (bad) co_return ErrorResponse("VALIDATION_FAILED", "cols and rows must be integers from 1 to 1000");
  agent::PtyAttachOp attach{session, cols, rows, std::nullopt};
  if (req.query.count("shell") && !req.query["shell"].empty()) attach.shell = req.query["shell"];
  Json op = agent::ToJson(attach);

  auto agent_r = co_await manager_->Agent(id, true, req.arrival);
  if (!agent_r.ok()) co_return ErrorResponse(agent_r.error());
  std::shared_ptr<AgentConnection> agent = std::move(*agent_r);
  HttpResponse res;
  res.websocket = [agent, op, session](WebSocket& ws) -> Task<void> {
    auto call_r = agent->Start(op);
    if (!call_r.ok()) {
      co_await ws.Write(ErrorText(call_r.error().message));
      co_return;
    }
    std::shared_ptr<AgentConnection::Call> call = std::move(*call_r);
    auto ex = co_await asio::this_coro::executor;
    bool pumping = true;
    AsyncSignal pumped(ex);
    asio::co_spawn(ex, [&]() -> Task<void> {
      co_await Pump(call, ws);
      pumping = false;
      pumped.Notify();
    }, asio::detached);
    // Client -> agent: keystrokes as Data frames; resize as its own op.
    for (;;) {
      auto msg = co_await ws.Read();
      if (!msg) break;
      if (msg->binary) {
        call->SendData(msg->data);
        continue;
      }
      Json ctl = JsonWithinLimits(msg->data) ? Json::parse(msg->data, nullptr, false) : Json();
      if (ctl.is_object() && ctl.value("type", "") == "resize" && ctl["cols"].is_number_integer() &&
          ctl["rows"].is_number_integer() && ctl["cols"] >= 1 && ctl["cols"] <= 1000 && ctl["rows"] >= 1 &&
          ctl["rows"] <= 1000) {
        const Json resize = agent::ToJson(agent::PtyResizeOp{session, ctl["cols"], ctl["rows"]});
        co_await Call(agent, resize);
        continue;
      }
      co_await ws.Write(ErrorText("Invalid control message"));
    }
    call->Cancel();  // detach: the PTY and its shell stay for the next client
    while (pumping) co_await pumped.Wait();
  };
  co_return res;
}

}  // namespace cove::api
