#include "api/ws_transport.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <optional>

#include "api/errors.h"
#include "api/target.h"
#include "base/json_limits.h"
#include "base/json_parse.h"
#include "base/utf8.h"
#include "io/async_signal.h"

namespace cove::api {
namespace {

using Json = nlohmann::json;

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string ErrorFrame(const Json& id, const char* code, const std::string& message) {
  Json f = {{"type", "error"}, {"code", code}, {"message", message}, {"status", 400}};
  if (!id.is_null()) f["id"] = id;
  return Dump(f);
}

// The last frame of a request. A JSON body (coved's own answer, valid JSON
// by construction) is spliced in as it is, not parsed and printed again.
std::string ResponseFrame(const Json& id, int status, const std::string& body, bool json_body) {
  std::string f = "{\"type\":\"response\",\"id\":" + Dump(id) + ",\"status\":" + std::to_string(status) +
                  ",\"done\":true";
  if (!body.empty()) {
    f += ",\"body\":";
    if (json_body) {
      f += body;
    } else {
      f += '"';
      AppendJsonUtf8(body, &f);
      f += '"';
    }
  }
  f += '}';
  return f;
}

// One SSE event's payload as a stream frame.
std::string StreamFrame(const std::string& id_json, std::string_view data) {
  std::string f = "{\"type\":\"stream\",\"id\":" + id_json + ",\"data\":\"";
  f.reserve(f.size() + data.size() + data.size() / 8 + 4);
  AppendJsonUtf8(data, &f);
  f += "\"}";
  return f;
}

// A request id as a key: its JSON text, so that 1 and "1" are different requests.
std::string KeyOf(const Json& id) { return id.dump(); }

// What the requests of one socket share; it outlives them all.
struct Mux {
  explicit Mux(WebSocket& w, asio::any_io_executor ex) : ws(w), finished(ex) {}
  WebSocket& ws;
  // The clients of the requests in flight, by id (KeyOf): a cancel frame, or
  // the socket closing, is that client going away. An id leaves before its
  // last frame is written, so the client may reuse it once it has that frame.
  std::map<std::string, std::shared_ptr<ClientLink>> requests;
  int inflight = 0;  // requests not yet answered in full, their last frame included
  AsyncSignal finished;
};

// A streamed body over the socket: an SSE body becomes stream frames (each
// "data:" payload one frame); any other (a large JSON answer) is collected and
// sent as the response frame's body.
class FrameStream : public BodyStream {
 public:
  FrameStream(std::shared_ptr<Mux> mux, std::shared_ptr<ClientLink> client, Json id, bool sse)
      : mux_(std::move(mux)), client_(std::move(client)), id_(std::move(id)), id_json_(Dump(id_)), sse_(sse) {}
  Task<bool> Write(std::string chunk) override {
    pending_ += chunk;
    if (!sse_) co_return true;
    size_t start = 0, end;
    while ((end = pending_.find("\n\n", start)) != std::string::npos) {
      std::string_view event(pending_.data() + start, end - start);
      start = end + 2;
      if (event.rfind("data: ", 0) != 0) continue;
      std::string frame = StreamFrame(id_json_, event.substr(6));
      if (!co_await mux_->ws.Write(std::move(frame))) co_return false;
    }
    pending_.erase(0, start);
    co_return true;
  }
  // The request's client: gone once a cancel frame came (maybe before the
  // stream started) or the socket closed.
  void OnClientGone(std::function<void()> fn) override { client_->OnGone(std::move(fn)); }
  void Abort(HttpResponse error) override { error_ = std::move(error); }
  // The frame that ends the request.
  std::string Last(const HttpResponse& res) {
    if (error_) return ResponseFrame(id_, error_->status, error_->body, true);
    if (sse_) return ResponseFrame(id_, res.status, "", false);
    return ResponseFrame(id_, res.status, pending_, res.content_type.rfind("application/json", 0) == 0);
  }

