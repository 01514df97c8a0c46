#include "preview/preview_server.h"

#include <openssl/crypto.h>

#include <boost/asio/ssl.hpp>
#include <sys/socket.h>

#include <map>
#include <mutex>

#include "base/log.h"
#include "base/log_throttle.h"
#include "io/listener.h"
#include "io/move_socket.h"
#include "io/refuse.h"
#include "preview/host_route.h"
#include "preview/relay.h"
#include "preview/sandbox_dialer.h"
#include "io/deadline.h"

namespace cove::preview {

using tcp = asio::ip::tcp;
namespace {

constexpr auto kTlsHandshakeTimeout = std::chrono::seconds(10);
constexpr auto kRefusalLogInterval = std::chrono::seconds(10);

}  // namespace

struct PreviewServer::Impl : RelayHost, std::enable_shared_from_this<Impl> {
  Impl(asio::any_io_executor ex, PreviewOptions o, Lookup l)
      : ex(ex), options(std::move(o)), lookup(std::move(l)),
        registry(std::make_shared<io::ConnectionRegistry>(
            io::ConnectionLimits{options.max_connections, options.max_connections_per_address})),
        dialer(ex, options.plan, [this](const std::string& id) { CloseSandbox(id, std::nullopt); }),
        refusals_log(kRefusalLogInterval) {}

  std::optional<Target> Resolve(const std::string& host) override {
    auto route = ParseHost(host, options.domain);
    if (!route) return std::nullopt;
    auto record = lookup(route->sandbox_id);
    if (!record || record->state != SandboxState::kRunning) return std::nullopt;
    for (const auto& e : record->ports) {
      if (e.port != route->port || e.token.size() != route->token.size()) continue;
      if (CRYPTO_memcmp(e.token.data(), route->token.data(), e.token.size()) != 0) return std::nullopt;
      Target t;
      t.record = std::move(record);
      t.port = route->port;
      return t;
    }
    return std::nullopt;
  }

  Task<Result<std::unique_ptr<io::ByteStream>>> Dial(Target target) override {
    auto r = co_await dialer.Connect(*target.record, target.port);
    co_return r;
  }

  bool Bind(const std::shared_ptr<Relay>& relay, const Target& target) override {
    std::lock_guard lock(mu);
    UnbindLocked(relay.get());
    auto& group = by_sandbox[target.record->id];
    if (group.size() >= options.max_connections_per_sandbox) {
      if (group.empty()) by_sandbox.erase(target.record->id);
      return false;
    }
    group[relay.get()] = relay;
    relay->bound_id = target.record->id;
    relay->bound_port = target.port;
    return true;
  }

  void Unbind(Relay* relay) override {
    std::lock_guard lock(mu);
    UnbindLocked(relay);
  }

  void UnbindLocked(Relay* relay) {
    if (relay->bound_id.empty()) return;
    auto it = by_sandbox.find(relay->bound_id);
    if (it != by_sandbox.end()) {
      it->second.erase(relay);
      if (it->second.empty()) by_sandbox.erase(it);
    }
    relay->bound_id.clear();
    relay->bound_port = 0;
  }

  // Closes the relays of a sandbox (of one port, when given), each on its
  // own thread (any thread may call this).
  void CloseSandbox(const std::string& id, std::optional<uint16_t> port) {
    std::vector<std::shared_ptr<Relay>> victims;
    {
      std::lock_guard lock(mu);
      auto it = by_sandbox.find(id);
      if (it == by_sandbox.end()) return;
      for (auto& [raw, weak] : it->second)
        if (auto r = weak.lock(); r && (!port || r->bound_port == *port)) victims.push_back(std::move(r));
    }
    for (auto& r : victims) {
      auto ex = r->executor();
      asio::dispatch(ex, [r = std::move(r)] { r->Close(); });
    }
  }

  // Over a cap with nothing idle to close: 503 (plain HTTP) and close, without waiting.
  void RefuseConnection(tcp::socket& socket, const std::string& address) {
    if (auto held = refusals_log.Pass())
      log::Warn("preview: refused a connection from {} ({} open from it, {} in all); {} more refused since the last "
                "such line", address, registry->count(address), registry->size(), *held);
    std::string_view answer =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\n"
        "Cache-Control: no-store\r\nRetry-After: 1\r\nConnection: close\r\n\r\n503 Service Unavailable\n";
    io::Refuse(socket, tls_context ? std::string_view() : answer);
  }

