// The egress proxy's connections (egress_proxy.h), shared by its files and
// nobody else. Every accepted socket is one EgressConnection: a front end per
// protocol turns it into a destination (front_end_http.cc: explicit proxy
// requests, plain HTTP on the transparent port 80 and the requests inside an
// intercepted TLS connection; front_end_connect.cc: CONNECT;
// front_end_transparent.cc: transparent TLS by its SNI and raw TCP by its
// original destination), and the chain behind them decides (DecideEgress,
// egress_decision.h), connects (egress_upstream.cc), intercepts TLS or
// tunnels (egress_connection.cc, tunnels of plain sockets with splice(2)), and
// injects secrets into the requests it sees (header_injection.h).
//
// A connection is owned by shared_ptrs held by its coroutines; Stop() and the
// idle deadline (io::Deadline, pushed on by every bit of progress) close both
// sockets, which ends every pending operation. A connection is accepted and
// counted at home, then runs on one shard (EgressProxyOptions::shards) from
// its first coroutine to its end: its members need no lock. What the
// connections of every shard share (ProxyState) is immutable after Start,
// or thread-safe: the registry, the live set (a mutex), `stopped` (atomic),
// the lookup, the sink, the CA, the secrets and the TLS contexts (an
// SSL_CTX makes SSL objects on any thread once set up).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/ssl.hpp>

#include "http/http_head.h"
#include "io/connection_registry.h"
#include "io/deadline.h"
#include "io/listener.h"
#include "proxy/egress_proxy.h"
#include "proxy/hop_stream.h"
#include "proxy/http_target.h"
#include "proxy/original_dst.h"
#include "proxy/tls_client_hello.h"

namespace cove::proxy::egress {

namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

constexpr size_t kRelayChunk = 64 << 10;
constexpr char kVia[] = "1.1 cove-egress";

// What the proxy shares with its connections.
class EgressConnection;
struct ProxyState {
  asio::io_context& io;  // home: the listeners
  EgressProxyOptions options;
  std::shared_ptr<Resolver> resolver;  // home's (no options.shards)
  EgressProxy::SandboxLookup lookup;
  EgressProxy::DenialSink denials;
  // Both listeners' connections, counted per sandbox; idle (before a
  // request head) ones make room.
  std::shared_ptr<io::ConnectionRegistry> registry;
  std::shared_ptr<io::Listener> explicit_listener;
  std::shared_ptr<io::Listener> transparent_listener;
  std::atomic<bool> stopped{false};
  size_t next_shard = 0;  // home only
  std::mutex live_mu;     // guards live (connections end on every shard)
  std::unordered_map<EgressConnection*, std::weak_ptr<EgressConnection>> live;
  // Interception (options.ca set): the server side towards sandboxes (leaves
  // minted per host), the client side towards upstreams (verifying).
  std::unique_ptr<ssl::context> server_tls;
  std::unique_ptr<ssl::context> client_tls;

  bool can_intercept() const { return server_tls != nullptr; }
  std::shared_ptr<const SecretSet> Secrets() const {
    if (options.secrets) return options.secrets->Snapshot();
    return std::make_shared<SecretSet>();
  }

  ProxyState(asio::io_context& io_context, EgressProxyOptions opts, std::shared_ptr<Resolver> res,
             EgressProxy::SandboxLookup look, EgressProxy::DenialSink sink)
      : io(io_context),
        options(std::move(opts)),
        resolver(std::move(res)),
        lookup(std::move(look)),
        denials(std::move(sink)),
        registry(std::make_shared<io::ConnectionRegistry>(
            io::ConnectionLimits{options.max_connections, options.max_connections_per_sandbox})) {}

  // Where the next connection is served (home, in turn over the shards).
  ServingShard NextShard() {
    if (options.shards.empty()) return ServingShard{io.get_executor(), resolver};
    return options.shards[next_shard++ % options.shards.size()];
  }
  void Forget(EgressConnection* connection) {
    std::lock_guard lock(live_mu);
    live.erase(connection);
  }

