#include "preview/preview_server.h"

#include <openssl/crypto.h>

#include <boost/asio/ssl.hpp>
#include <map>

#include "base/log.h"
#include "base/scope_exit.h"
#include "preview/host_route.h"
#include "preview/relay.h"
#include "preview/sandbox_dialer.h"
#include "proxy/cancel_at.h"

namespace cove::preview {
namespace {

constexpr auto kTlsHandshakeTimeout = std::chrono::seconds(10);

}  // namespace

struct PreviewServer::Impl : RelayHost, std::enable_shared_from_this<Impl> {
  Impl(asio::any_io_executor ex, PreviewOptions o, Lookup l)
      : ex(ex), options(std::move(o)), lookup(std::move(l)), acceptor(ex),
        dialer(ex, options.plan, [this](const std::string& id) { CloseSandbox(id, std::nullopt); }) {}

  std::optional<Target> Resolve(const std::string& host) override {
    auto route = ParseHost(host, options.domain);
    if (!route) return std::nullopt;
    auto record = lookup(route->sandbox_id);
    if (!record || record->state != SandboxState::kRunning) return std::nullopt;
    for (const auto& e : record->ports) {
      if (e.port != route->port || e.token.size() != route->token.size()) continue;
      if (CRYPTO_memcmp(e.token.data(), route->token.data(), e.token.size()) != 0) return std::nullopt;
      Target t;
      t.record = std::move(*record);
      t.port = route->port;
      return t;
    }
    return std::nullopt;
  }

  Task<Result<std::unique_ptr<ByteStream>>> Dial(Target target) override {
    auto r = co_await dialer.Connect(target.record, target.port);
    co_return r;
  }

  bool Bind(const std::shared_ptr<Relay>& relay, const Target& target) override {
    Unbind(relay.get());
    auto& group = by_sandbox[target.record.id];
    if (group.size() >= options.max_connections_per_sandbox) {
      if (group.empty()) by_sandbox.erase(target.record.id);
      return false;
    }
    group[relay.get()] = relay;
    relay->bound_id = target.record.id;
    relay->bound_port = target.port;
    return true;
  }

  void Unbind(Relay* relay) override {
    if (relay->bound_id.empty()) return;
    auto it = by_sandbox.find(relay->bound_id);
    if (it != by_sandbox.end()) {
      it->second.erase(relay);
      if (it->second.empty()) by_sandbox.erase(it);
    }
    relay->bound_id.clear();
    relay->bound_port = 0;
  }

  // Closes the relays of a sandbox (of one port, when given).
  void CloseSandbox(const std::string& id, std::optional<uint16_t> port) {
    auto it = by_sandbox.find(id);
    if (it == by_sandbox.end()) return;
    std::vector<std::shared_ptr<Relay>> victims;
    for (auto& [raw, weak] : it->second)
      if (auto r = weak.lock(); r && (!port || r->bound_port == *port)) victims.push_back(std::move(r));
    for (auto& r : victims) r->Close();
  }

  static Task<void> AcceptLoop(std::shared_ptr<Impl> self) {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket socket = co_await self->acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) co_return;
        log::Warn("preview: accept failed: {}", ec.message());
        continue;
      }
      if (self->active >= self->options.max_connections) continue;  // the socket closes
      socket.set_option(tcp::no_delay(true), ec);
      asio::co_spawn(self->ex, Serve(self, std::move(socket)), asio::detached);
    }
  }

  static Task<void> Serve(std::shared_ptr<Impl> self, tcp::socket socket) {
    ++self->active;
    ScopeExit done([&self] { --self->active; });
    boost::system::error_code ec;
    auto remote = socket.remote_endpoint(ec);
    std::string address = ec ? "unknown" : remote.address().to_string();
    std::unique_ptr<ByteStream> stream;
    if (self->tls_context) {
      stream = MakeTlsStream(std::move(socket), *self->tls_context);
      {
        proxy::CancelAt guard(stream->socket(), std::chrono::steady_clock::now() + kTlsHandshakeTimeout);
        co_await TlsHandshake(*stream, ec);
      }
      if (ec) co_return;
    } else {
      stream = MakeTcpStream(std::move(socket));
    }
    auto relay = std::make_shared<Relay>(self->ex, self.get(), std::move(stream), address, self->tls_context != nullptr);
    co_await Relay::Run(relay);
  }

  asio::any_io_executor ex;
  PreviewOptions options;
  Lookup lookup;
  tcp::acceptor acceptor;
  SandboxDialer dialer;
  std::shared_ptr<asio::ssl::context> tls_context;
  std::map<std::string, std::map<Relay*, std::weak_ptr<Relay>>> by_sandbox;
  size_t active = 0;
};

PreviewServer::PreviewServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

PreviewServer::~PreviewServer() {
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
}

Result<std::unique_ptr<PreviewServer>> PreviewServer::Listen(asio::any_io_executor ex, PreviewOptions options,
                                                             Lookup lookup) {
  auto impl = std::make_shared<Impl>(ex, std::move(options), std::move(lookup));
  const auto& o = impl->options;
  if (o.tls_cert_file.empty() != o.tls_key_file.empty())
    return MakeError(ErrorCode::kInvalidArgument, "--preview-tls-cert and --preview-tls-key go together");
  if (!o.tls_cert_file.empty()) {
    COVE_ASSIGN_OR_RETURN(impl->tls_context, MakeTlsContext(o.tls_cert_file, o.tls_key_file));
  }
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(o.listen_host, ec);
  if (ec) return MakeError(ErrorCode::kInvalidArgument, "bad preview listen address " + o.listen_host);
  ec = OpenListening(impl->acceptor, tcp::endpoint(addr, o.listen_port));
  if (ec) return SysError(fmt::format("preview listener on {}:{}", o.listen_host, o.listen_port), ec.value());
  return std::unique_ptr<PreviewServer>(new PreviewServer(std::move(impl)));
}

void PreviewServer::Start() { asio::co_spawn(impl_->ex, Impl::AcceptLoop(impl_), asio::detached); }

uint16_t PreviewServer::port() const {
  boost::system::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

bool PreviewServer::tls() const { return impl_->tls_context != nullptr; }

const std::string& PreviewServer::domain() const { return impl_->options.domain; }

void PreviewServer::Unexposed(const std::string& id, uint16_t port) { impl_->CloseSandbox(id, port); }

}  // namespace cove::preview
