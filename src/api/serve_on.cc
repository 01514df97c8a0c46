#include "api/serve_on.h"

#include <optional>

#include "io/shards.h"

namespace cove::api {
namespace {

// Owns `value` and destroys it on `ex`, whichever thread lets go last: what a
// handler leaves in its answer (agent calls, connections) belongs to its shard.
template <typename T>
std::shared_ptr<T> DestroyedOn(asio::any_io_executor ex, T value) {
  return std::shared_ptr<T>(new T(std::move(value)), [ex](T* p) { asio::post(ex, [p] { delete p; }); });
}

// Tells the handler's ClientLink (made by DestroyedOn(ex, ...)) on `ex`, when
// the connection's says the client went away, for as long as that one lives.
std::function<void()> TellThere(asio::any_io_executor ex, std::shared_ptr<ClientLink> there) {
  return [ex, there = std::move(there)] { asio::post(ex, [there] { there->SetGone(); }); };
}

// A BodyStream on the handler's executor, writing through the connection's.
class HopStream : public BodyStream {
 public:
  // On the connection's executor.
  HopStream(BodyStream& out, asio::any_io_executor conn, asio::any_io_executor ex)
      : out_(out), conn_(std::move(conn)), client_(DestroyedOn(ex, ClientLink())) {
    out_.OnClientGone(TellThere(ex, client_));
  }
  Task<bool> Write(std::string data) override { return io::RunOn(conn_, WriteThere(&out_, std::move(data))); }
  void OnClientGone(std::function<void()> fn) override { client_->OnGone(std::move(fn)); }
  void Abort(HttpResponse error) override { abort_ = std::move(error); }
  // On the connection's executor, once the stream function returned.
  void Finish() {
    if (abort_) out_.Abort(std::move(*abort_));
  }

 private:
  static Task<bool> WriteThere(BodyStream* out, std::string data) { co_return co_await out->Write(std::move(data)); }
  BodyStream& out_;
  asio::any_io_executor conn_;
  std::shared_ptr<ClientLink> client_;  // the handler's side of the client
  std::optional<HttpResponse> abort_;
};

// A WebSocket on the handler's executor, read and written on the connection's.
class HopWebSocket : public WebSocket {
 public:
  HopWebSocket(WebSocket& ws, asio::any_io_executor conn) : ws_(ws), conn_(std::move(conn)) {}
  Task<std::optional<Message>> Read() override { return io::RunOn(conn_, ReadThere(&ws_)); }
  Task<bool> Write(std::string data, bool binary) override {
    return io::RunOn(conn_, WriteThere(&ws_, std::move(data), binary));
  }
  Task<void> Close() override { return io::RunOn(conn_, CloseThere(&ws_)); }

 private:
  static Task<std::optional<Message>> ReadThere(WebSocket* ws) { co_return co_await ws->Read(); }
  static Task<bool> WriteThere(WebSocket* ws, std::string data, bool binary) {
    co_return co_await ws->Write(std::move(data), binary);
  }
  static Task<void> CloseThere(WebSocket* ws) { co_await ws->Close(); }
  WebSocket& ws_;
  asio::any_io_executor conn_;
};

Task<HttpResponse> HandleThere(const Handler* handler, HttpRequest* req) { co_return co_await (*handler)(*req); }

Task<void> StreamThere(const std::function<Task<void>(BodyStream&)>* fn, BodyStream* out) { co_await (*fn)(*out); }

Task<void> WebSocketThere(const std::function<Task<void>(WebSocket&)>* fn, WebSocket* ws) { co_await (*fn)(*ws); }

}  // namespace

Task<HttpResponse> ServeOn(asio::any_io_executor ex, HttpRequest& req, const Handler& handler) {
  asio::any_io_executor conn = co_await asio::this_coro::executor;
  if (ex == conn) co_return co_await handler(req);
  // The handler's side of the client, told when the connection's side is.
  auto conn_client = req.client;
  req.client = DestroyedOn(ex, ClientLink());
  conn_client->OnGone(TellThere(ex, req.client));
  HttpResponse res = co_await io::RunOn(ex, HandleThere(&handler, &req));
  req.client = conn_client;
  // The stream and WebSocket functions (and what they hold) run and die there.
  if (res.stream) {
    res.stream = [inner = DestroyedOn(ex, std::move(res.stream)), ex](BodyStream& out) -> Task<void> {
      asio::any_io_executor conn = co_await asio::this_coro::executor;
      HopStream hop(out, conn, ex);
      co_await io::RunOn(ex, StreamThere(inner.get(), &hop));
      hop.Finish();
    };
  }
  if (res.websocket) {
    res.websocket = [inner = DestroyedOn(ex, std::move(res.websocket)), ex](WebSocket& ws) -> Task<void> {
      asio::any_io_executor conn = co_await asio::this_coro::executor;
      HopWebSocket hop(ws, conn);
      co_await io::RunOn(ex, WebSocketThere(inner.get(), &hop));
    };
  }
  co_return res;
}

}  // namespace cove::api