  // At home: counts the connection (or refuses it) and hands it to the
  // thread that serves it. Idle until its first request head is read (the
  // TLS handshake included); a shed shuts the socket down from any thread.
  void Accept(std::shared_ptr<Impl> self, tcp::socket socket) {
    boost::system::error_code ec;
    auto remote = socket.remote_endpoint(ec);
    std::string address = ec ? "unknown" : remote.address().to_string();
    asio::any_io_executor there = options.connection_executor ? options.connection_executor() : ex;
    socket = io::MoveSocket(std::move(socket), there, ec);
    if (ec) return;
    auto slot = registry->Admit(address, [fd = socket.native_handle()] { ::shutdown(fd, SHUT_RDWR); });
    if (!slot) {
      RefuseConnection(socket, address);
      return;
    }
    asio::co_spawn(there, Serve(std::move(self), std::move(socket), std::move(address), std::move(*slot)),
                   asio::detached);
  }

  static Task<void> Serve(std::shared_ptr<Impl> self, tcp::socket socket, std::string address,
                          io::ConnectionRegistry::Slot admitted) {
    boost::system::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    auto ex = socket.get_executor();
    std::unique_ptr<io::ByteStream> stream =
        self->tls_context ? io::MakeTlsStream(std::move(socket), *self->tls_context) : io::MakeTcpStream(std::move(socket));
    // Declared after the stream: uncounted before its descriptor closes.
    std::optional<io::ConnectionRegistry::Slot> slot(std::move(admitted));
    if (self->tls_context) {
      {
        io::Deadline guard(stream->socket(), std::chrono::steady_clock::now() + kTlsHandshakeTimeout);
        co_await io::TlsHandshake(*stream, ec);
      }
      if (ec || slot->shed()) co_return;
    }
    auto relay = std::make_shared<Relay>(ex, self.get(), std::move(stream), address, self->tls_context != nullptr,
                                         std::move(*slot));
    co_await Relay::Run(relay);
  }

  asio::any_io_executor ex;
  PreviewOptions options;
  Lookup lookup;
  std::shared_ptr<io::ConnectionRegistry> registry;
  std::shared_ptr<io::Listener> listener;
  SandboxDialer dialer;
  std::shared_ptr<asio::ssl::context> tls_context;
  std::mutex mu;  // guards by_sandbox and the relays' bound_id/bound_port
  std::map<std::string, std::map<Relay*, std::weak_ptr<Relay>>> by_sandbox;
  LogThrottle refusals_log;
};

PreviewServer::PreviewServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

PreviewServer::~PreviewServer() { impl_->listener->Close(); }

Result<std::unique_ptr<PreviewServer>> PreviewServer::Listen(asio::any_io_executor ex, PreviewOptions options,
                                                             Lookup lookup) {
  auto impl = std::make_shared<Impl>(ex, std::move(options), std::move(lookup));
  const auto& o = impl->options;
  if (o.tls_cert_file.empty() != o.tls_key_file.empty())
    return MakeError(ErrorCode::kInvalidArgument, "--preview-tls-cert and --preview-tls-key go together");
  if (!o.tls_cert_file.empty()) {
    COVE_ASSIGN_OR_RETURN(impl->tls_context, io::MakeTlsContext(o.tls_cert_file, o.tls_key_file));
  }
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(o.listen_host, ec);
  if (ec) return MakeError(ErrorCode::kInvalidArgument, "bad preview listen address " + o.listen_host);
  impl->listener = io::Listener::Open(ex, tcp::endpoint(addr, o.listen_port), "preview", impl->registry, ec);
  if (ec) return SysError(fmt::format("preview listener on {}:{}", o.listen_host, o.listen_port), ec.value());
  return std::unique_ptr<PreviewServer>(new PreviewServer(std::move(impl)));
}

void PreviewServer::Start() {
  std::weak_ptr<Impl> weak = impl_;
  impl_->listener->Start([weak](tcp::socket socket) {
    if (auto self = weak.lock()) self->Accept(self, std::move(socket));
  });
}

uint16_t PreviewServer::port() const { return impl_->listener->local_endpoint().port(); }

bool PreviewServer::tls() const { return impl_->tls_context != nullptr; }

const std::string& PreviewServer::domain() const { return impl_->options.domain; }

void PreviewServer::Unexposed(const std::string& id, uint16_t port) { impl_->CloseSandbox(id, port); }

}  // namespace cove::preview
