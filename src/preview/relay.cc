#include "preview/relay.h"

#include <sys/socket.h>

#include "base/log.h"
#include "http/forwarding.h"
#include "http/message_relay.h"

namespace cove::preview {
namespace {

constexpr size_t kMaxHead = 64 * 1024;
constexpr auto kClientIdle = std::chrono::seconds(120);
constexpr auto kUpstreamHead = std::chrono::seconds(600);  // long polls
constexpr auto kTunnelDrain = std::chrono::seconds(30);

using Clock = std::chrono::steady_clock;

}  // namespace

Relay::Relay(asio::any_io_executor ex, RelayHost* host, std::unique_ptr<io::ByteStream> client,
             std::string client_address, bool tls, io::ConnectionRegistry::Slot slot)
    : ex_(ex), host_(host), client_(std::move(client)), client_address_(std::move(client_address)), tls_(tls),
      changed_(ex), slot_(std::move(slot)) {
  slot_->SetCloser([fd = client_->socket().native_handle()] { ::shutdown(fd, SHUT_RDWR); });
}

void Relay::Close() {
  closed_ = true;
  slot_.reset();  // uncounted before the descriptor may be reused
  client_->Close();
  if (upstream_) upstream_->Close();
  changed_.Notify();
}

void Relay::DropUpstream() {
  if (upstream_) upstream_->Close();
  upstream_.reset();
  upstream_key_.clear();
  ubuf_.clear();
}

Task<void> Relay::RequestBody(std::shared_ptr<Relay> self, http::Framing framing) {
  http::BodyEnd end = co_await http::RelayBody(*self->client_, self->cbuf_, *self->upstream_, framing);
  self->body_ok_ = end == http::BodyEnd::kDone;
  self->body_done_ = true;
  self->changed_.Notify();
}

Task<void> Relay::SendSimple(int status, std::string_view reason, bool keep_alive) {
  std::string body = fmt::format("{} {}\n", status, reason);
  std::string text = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n"
      "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: {}\r\n\r\n{}",
      status, reason, body.size(), keep_alive ? "keep-alive" : "close", body);
  io::IoError ec;
  co_await client_->WriteAll(asio::buffer(text), ec);
}

Task<void> Relay::Run(std::shared_ptr<Relay> self) {
  for (;;) {
    std::string text;
    if (self->slot_) self->slot_->Idle();
    http::HeadStatus status =
        co_await http::ReadHead(*self->client_, self->cbuf_, Clock::now() + kClientIdle, kMaxHead, &text);
    if (self->slot_) self->slot_->Busy();
    if (self->closed_ || !self->slot_ || self->slot_->shed()) break;
    if (status == http::HeadStatus::kTooLarge) {
      co_await self->SendSimple(431, "Request Header Fields Too Large", false);
      break;
    }
    if (status != http::HeadStatus::kOk) break;
    auto request = http::ParseRequestHead(text);
    if (!request.ok() || request->Count("host") != 1) {
      co_await self->SendSimple(400, "Bad Request", false);
      break;
    }
    http::HttpHead head = std::move(*request);
    bool more = co_await self->Exchange(self, std::move(head));
    if (!more || self->closed_) break;
  }
  self->Close();
  self->host_->Unbind(self.get());
}