  // The sink logs it (DenialLog), once.
  void Report(const Denial& denial) {
    if (denials) denials(denial);
  }
};

// The outcome of deciding on and connecting to one destination.
struct Admission {
  enum class Outcome { kAllowed, kDenied, kUnreachable };
  Outcome outcome = Outcome::kDenied;
  std::string reason;
  std::string address;  // the address decided on, if any
  bool reused = false;  // kAllowed on the connection that was already open
  bool intercept = false;  // a tunnel (no method) the proxy must intercept
  std::vector<std::pair<std::string, std::string>> set_headers;  // of the deciding rule
};

// What a tunnel front end (CONNECT, transparent TLS, raw TCP) makes of a
// connection: where it goes and what the sandbox sent so far.
struct EgressFlow {
  std::string host;  // CONNECT host, TLS server name, or the name (else address) of a raw TCP destination
  uint16_t port = 0;
  std::optional<IpAddress> preferred;  // the original destination's address (transparent listener)
  std::string initial;                 // bytes already read from the sandbox, to go on first
};

class EgressConnection : public std::enable_shared_from_this<EgressConnection> {
 public:
  // `client` is on the shard that serves it, `resolver` runs there.
  EgressConnection(std::shared_ptr<ProxyState> state, tcp::socket client, bool transparent, IpAddress source,
                   SandboxEgress sandbox, std::shared_ptr<Resolver> resolver)
      : state_(std::move(state)),
        resolver_(std::move(resolver)),
        executor_(client.get_executor()),
        client_(std::move(client)),
        upstream_(client_.get_executor()),
        idle_(client_.get_executor(), [this] { Close(); }),
        transparent_(transparent),
        source_(source),
        sandbox_(std::move(sandbox)) {
    Touch();
  }

  ~EgressConnection() { state_->Forget(this); }

  // Counts the connection in the proxy's registry under its sandbox (Close()
  // sheds it); false when over a cap with nothing idle to make room.
  // Call before Run, on the accepting thread.
  bool Admit();
  const std::string& sandbox_id() const { return sandbox_.sandbox_id; }
  // Serves the connection: the front end of its listener, then the chain.
  static Task<void> Run(std::shared_ptr<EgressConnection> self);
  // On the connection's executor only (Stop() posts it there).
  void Close();
  const asio::any_io_executor& executor() const { return executor_; }

 private:
  void Touch() { idle_.Set(std::chrono::steady_clock::now() + state_->options.idle_timeout); }
  // Idle: waiting for (or reading) a request head or a ClientHello; may be shed.
  void Idle() {
    if (slot_) slot_->Idle();
  }
  void Busy() {
    if (slot_) slot_->Busy();
  }
  // The registry shed it to make room (its socket was shut down).
  bool shed() const { return slot_ && slot_->shed(); }
  Denial MakeDenial(std::string destination, std::string address, std::string reason) const;

  // ---- transparent listener (front_end_transparent.cc) ----
  // Dispatches on the original destination's port.
  Task<void> ServeTransparent();
  Task<void> ServeTransparentTls(OriginalDestination original);
  Task<void> ServeRawTcp(OriginalDestination original);
  // The DNS name this sandbox got `address` from, else the address itself.
  std::string RawTcpName(const IpAddress& address);

  // ---- interception (egress_connection.cc) ----
  // Terminates the sandbox's TLS (already allowed to host:port, `initial`
  // being what it sent so far) with a leaf of coved's CA for `host`, then
  // serves the HTTP requests inside, each decided on its own and sent over a
  // new, verified TLS connection to the upstream.
  Task<void> Intercept(std::string host, uint16_t port, std::string initial, std::optional<IpAddress> preferred);
  // Reads from the client into `bytes` until it holds a ClientHello (or
  // cannot be one), at most max_header_bytes (transparent TLS, CONNECT).
  Task<ClientHelloScan> ReadClientHello(std::string& bytes);