 private:
  std::shared_ptr<Mux> mux_;
  std::shared_ptr<ClientLink> client_;
  Json id_;
  std::string id_json_;
  bool sse_;
  std::string pending_;  // SSE: an incomplete event; else the body so far
  std::optional<HttpResponse> error_;
};

Task<void> ServeOne(std::shared_ptr<Mux> mux, std::function<Task<HttpResponse>(HttpRequest&)> handle,
                    HttpRequest sub, Json id) {
  HttpResponse res = co_await handle(sub);
  std::string last;
  if (res.stream) {
    FrameStream body(mux, sub.client, id, res.content_type.rfind("text/event-stream", 0) == 0);
    co_await res.stream(body);
    last = body.Last(res);
  } else {
    bool json = res.content_type.rfind("application/json", 0) == 0;
    last = ResponseFrame(id, res.status, res.body, json);
  }
  mux->requests.erase(KeyOf(id));
  co_await mux->ws.Write(std::move(last));
  if (--mux->inflight == 0) mux->finished.Notify();
}

}  // namespace

Task<void> ServeControlSocket(WebSocket& ws, std::function<Task<HttpResponse>(HttpRequest&)> handle,
                              std::string prefix, std::string authorization) {
  auto ex = co_await asio::this_coro::executor;
  auto mux = std::make_shared<Mux>(ws, ex);
  for (;;) {
    auto msg = co_await ws.Read();
    if (!msg) break;
    Json frame;
    if (!msg->binary)
      if (auto parsed = ParseJson(msg->data, kMaxJsonDepth)) frame = std::move(*parsed);
    if (!frame.is_object()) {
      std::string err = ErrorFrame(nullptr, "PARSE_ERROR", "frames must be JSON objects");
      co_await ws.Write(std::move(err));
      continue;
    }
    Json id = frame.contains("id") && (frame["id"].is_string() || frame["id"].is_number()) ? frame["id"] : Json();
    std::string type = frame.value("type", "");
    if (type == "cancel") {
      if (auto it = mux->requests.find(KeyOf(id)); it != mux->requests.end()) it->second->SetGone();
      continue;
    }
    const Json& method = frame.contains("method") ? frame["method"] : Json();
    const Json& path = frame.contains("path") ? frame["path"] : Json();
    if (type != "request" || id.is_null() || !method.is_string() || !path.is_string() ||
        path.get_ref<const std::string&>().rfind('/', 0) != 0) {
      std::string err = ErrorFrame(id, "INVALID_REQUEST", "a request needs type, id, method and a path starting with '/'");
      co_await ws.Write(std::move(err));
      continue;
    }
    if (mux->requests.count(KeyOf(id))) {
      std::string err = ErrorFrame(id, "INVALID_REQUEST", "a request with this id is still in flight");
      co_await ws.Write(std::move(err));
      continue;
    }
    if (mux->inflight >= kMaxRequestsInFlight) {
      HttpResponse busy = ErrorResponse("TOO_MANY_REQUESTS", fmt::format("this socket has {} requests in flight, the most "
                                                                         "it may have; wait for one to end", mux->inflight));
      std::string frame = ResponseFrame(id, busy.status, busy.body, true);
      co_await ws.Write(std::move(frame));
      continue;
    }
    HttpRequest sub;
    sub.method = method.get<std::string>();
    sub.target = prefix + path.get<std::string>();
    SplitTarget(sub.target, &sub.path, &sub.query);
    if (auto h = frame.find("headers"); h != frame.end() && h->is_object())
      for (auto it = h->begin(); it != h->end(); ++it)
        if (it.value().is_string()) {
          std::string name = it.key();
          for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          sub.headers[name] = it.value().get<std::string>();
        }
    sub.headers["authorization"] = authorization;
    if (auto b = frame.find("body"); b != frame.end() && !b->is_null()) sub.json_body = std::move(*b);
    ++mux->inflight;
    mux->requests[KeyOf(id)] = sub.client;  // streamed answers listen on it too (FrameStream::OnClientGone)
    asio::co_spawn(ex, ServeOne(mux, handle, std::move(sub), id), asio::detached);
  }
  // The socket is gone: stop the streams still running and wait for them.
  auto requests = std::move(mux->requests);
  for (auto& [_, client] : requests) client->SetGone();
  while (mux->inflight > 0) co_await mux->finished.Wait();
}

}  // namespace cove::api