Task<bool> Relay::Exchange(std::shared_ptr<Relay> self, http::HttpHead req) {
  auto framing = http::RequestFraming(req);
  if (!framing.ok()) {
    co_await SendSimple(400, "Bad Request", false);
    co_return false;
  }
  std::string host = req.Get("host");
  auto target = host_->Resolve(host);
  bool client_keep = http::KeepAlive(req);
  if (!target) {
    // One answer for every reason, so that nothing about sandboxes, ports or tokens leaks.
    bool keep = client_keep && framing->kind == http::BodyKind::kNone;
    co_await SendSimple(404, "Not Found", keep);
    co_return keep;
  }
  bool upgrade = http::WantsUpgrade(req);
  std::string method = req.method;
  int client_minor = req.version_minor;
  http::PrepareRequest(req, upgrade, client_keep);
  for (const char* h : {"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "forwarded"}) req.Remove(h);
  req.Add("X-Forwarded-For", client_address_);
  req.Add("X-Forwarded-Host", host);
  req.Add("X-Forwarded-Proto", tls_ ? "https" : "http");
  std::string head_text = req.SerializeRequest();

  http::HttpHead resp;
  bool reused = upstream_ && upstream_key_ == target->Key();
  for (int attempt = 0;; ++attempt) {
    if (!upstream_ || upstream_key_ != target->Key()) {
      DropUpstream();
      if (!host_->Bind(self, *target)) {
        co_await SendSimple(503, "Service Unavailable", false);
        co_return false;
      }
      auto conn = co_await host_->Dial(*target);
      if (!conn.ok()) {
        log::Debug("preview: {}", conn.error().ToString());
        co_await SendSimple(502, "Bad Gateway", false);
        co_return false;
      }
      upstream_ = std::move(*conn);
      upstream_key_ = target->Key();
    }
    io::IoError ec;
    co_await upstream_->WriteAll(asio::buffer(head_text), ec);
    http::HeadStatus status = http::HeadStatus::kClosed;
    if (!ec) {
      if (framing->kind != http::BodyKind::kNone) {
        body_done_ = false;
        body_ok_ = false;
        asio::co_spawn(ex_, RequestBody(self, *framing), asio::detached);
      }
      bool interim = false;
      status = co_await http::ReadResponseHead(*upstream_, ubuf_, kUpstreamHead, kMaxHead, *client_, &resp, &interim);
      // Once an interim answer went to the client, the request is not sent again.
      if (interim) reused = false;
    }
    if (closed_) co_return false;
    if (status == http::HeadStatus::kOk) break;
    // A kept-alive upstream the server closed meanwhile: retry once on a fresh one.
    if (attempt == 0 && reused && framing->kind == http::BodyKind::kNone && status == http::HeadStatus::kClosed) {
      DropUpstream();
      continue;
    }
    co_await SendSimple(502, "Bad Gateway", false);
    co_return false;
  }

  io::IoError ec;
  if (resp.status == 101) {
    if (!upgrade || framing->kind != http::BodyKind::kNone || !http::PrepareSwitch(resp)) co_return false;
    std::string out = resp.SerializeResponse();
    co_await client_->WriteAll(asio::buffer(out), ec);
    if (ec) co_return false;
    co_await Tunnel(self);
    co_return false;
  }
  auto plan = http::PrepareResponse(resp, method, client_minor, client_keep);
  if (!plan.ok()) {
    co_await SendSimple(502, "Bad Gateway", false);
    co_return false;
  }
  std::string out = resp.SerializeResponse();
  co_await client_->WriteAll(asio::buffer(out), ec);
  if (ec) co_return false;
  http::BodyEnd end = plan->rechunk ? co_await http::RelayBodyAsChunked(*upstream_, ubuf_, *client_)
                                    : co_await http::RelayBody(*upstream_, ubuf_, *client_, plan->framing);
  if (end != http::BodyEnd::kDone || closed_) co_return false;
  // The server answered before reading the whole request body: this
  // connection cannot carry another request.
  if (!body_done_ || !body_ok_) co_return false;
  if (!plan->keep_upstream) DropUpstream();
  co_return plan->keep_client;
}

Task<void> Relay::Pump(std::shared_ptr<Relay> self, bool to_upstream) {
  io::ByteStream& from = to_upstream ? *self->client_ : *self->upstream_;
  io::ByteStream& to = to_upstream ? *self->upstream_ : *self->client_;
  std::string& pending = to_upstream ? self->cbuf_ : self->ubuf_;
  http::Framing raw;
  raw.kind = http::BodyKind::kUntilClose;
  http::BodyEnd end = co_await http::RelayBody(from, pending, to, raw);
  if (end == http::BodyEnd::kDone) to.ShutdownSend();
  else self->Close();
  --self->pumps_;
  self->changed_.Notify();
}

Task<void> Relay::Tunnel(std::shared_ptr<Relay> self) {
  pumps_ = 2;
  asio::co_spawn(ex_, Pump(self, true), asio::detached);
  asio::co_spawn(ex_, Pump(self, false), asio::detached);
  // Both directions end by EOF (half-closes are passed on) or an error (both close).
  while (pumps_ == 2 && !closed_) co_await changed_.Wait();
  auto deadline = Clock::now() + kTunnelDrain;
  while (pumps_ > 0 && !closed_)
    if (!co_await changed_.Wait(deadline)) break;
}

}  // namespace cove::preview
