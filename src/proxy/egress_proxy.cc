// The egress proxy (egress_proxy.h): its two listeners, the attribution of
// each accepted connection to a sandbox, the TLS contexts of interception,
// and Stop(). What happens on a connection is egress_connection.h.
#include "proxy/egress_proxy.h"

#include <unistd.h>

#include <vector>

#include "base/log.h"
#include "io/move_socket.h"
#include "proxy/asio_address.h"
#include "proxy/egress_connection.h"

namespace cove::proxy {
namespace {

using egress::EgressConnection;
using egress::ProxyState;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
namespace ssl = asio::ssl;

// A connection accepted on either listener (at home): attributed to a
// sandbox by its source address (others are closed without an answer),
// counted under it, and served on the next shard; over the caps it is closed
// and the sandbox's denial reported.
void Accept(const std::shared_ptr<ProxyState>& state, tcp::socket socket, bool transparent) {
  if (state->stopped) return;
  error_code ec;
  tcp::endpoint peer = socket.remote_endpoint(ec);
  if (ec) return;
  IpAddress source = FromAsioAddress(peer.address());
  auto sandbox = state->lookup(source);
  if (!sandbox || !sandbox->policy) return;  // unknown source: closed, no answer
  ServingShard shard = state->NextShard();
  socket = io::MoveSocket(std::move(socket), shard.executor, ec);
  if (ec) return;
  auto connection = std::make_shared<EgressConnection>(state, std::move(socket), transparent, source,
                                                       std::move(*sandbox), std::move(shard.resolver));
  if (!connection->Admit()) {
    Denial denial;
    denial.sandbox_id = connection->sandbox_id();
    denial.reason = fmt::format("too many connections ({} open from this sandbox, {} in all)",
                                state->registry->count(denial.sandbox_id), state->registry->size());
    state->Report(denial);
    return;  // the connection closes
  }
  {
    std::lock_guard lock(state->live_mu);
    state->live[connection.get()] = connection;
  }
  asio::co_spawn(shard.executor, EgressConnection::Run(connection), asio::detached);
}

Status OpenListener(ProxyState& state, const asio::ip::address& address, uint16_t port, bool transparent) {
  error_code ec;
  auto listener = io::Listener::Open(state.io.get_executor(), tcp::endpoint(address, port),
                                     transparent ? "egress proxy (transparent)" : "egress proxy (explicit)",
                                     state.registry, ec);
  if (ec) {
    return Error{ErrorCode::kUnavailable, ec.value(),
                 "egress proxy: cannot listen on " + address.to_string() + ":" + std::to_string(port), {}};
  }
  (transparent ? state.transparent_listener : state.explicit_listener) = std::move(listener);
  return OkStatus();
}

// The TLS contexts of interception: towards sandboxes (TLS 1.2+, the leaf is
// set per connection) and towards upstreams (verifying against the system's
// trust store and the operator's extra CA file).
Status SetUpInterception(ProxyState& state) {
  error_code ec;
  state.server_tls = std::make_unique<ssl::context>(ssl::context::tls_server);
  state.server_tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                                ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  state.client_tls = std::make_unique<ssl::context>(ssl::context::tls_client);
  state.client_tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                                ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  state.client_tls->set_default_verify_paths(ec);
  state.client_tls->add_verify_path("/etc/ssl/certs", ec);  // hashed directory (Debian); missing is fine
  if (::access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0)
    state.client_tls->load_verify_file("/etc/ssl/certs/ca-certificates.crt", ec);
  const std::string& extra = state.options.upstream_ca_file;
  if (!extra.empty()) {
    state.client_tls->load_verify_file(extra, ec);
    if (ec) return MakeError(ErrorCode::kInvalidArgument, "egress proxy: cannot load the upstream CA file " + extra + ": " + ec.message());
  }
  state.client_tls->set_verify_mode(ssl::verify_peer);
  return OkStatus();
}

class EgressProxyImpl : public EgressProxy {
 public:
  explicit EgressProxyImpl(std::shared_ptr<ProxyState> state) : state_(std::move(state)) {}
  ~EgressProxyImpl() override { Stop(); }

  uint16_t explicit_port() const override { return explicit_port_; }
  uint16_t transparent_port() const override { return transparent_port_; }

  void Stop() override {
    if (state_->stopped) return;
    state_->stopped = true;
    if (state_->explicit_listener) state_->explicit_listener->Close();
    if (state_->transparent_listener) state_->transparent_listener->Close();
    std::vector<std::shared_ptr<EgressConnection>> open;
    {
      std::lock_guard lock(state_->live_mu);
      for (auto& [raw, weak] : state_->live) {
        if (auto connection = weak.lock()) open.push_back(std::move(connection));
      }
    }
    // Each closes on its own shard (in place when that is this thread).
    for (auto& connection : open) {
      auto ex = connection->executor();
      asio::dispatch(ex, [connection = std::move(connection)] { connection->Close(); });
    }
  }

  Status Listen() {
    error_code ec;
    auto address = asio::ip::make_address(state_->options.bind_address, ec);
    if (ec) return MakeError(ErrorCode::kInvalidArgument, "egress proxy: bad bind address " + state_->options.bind_address);
    COVE_TRY(OpenListener(*state_, address, state_->options.explicit_port, false));
    COVE_TRY(OpenListener(*state_, address, state_->options.transparent_port, true));
    explicit_port_ = state_->explicit_listener->local_endpoint().port();
    transparent_port_ = state_->transparent_listener->local_endpoint().port();
    if (explicit_port_ == 0 || transparent_port_ == 0)
      return MakeError(ErrorCode::kInternal, "egress proxy: cannot read the listening ports");
    std::weak_ptr<ProxyState> weak = state_;
    for (bool transparent : {false, true}) {
      auto& listener = transparent ? state_->transparent_listener : state_->explicit_listener;
      listener->Start([weak, transparent](tcp::socket socket) {
        if (auto state = weak.lock()) Accept(state, std::move(socket), transparent);
      });
    }
    return OkStatus();
  }

 private:
  std::shared_ptr<ProxyState> state_;
  uint16_t explicit_port_ = 0;
  uint16_t transparent_port_ = 0;
};

}  // namespace

Result<std::unique_ptr<EgressProxy>> EgressProxy::Start(asio::io_context& io, EgressProxyOptions options,
                                                        std::shared_ptr<Resolver> resolver, SandboxLookup lookup,
                                                        DenialSink denials) {
  if (!resolver || !lookup) return MakeError(ErrorCode::kInvalidArgument, "egress proxy: resolver and lookup required");
  for (const auto& shard : options.shards)
    if (!shard.executor || !shard.resolver)
      return MakeError(ErrorCode::kInvalidArgument, "egress proxy: each shard needs an executor and a resolver");
  auto state = std::make_shared<ProxyState>(io, std::move(options), std::move(resolver), std::move(lookup),
                                            std::move(denials));
  if (state->options.ca) COVE_TRY(SetUpInterception(*state));
  auto proxy = std::make_unique<EgressProxyImpl>(state);
  COVE_TRY(proxy->Listen());
  return std::unique_ptr<EgressProxy>(std::move(proxy));
}

}  // namespace cove::proxy
