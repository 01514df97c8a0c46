#include "api/agent_reply.h"

#include "api/errors.h"
#include "base/time.h"
#include "base/utf8.h"

namespace cove::api {
namespace {

bool IsCode(const Json& v) {
  if (!v.is_string()) return false;
  const auto& s = v.get_ref<const std::string&>();
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!((c >= 'A' && c <= 'Z') || c == '_' || (c >= '0' && c <= '9'))) return false;
  return true;
}

}  // namespace

std::string StrOf(const Json& j, const char* key) { return std::string(StrView(j, key)); }

std::string_view StrView(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? std::string_view(it->get_ref<const std::string&>()) : std::string_view();
}

int64_t IntOf(const Json& j, const char* key, int64_t fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : fallback;
}

bool BoolOf(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

// An agent error reply ({"error": {...}}), checked: the agent is not trusted.
std::optional<Json> AgentError(const Json& reply) {
  auto it = reply.find("error");
  if (it == reply.end()) return std::nullopt;
  Json e = *it;
  std::string code = e.is_object() && IsCode(e["code"]) ? e["code"].get<std::string>() : "INTERNAL_ERROR";
  std::string message = e.is_object() ? StrOf(e, "message") : "";
  Json context = e.is_object() && e.contains("context") && e["context"].is_object() ? e["context"] : Json::object();
  return ErrorBody(code, message.empty() ? code : message, context);
}

HttpResponse AgentErrorResponse(const Json& envelope) {
  return JsonResponse(envelope, envelope["httpStatus"].get<int>());
}

std::string Sse(const Json& event) {
  return "data: " + event.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n\n";
}

std::string SseOutput(std::string_view type, std::string_view data,
                      std::initializer_list<std::pair<std::string_view, std::string_view>> more) {
  std::string sse;
  sse.reserve(data.size() + data.size() / 8 + 64);
  auto field = [&](std::string_view key, std::string_view value) {
    sse += sse.empty() ? "data: {\"" : ",\"";
    sse += key;
    sse += "\":\"";
    AppendJsonUtf8(value, &sse);
    sse += '"';
  };
  field("type", type);
  field("data", data);
  for (const auto& [key, value] : more) field(key, value);
  sse += "}\n\n";
  return sse;
}

HttpResponse SseResponse(std::function<Task<void>(BodyStream&)> body) {
  HttpResponse res;
  res.content_type = "text/event-stream";
  res.headers = {{"Cache-Control", "no-cache"}};
  res.stream = std::move(body);
  return res;
}

Json Success(Json j) {
  j["success"] = true;
  j["timestamp"] = IsoNow();
  return j;
}

Error MalformedAnswer(const Error& parse_error) {
  return MakeError(ErrorCode::kInternal, "the sandbox's agent answered malformed: " + parse_error.message);
}

Task<Result<Json>> Call(const std::shared_ptr<AgentConnection>& agent, const Json& op,
                        const std::optional<std::string>& data) {
  std::optional<std::string_view> bytes;
  if (data) bytes = *data;
  auto got = co_await Collect(agent, op, CollectOptions{}, bytes);
  if (!got.ok()) co_return std::move(got).error();
  Json& b = got->reply;
  if (!got->files.empty()) {
    if (auto rest = b.find("files"); rest != b.end() && rest->is_array())
      for (auto& f : *rest) got->files.push_back(std::move(f));
    b["files"] = std::move(got->files);
  }
  for (int i = 0; i < 2; ++i) {
    const char* key = i == 0 ? "stdout" : "stderr";
    if (!got->output[i].empty()) b[key] = got->output[i] + StrOf(b, key);
  }
  co_return std::move(b);
}

void CancelOnHangUp(const HttpRequest& req, const std::shared_ptr<AgentConnection::Call>& call) {
  req.client->OnGone([weak = std::weak_ptr<AgentConnection::Call>(call)] {
    if (auto c = weak.lock()) c->Cancel();
  });
}

Task<void> RelayToSse(std::shared_ptr<AgentConnection::Call> call, BodyStream& out, const SseMapping& map) {
  out.OnClientGone([call] { call->Cancel(); });
  std::string ev = map.opening;
  bool last = false;
  while (!last) {
    // Messages that arrived while the last write was under way go out
    // together, in one write: one chunk, one send and one wake-up of the
    // client for all of them.
    while (!last && (ev.empty() || (call->ready() && ev.size() < kSseCoalesceBytes))) {
      auto deadline = map.per_message_timeout ? Clock::now() + *map.per_message_timeout : Clock::time_point::max();
      auto m = co_await call->Next(deadline);
      ev += !m.ok() ? map.error(m.error().message) : m->final ? map.final(m->body) : map.event(m->body);
      last = !m.ok() || m->final;
    }
    if (!ev.empty() && !co_await out.Write(std::move(ev))) co_return;
    ev.clear();
  }
}

Task<void> StartAndRelay(std::shared_ptr<AgentConnection> agent, Json op, BodyStream& out, const SseMapping& map) {
  auto call = agent->Start(op);
  if (!call.ok()) {
    co_await out.Write(map.error(call.error().message));
    co_return;
  }
  co_await RelayToSse(std::move(*call), out, map);
}

}  // namespace cove::api