  // ---- deciding and connecting (egress_upstream.cc) ----
  // Decides on (host, port, address) for each address of `host` (the
  // preferred one first) and connects to the first allowed one that answers.
  // Reuses the open upstream connection when it goes to the same host:port.
  Task<Admission> OpenUpstream(std::string host, uint16_t port, std::string method, std::string path,
                               std::optional<IpAddress> preferred);
  // What an allowed decision asks of the proxy: the rule's header templates,
  // and for a tunnel whether to intercept it (a rule that needs it, or a host
  // bound to a placeholder secret).
  void Describe(Admission& admission, const Decision& decision, const std::string& host, uint16_t port,
                const std::string& method);
  // TLS to the upstream of an intercepted connection, verified against the
  // system's and the operator's CAs for `host`. Empty, or what failed.
  Task<std::string> UpstreamTls(const std::string& host);
  Task<error_code> ConnectUpstream(IpAddress address, uint16_t port);
  void CloseUpstream();

  // ---- tunnels (egress_connection.cc) ----
  // The chain for a tunnel flow: decide and connect (OpenUpstream; a denial
  // is reported and the connection closes), then PassTunnel.
  Task<void> ForwardTunnel(EgressFlow flow);
  // An allowed, connected tunnel: intercepted (Intercept) when the decision
  // asks for it, else relayed untouched (StartTunnel).
  Task<void> PassTunnel(EgressFlow flow, const Admission& admission);
  // Writes `initial` upstream (and `initial_to_client` to the client), then
  // relays bytes both ways until both sides are done; the connection closes
  // when both directions ended.
  Task<void> StartTunnel(std::string initial, std::string initial_to_client = std::string());
  // One direction of a tunnel, until its source ends (the half-close is
  // passed on) or either side fails (the connection closes). Between plain
  // sockets the bytes move with splice(2) and never enter coved; a TLS side
  // (interception) goes through a read/write loop.
  static Task<void> Pump(std::shared_ptr<EgressConnection> self, bool client_to_upstream);
  // Reads, then writes it all, then reads again; empty at the source's EOF.
  Task<error_code> Copy(HopStream& from, HopStream& to);

  // ---- HTTP: answers (egress_connection.cc), explicit and plain HTTP and intercepted HTTPS (front_end_http.cc) ----
  // Answers with a short text error. `reason` also goes in X-Cove-Egress-Denied
  // for denials (403) and protocol violations (400).
  Task<void> SendError(int status, std::string reason, std::string body, bool keep_alive);
  // After an answer that left a request body unread: stop sending, read and
  // drop what the client still sends for a moment so it sees the answer
  // rather than a reset, then close.
  Task<void> LingeringClose();
  Task<void> DenyRequest(std::string destination, std::string address, std::string reason, std::string what,
                         int status, bool keep_alive);
  // Serves HTTP/1.1 requests on the client connection until either side
  // ends it. `original` is set on the transparent listener.
  Task<void> ServeHttp(std::optional<OriginalDestination> original);
  // Relays one allowed request (its head rewritten for the upstream as
  // `head_text`) and its response through http/'s relay; false when the
  // client connection must end.
  Task<bool> Exchange(const std::string& head_text, const std::string& method, int client_minor,
                      http::Framing framing, bool keep_client, bool upgrade, bool may_retry,
                      const HttpTarget& target, std::optional<IpAddress> preferred);

  // ---- CONNECT (front_end_connect.cc) ----
  // `req` is a CONNECT request read from the client; what followed it is in cbuf_.
  Task<void> ServeConnect(const http::HttpHead& req);

  std::shared_ptr<ProxyState> state_;
  std::shared_ptr<Resolver> resolver_;  // the shard's
  asio::any_io_executor executor_;      // the shard's (any thread may read it)
  HopStream client_;
  HopStream upstream_;
  std::string cbuf_;  // read ahead from the client (HTTP), past the head being served
  std::string ubuf_;  // read ahead from the upstream (HTTP)
  io::Deadline idle_;  // closes the connection
  bool transparent_;
  IpAddress source_;
  SandboxEgress sandbox_;     // refreshed from the lookup before each decision
  std::string upstream_key_;  // host:port the open upstream connection goes to
  IpAddress upstream_address_;
  bool closed_ = false;
  bool tunnelling_ = false;
  bool intercepting_ = false;       // client_ speaks TLS with coved's leaf for intercept_host_
  std::string intercept_host_;
  int pumps_done_ = 0;
  std::optional<io::ConnectionRegistry::Slot> slot_;  // counts it under the sandbox it was admitted for
};

}  // namespace cove::proxy::egress
