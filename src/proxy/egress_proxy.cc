// The egress proxy (egress_proxy.h): accept loops, sandbox attribution, the
// explicit HTTP/1.1 forward proxy (absolute-form and CONNECT), the transparent
// listener (HTTP on 80, TLS on 443, raw TCP elsewhere), decisions, denials and
// byte relays, TLS interception (HopStream: the same HTTP relay over TLS on
// both sides) and secrets in requests (ApplySecrets). The only Boost.Beast
// file of the proxy.
//
// Every accepted socket is one Connection, owned by shared_ptrs held by its
// coroutines (and by the watchdog that enforces the idle timeout); Stop() and
// the watchdog close both sockets, which ends every pending operation. All of
// it runs on the io_context's one thread: no locks.
#include "base/ascii.h"
#include "proxy/egress_proxy.h"

#include <netinet/tcp.h>

#include <algorithm>
#include <limits>
#include <unordered_map>
#include <vector>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base/log.h"
#include "http/hop_by_hop.h"
#include "io/listener.h"
#include "io/splice_pump.h"
#include "proxy/asio_address.h"
#include "proxy/egress_decision.h"
#include "proxy/header_injection.h"
#include "proxy/hop_stream.h"
#include "proxy/http_target.h"
#include "proxy/original_dst.h"
#include "proxy/tls_client_hello.h"

namespace cove::proxy {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace ssl = asio::ssl;

constexpr size_t kRelayChunk = 64 << 10;
// Bodies are streamed, never held: no limit. (Boost 1.74's parser treats
// body_limit(boost::none) as a limit every length exceeds.)
constexpr uint64_t kUnlimitedBody = std::numeric_limits<uint64_t>::max();
constexpr char kVia[] = "1.1 cove-egress";

// A reason fit for one header line: printable ASCII only.
std::string HeaderSafe(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 512)) out.push_back(c >= 0x20 && c < 0x7f ? c : ' ');
  return out;
}

// "" when the request's body is delimited one way only, the same here and
// upstream; else why not. Beast 1.74 accepts more: a Transfer-Encoding whose
// last coding is not "chunked" (read as no body), equal Content-Lengths (one
// field or several), and a second Transfer-Encoding field after one ending in
// "chunked" (its serializer then frames the body by the first field only).
std::string FramingProblem(const http::request_parser<http::buffer_body>& parser) {
  const auto& req = parser.get();
  size_t te = req.count(http::field::transfer_encoding), cl = req.count(http::field::content_length);
  if (te > 0 && !parser.chunked()) return "Transfer-Encoding without chunked last";
  if (te > 1) return "more than one Transfer-Encoding field";
  if (te > 0 && req.version() < 11) return "Transfer-Encoding in an HTTP/1.0 request";
  if (cl > 1) return "more than one Content-Length field";
  if (cl == 1) {
    auto v = req[http::field::content_length];
    if (v.empty() || v.find_first_not_of("0123456789") != boost::beast::string_view::npos)
      return "Content-Length is not one number";
  }
  return "";
}

// Drops hop-by-hop fields (RFC 9110 §7.6.1) and the proxy's own, and adds Via.
// Transfer-Encoding and Content-Length stay: the serializer frames the body
// the way the parser read it.
template <class Fields>
void RewriteHopByHop(Fields& fields) {
  std::vector<std::string> named;
  for (auto token : http::token_list(fields[http::field::connection])) named.emplace_back(token.data(), token.size());
  for (const auto& name : named) {
    if (cove::http::ConnectionMayDrop(name)) fields.erase(name);
  }
  for (std::string_view name : cove::http::kHopByHopFields) fields.erase(boost::beast::string_view(name.data(), name.size()));
  auto via = fields[http::field::via];
  std::string value = via.empty() ? std::string(kVia) : std::string(via.data(), via.size()) + ", " + kVia;
  fields.set(http::field::via, value);
}

// The protocol a request asks to switch to ("Connection: upgrade" plus
// "Upgrade: websocket"), or empty.
template <class Fields>
std::string RequestedUpgrade(const Fields& fields) {
  bool connection_upgrade = false;
  for (auto token : http::token_list(fields[http::field::connection])) {
    if (AsciiIEquals(std::string_view(token.data(), token.size()), "upgrade")) connection_upgrade = true;
  }
  auto upgrade = fields[http::field::upgrade];
  if (!connection_upgrade || upgrade.empty()) return std::string();
  return std::string(upgrade.data(), upgrade.size());
}

const char* StatusText(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 431: return "Request Header Fields Too Large";
    case 502: return "Bad Gateway";
    default: return "Error";
  }
}

// What the proxy shares with its connections.
class Connection;
struct ProxyState {
  asio::io_context& io;
  EgressProxyOptions options;
  std::shared_ptr<Resolver> resolver;
  EgressProxy::SandboxLookup lookup;
  EgressProxy::DenialSink denials;
  // Both listeners' connections, counted per sandbox; idle (before a
  // request head) ones make room.
  std::shared_ptr<io::ConnectionRegistry> registry;
  std::shared_ptr<io::Listener> explicit_listener;
  std::shared_ptr<io::Listener> transparent_listener;
  bool stopped = false;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> live;
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

// How a relay of one message ended.
struct RelayResult {
  error_code ec;
  bool reading_failed = false;  // the error came from the side being read
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<ProxyState> state, tcp::socket client, bool transparent, IpAddress source,
             SandboxEgress sandbox)
      : state_(std::move(state)),
        client_(std::move(client)),
        upstream_(client_.get_executor()),
        idle_timer_(client_.get_executor()),
        connect_timer_(client_.get_executor()),
        transparent_(transparent),
        source_(source),
        sandbox_(std::move(sandbox)) {
    Touch();
  }

  ~Connection() { state_->live.erase(this); }

  // Counts the connection in the proxy's registry under its sandbox (Close()
  // sheds it); false when over a cap with nothing idle to make room.
  bool Admit() {
    slot_ = state_->registry->Admit(sandbox_.sandbox_id, [this] { Close(); });
    return slot_.has_value();
  }
  const std::string& sandbox_id() const { return sandbox_.sandbox_id; }

  static Task<void> Run(std::shared_ptr<Connection> self) {
    asio::co_spawn(self->client_.get_executor(), Watchdog(self), asio::detached);
    error_code ignored;
    self->client_.socket().set_option(tcp::no_delay(true), ignored);
    if (self->transparent_) {
      co_await self->ServeTransparent();
    } else {
      co_await self->ServeHttp(std::nullopt);
    }
    if (!self->tunnelling_) self->Close();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    error_code ignored;
    client_.socket().close(ignored);
    upstream_.socket().close(ignored);
    idle_timer_.cancel();
    connect_timer_.cancel();
  }

 private:
  void Touch() { deadline_ = std::chrono::steady_clock::now() + state_->options.idle_timeout; }
  // Idle: waiting for (or reading) a request head or a ClientHello; may be shed.
  void Idle() {
    if (slot_) slot_->Idle();
  }
  void Busy() {
    if (slot_) slot_->Busy();
  }

  static Task<void> Watchdog(std::shared_ptr<Connection> self) {
    while (!self->closed_) {
      self->idle_timer_.expires_at(self->deadline_);
      error_code ec;
      co_await self->idle_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (self->closed_) break;
      if (std::chrono::steady_clock::now() >= self->deadline_) self->Close();
    }
  }

  Denial MakeDenial(std::string destination, std::string address, std::string reason) const {
    Denial d;
    d.sandbox_id = sandbox_.sandbox_id;
    d.destination = std::move(destination);
    d.address = std::move(address);
    d.reason = std::move(reason);
    return d;
  }

  // ---- transparent listener ----

  Task<void> ServeTransparent() {
    error_code ec;
    tcp::endpoint local = client_.socket().local_endpoint(ec);
    if (ec) co_return;
    IpAddress local_address = FromAsioAddress(local.address());  // v4-mapped -> v4
    int family = local_address.family;
    auto original = GetOriginalDestination(client_.socket().native_handle(), family);
    if (!original.ok()) {
      log::Warn("egress proxy: no original destination for a transparent connection: {}",
                original.error().ToString());
      co_return;
    }
    // Not redirected: somebody connected to the transparent port itself.
    if (original->port == local.port() && original->address == local_address) co_return;
    if (original->port == 80) {
      co_await ServeHttp(*original);
    } else if (original->port == 443) {
      co_await ServeTransparentTls(*original);
    } else {
      co_await ServeRawTcp(*original);
    }
  }

  Task<void> ServeTransparentTls(OriginalDestination original) {
    std::string hello;
    ClientHelloScan scan = co_await ReadClientHello(hello);
    Busy();
    std::string literal = original.address.ToString();
    if (scan.outcome != ClientHelloScan::Outcome::kComplete) {
      // A connection that ended before its first byte is no denial.
      if (!closed_ && !hello.empty()) {
        state_->Report(MakeDenial(HostPort(literal, original.port), literal, "TLS: " + scan.problem));
      }
      co_return;
    }
    std::string name = scan.server_name.value_or(literal);
    Admission admission = co_await OpenUpstream(name, original.port, "", "", original.address);
    if (admission.outcome != Admission::Outcome::kAllowed) {
      if (admission.outcome == Admission::Outcome::kDenied) {
        state_->Report(MakeDenial(HostPort(name, original.port), admission.address, admission.reason));
      }
      co_return;
    }
    if (admission.intercept) {
      co_await Intercept(name, original.port, std::move(hello), original.address);
      co_return;
    }
    co_await StartTunnel(std::move(hello));
  }

  // ---- interception ----

  // Terminates the sandbox's TLS (already allowed to host:port, `initial`
  // being what it sent so far) with a leaf of coved's CA for `host`, then
  // serves the HTTP requests inside, each decided on its own and sent over a
  // new, verified TLS connection to the upstream.
  Task<void> Intercept(std::string host, uint16_t port, std::string initial, std::optional<IpAddress> preferred) {
    CloseUpstream();
    auto leaf = state_->options.ca->LeafFor(host);
    if (!leaf.ok()) {
      log::Warn("egress proxy: no certificate for {}: {}", host, leaf.error().ToString());
      co_return;
    }
    TlsStream& tls = client_.StartTls(*state_->server_tls, std::move(initial));
    SSL* ssl = tls.native_handle();
    if (SSL_use_certificate(ssl, (*leaf)->certificate) != 1 || SSL_use_PrivateKey(ssl, (*leaf)->key) != 1) {
      log::Warn("egress proxy: cannot use the certificate for {}", host);
      co_return;
    }
    error_code ec;
    co_await tls.async_handshake(ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
    Touch();
    if (closed_) co_return;
    if (ec) {
      std::string reason = "TLS interception: handshake with the sandbox failed (does it trust coved's CA?): " +
                           ec.message();
      state_->Report(MakeDenial(HostPort(host, port), "", reason));
      co_return;
    }
    intercepting_ = true;
    intercept_host_ = host;
    OriginalDestination inside;
    inside.port = port;
    if (preferred) inside.address = *preferred;  // otherwise 0.0.0.0: no preference
    co_await ServeHttp(inside);
  }

  Task<void> ServeRawTcp(OriginalDestination original) {
    Busy();
    std::string host = RawTcpName(original.address);
    Admission admission = co_await OpenUpstream(host, original.port, "", "", original.address);
    if (admission.outcome != Admission::Outcome::kAllowed) {
      if (admission.outcome == Admission::Outcome::kDenied) {
        state_->Report(MakeDenial(HostPort(host, original.port), admission.address, admission.reason));
      }
      co_return;
    }
    co_await StartTunnel(std::string());
  }

  // The DNS name this sandbox got `address` from, else the address itself.
  std::string RawTcpName(const IpAddress& address) {
    if (state_->options.name_for_address) {
      if (auto sandbox = state_->lookup(source_)) {
        if (auto name = state_->options.name_for_address(sandbox->sandbox_id, address)) return *name;
      }
    }
    return address.ToString();
  }

  // Reads from the client into `bytes` until it holds a ClientHello (or
  // cannot be one), at most max_header_bytes.
  Task<ClientHelloScan> ReadClientHello(std::string& bytes) {
    std::vector<char> buffer(4096);
    while (true) {
      ClientHelloScan scan = ScanClientHello(bytes);
      if (scan.outcome != ClientHelloScan::Outcome::kNeedMore) co_return scan;
      if (bytes.size() >= state_->options.max_header_bytes) {
        scan.outcome = ClientHelloScan::Outcome::kMalformed;
        scan.problem = "ClientHello larger than the header limit";
        co_return scan;
      }
      error_code ec;
      size_t n = co_await client_.async_read_some(asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
      Touch();
      if (ec) {
        scan.outcome = ClientHelloScan::Outcome::kMalformed;
        scan.problem = "connection ended before a complete ClientHello";
        co_return scan;
      }
      bytes.append(buffer.data(), n);
    }
  }

  // ---- deciding and connecting ----

  // Decides on (host, port, address) for each address of `host` (the
  // preferred one first) and connects to the first allowed one that answers.
  // Reuses the open upstream connection when it goes to the same host:port.
  Task<Admission> OpenUpstream(std::string host, uint16_t port, std::string method, std::string path,
                               std::optional<IpAddress> preferred) {
    Admission result;
    auto current = state_->lookup(source_);
    if (!current || !current->policy) {
      result.reason = "the sandbox is gone";
      Close();
      co_return result;
    }
    sandbox_ = std::move(*current);
    const EgressPolicy& policy = *sandbox_.policy;
    std::string key = HostPort(host, port);
    if (upstream_.socket().is_open() && upstream_key_ == key) {
      Destination dest{host, port, upstream_address_, method, path};
      Decision decision = DecideEgress(policy, dest, state_->can_intercept());
      result.address = upstream_address_.ToString();
      result.reused = decision.allow;
      result.outcome = decision.allow ? Admission::Outcome::kAllowed : Admission::Outcome::kDenied;
      result.reason = decision.reason;
      if (decision.allow) Describe(result, decision, host, port, method);
      co_return result;
    }
    CloseUpstream();
    std::vector<IpAddress> addresses;
    if (auto literal = IpAddress::Parse(host)) {
      addresses.push_back(*literal);
    } else {
      auto resolved = co_await state_->resolver->Resolve(host, true, state_->options.connect_timeout);
      if (closed_) co_return result;
      if (!resolved.ok()) {
        Destination dest{host, port, std::nullopt, method, path};
        Decision decision = DecideEgress(policy, dest, state_->can_intercept());
        if (!decision.allow) {
          result.reason = decision.reason;
          co_return result;
        }
        result.outcome = Admission::Outcome::kUnreachable;
        result.reason = "cannot resolve " + host + ": " + resolved.error().ToString();
        co_return result;
      }
      addresses = std::move(*resolved);
    }
    if (preferred) {
      auto it = std::find(addresses.begin(), addresses.end(), *preferred);
      if (it != addresses.end()) std::rotate(addresses.begin(), it, it + 1);
    }
    std::optional<Admission> first_denial;
    std::string connect_error;
    for (const IpAddress& address : addresses) {
      Destination dest{host, port, address, method, path};
      Decision decision = DecideEgress(policy, dest, state_->can_intercept());
      if (!decision.allow) {
        if (!first_denial) {
          first_denial.emplace();
          first_denial->reason = decision.reason;
          first_denial->address = address.ToString();
        }
        continue;
      }
      error_code ec = co_await ConnectUpstream(address, port);
      if (closed_) co_return result;
      if (!ec && intercepting_) {
        std::string problem = co_await UpstreamTls(host);
        if (closed_) co_return result;
        if (!problem.empty()) {
          CloseUpstream();
          result.outcome = Admission::Outcome::kUnreachable;
          result.address = address.ToString();
          result.reason = problem;
          co_return result;
        }
      }
      if (!ec) {
        upstream_key_ = key;
        upstream_address_ = address;
        result.outcome = Admission::Outcome::kAllowed;
        result.address = address.ToString();
        result.reason = decision.reason;
        Describe(result, decision, host, port, method);
        co_return result;
      }
      connect_error = "cannot connect to " + HostPort(address.ToString(), port) + ": " + ec.message();
    }
    if (!connect_error.empty()) {
      result.outcome = Admission::Outcome::kUnreachable;
      result.reason = connect_error;
      co_return result;
    }
    if (first_denial) co_return *first_denial;
    result.outcome = Admission::Outcome::kUnreachable;
    result.reason = "no address for " + host;
    co_return result;
  }

  // What an allowed decision asks of the proxy: the rule's header templates,
  // and for a tunnel whether to intercept it (a rule that needs it, or a host
  // bound to a placeholder secret).
  void Describe(Admission& admission, const Decision& decision, const std::string& host, uint16_t port,
                const std::string& method) {
    if (decision.rule) admission.set_headers = decision.rule->set_headers;
    if (!method.empty()) return;
    admission.intercept = InterceptsTunnel(decision, host, port, state_->can_intercept(), *state_->Secrets());
  }

  // TLS to the upstream of an intercepted connection, verified against the
  // system's and the operator's CAs for `host`. Empty, or what failed.
  Task<std::string> UpstreamTls(const std::string& host) {
    TlsStream& tls = upstream_.StartTls(*state_->client_tls, std::string());
    SSL* ssl = tls.native_handle();
    bool literal = IpAddress::Parse(host).has_value();
    if (!literal) SSL_set_tlsext_host_name(ssl, host.c_str());
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (literal) {
      X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    } else {
      X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
    }
    tls.set_verify_mode(ssl::verify_peer);
    error_code ec;
    co_await tls.async_handshake(ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
    Touch();
    if (!ec) co_return std::string();
    long verify = SSL_get_verify_result(ssl);
    std::string problem;
    if (verify != X509_V_OK) {
      problem = "upstream " + host + ": certificate verification failed: " + X509_verify_cert_error_string(verify);
    } else {
      problem = "upstream " + host + ": TLS handshake failed: " + ec.message();
    }
    co_return problem;
  }

  Task<error_code> ConnectUpstream(IpAddress address, uint16_t port) {
    upstream_.Reset();
    uint64_t attempt = ++connect_attempt_;
    connect_timer_.expires_after(state_->options.connect_timeout);
    auto on_timeout = [self = shared_from_this(), attempt](error_code ec) {
      if (ec || self->connect_attempt_ != attempt) return;
      self->connect_timed_out_ = true;
      error_code ignored;
      self->upstream_.socket().cancel(ignored);
    };
    connect_timer_.async_wait(std::move(on_timeout));
    connect_timed_out_ = false;
    tcp::endpoint endpoint(ToAsioAddress(address), port);
    error_code ec;
    upstream_.socket().open(endpoint.protocol(), ec);
    uint32_t mark = state_->options.upstream_mark;
    if (!ec && mark && ::setsockopt(upstream_.socket().native_handle(), SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0)
      ec = error_code(errno, boost::system::system_category());
    if (!ec) co_await upstream_.socket().async_connect(endpoint, asio::redirect_error(asio::use_awaitable, ec));
    ++connect_attempt_;
    connect_timer_.cancel();
    Touch();
    if (ec && connect_timed_out_) ec = asio::error::timed_out;
    if (ec) {
      error_code ignored;
      upstream_.socket().close(ignored);
    } else {
      error_code ignored;
      upstream_.socket().set_option(tcp::no_delay(true), ignored);
    }
    co_return ec;
  }

  void CloseUpstream() {
    error_code ignored;
    upstream_.Reset();
    upstream_key_.clear();
  }

  // ---- tunnels ----

  // Writes `initial` upstream (and `initial_to_client` to the client), then
  // relays bytes both ways until both sides are done; the connection closes
  // when both directions ended.
  Task<void> StartTunnel(std::string initial, std::string initial_to_client = std::string()) {
    if (!initial.empty()) {
      error_code ec;
      co_await asio::async_write(upstream_, asio::buffer(initial), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      Touch();
    }
    if (!initial_to_client.empty()) {
      error_code ec;
      co_await asio::async_write(client_, asio::buffer(initial_to_client),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      Touch();
    }
    tunnelling_ = true;
    auto self = shared_from_this();
    asio::co_spawn(client_.get_executor(), Pump(self, true), asio::detached);
    asio::co_spawn(client_.get_executor(), Pump(self, false), asio::detached);
  }

  // One direction of a tunnel, until its source ends (the half-close is
  // passed on) or either side fails (the connection closes). Between plain
  // sockets the bytes move with splice(2) and never enter coved; a TLS side
  // (interception) goes through a read/write loop.
  static Task<void> Pump(std::shared_ptr<Connection> self, bool client_to_upstream) {
    HopStream& from = client_to_upstream ? self->client_ : self->upstream_;
    HopStream& to = client_to_upstream ? self->upstream_ : self->client_;
    std::optional<io::SplicePump> splice;
    if (!from.tls() && !to.tls()) splice = io::SplicePump::Open();
    error_code ec;
    if (splice) {
      ec = co_await splice->Run(from.socket(), to.socket(), [connection = self.get()] { connection->Touch(); });
    } else {
      ec = co_await self->Copy(from, to);
    }
    if (!ec) {
      error_code ignored;
      to.socket().shutdown(tcp::socket::shutdown_send, ignored);
    } else {
      self->Close();
    }
    if (++self->pumps_done_ == 2) self->Close();
  }

  // Reads, then writes it all, then reads again; empty at the source's EOF.
  Task<error_code> Copy(HopStream& from, HopStream& to) {
    std::vector<char> buffer(kRelayChunk);
    while (true) {
      error_code ec;
      size_t n = co_await from.async_read_some(asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
      Touch();
      if (ec == asio::error::eof) co_return error_code();
      if (ec) co_return ec;
      co_await asio::async_write(to, asio::buffer(buffer.data(), n), asio::redirect_error(asio::use_awaitable, ec));
      Touch();
      if (ec) co_return ec;
    }
  }

  // ---- HTTP ----

  // Answers with a short text error. `reason` also goes in X-Cove-Egress-Denied
  // for denials (403) and protocol violations (400).
  Task<void> SendError(int status, std::string reason, std::string body, bool keep_alive) {
    std::string text = "HTTP/1.1 " + std::to_string(status) + " " + StatusText(status) + "\r\n";
    text += "Content-Type: text/plain; charset=utf-8\r\n";
    if (status == 403 || status == 400) text += "X-Cove-Egress-Denied: " + HeaderSafe(reason) + "\r\n";
    text += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    if (!keep_alive) text += "Connection: close\r\n";
    text += "\r\n";
    text += body;
    error_code ec;
    co_await asio::async_write(client_, asio::buffer(text), asio::redirect_error(asio::use_awaitable, ec));
    Touch();
  }

  // After an answer that left a request body unread: stop sending, read and
  // drop what the client still sends for a moment so it sees the answer
  // rather than a reset, then close.
  Task<void> LingeringClose() {
    error_code ec;
    client_.socket().shutdown(tcp::socket::shutdown_send, ec);
    std::vector<char> buffer(8192);
    size_t drained = 0;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    deadline_ = std::min(deadline_, until);
    idle_timer_.cancel();  // the watchdog re-arms for the nearer deadline
    while (!closed_ && drained < (1 << 20)) {
      size_t n = co_await client_.async_read_some(asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      drained += n;
    }
    Close();
  }

  Task<void> DenyRequest(std::string destination, std::string address, std::string reason, std::string what,
                         int status, bool keep_alive) {
    state_->Report(MakeDenial(destination, address, reason));
    std::string body = "cove egress proxy: " + what + " denied: " + reason + "\n";
    co_await SendError(status, reason, std::move(body), keep_alive);
  }

  // Serves HTTP/1.1 requests on the client connection until either side
  // ends it. `original` is set on the transparent listener.
  Task<void> ServeHttp(std::optional<OriginalDestination> original) {
    size_t limit = state_->options.max_header_bytes + kRelayChunk;
    beast::flat_buffer client_buffer(limit);
    beast::flat_buffer upstream_buffer(limit);
    while (!closed_) {
      http::request_parser<http::buffer_body> request_parser;
      request_parser.header_limit(static_cast<uint32_t>(state_->options.max_header_bytes));
      request_parser.body_limit(kUnlimitedBody);
      error_code ec;
      Idle();
      co_await http::async_read_header(client_, client_buffer, request_parser,
                                       asio::redirect_error(asio::use_awaitable, ec));
      Busy();
      Touch();
      if (ec) {
        if (ec == http::error::header_limit) {
          co_await SendError(431, "request header too large", "cove egress proxy: request header too large\n", false);
        } else if (ec != http::error::end_of_stream && ec != asio::error::eof && !closed_ &&
                   ec != asio::error::operation_aborted && ec != asio::error::connection_reset) {
          co_await SendError(400, "malformed request: " + ec.message(), "cove egress proxy: malformed request\n",
                             false);
        }
        co_return;
      }
      auto& req = request_parser.get();
      if (req.method() == http::verb::connect) {
        if (original) {
          co_await SendError(400, "CONNECT on a transparent connection", "cove egress proxy: bad request\n", false);
        } else {
          co_await ServeConnect(req, client_buffer);
        }
        co_return;
      }
      bool has_body = !request_parser.is_done();
      if (auto problem = FramingProblem(request_parser); !problem.empty()) {
        // Its body would be framed one way here and maybe another upstream.
        co_await SendError(400, problem, "cove egress proxy: bad request\n", false);
        co_return;
      }
      std::string problem;
      std::optional<uint16_t> transparent_port;
      if (original) transparent_port = original->port;
      std::vector<std::string_view> host_headers;
      for (auto it = req.find(http::field::host); it != req.end() && it->name() == http::field::host; ++it) {
        host_headers.emplace_back(it->value().data(), it->value().size());
      }
      std::string_view target_text(req.target().data(), req.target().size());
      auto target = ParseHttpTarget(target_text, host_headers, transparent_port, &problem);
      if (!target) {
        std::string destination(req.target().data(), std::min<size_t>(req.target().size(), 256));
        co_await DenyRequest(destination, "", problem, "request", 400, false);
        if (has_body) co_await LingeringClose();
        co_return;
      }
      if (intercepting_ && (target->authority.host != intercept_host_ || target->authority.port != original->port)) {
        std::string destination = HostPort(target->authority.host, target->authority.port);
        co_await DenyRequest(destination, "", "Host differs from the TLS server name " + intercept_host_, "request",
                             400, false);
        if (has_body) co_await LingeringClose();
        co_return;
      }
      bool keep_client = request_parser.keep_alive();
      std::string method(req.method_string().data(), req.method_string().size());
      std::string destination = HostPort(target->authority.host, target->authority.port);
      std::string scheme = intercepting_ ? "https://" : "http://";
      std::optional<IpAddress> preferred;
      if (original) preferred = original->address;
      Admission admission =
          co_await OpenUpstream(target->authority.host, target->authority.port, method, target->origin_form, preferred);
      if (closed_) co_return;
      if (admission.outcome != Admission::Outcome::kAllowed) {
        bool keep = keep_client && !has_body;
        if (admission.outcome == Admission::Outcome::kDenied) {
          std::string what = method + " " + scheme + destination + target->origin_form;
          co_await DenyRequest(destination, admission.address, admission.reason, what, 403, keep);
        } else {
          std::string body = "cove egress proxy: " + admission.reason + "\n";
          co_await SendError(502, admission.reason, std::move(body), keep);
        }
        if (has_body) {
          co_await LingeringClose();
          co_return;
        }
        if (!keep) co_return;
        continue;
      }

      std::string secret_problem = InjectSecrets(req, target->origin_form, target->authority.host,
                                                admission.set_headers, *state_->Secrets());
      if (!secret_problem.empty()) {
        bool keep = keep_client && !has_body;
        std::string what = method + " " + scheme + destination + target->origin_form;
        co_await DenyRequest(destination, admission.address, secret_problem, what, 403, keep);
        if (has_body) {
          co_await LingeringClose();
          co_return;
        }
        if (!keep) co_return;
        continue;
      }

      bool expects_continue = AsciiIEquals(std::string_view(req[http::field::expect].data(), req[http::field::expect].size()),
                                      "100-continue");
      std::string upgrade = RequestedUpgrade(req);
      req.erase(http::field::expect);
      req.target(target->origin_form);
      RewriteHopByHop(req);
      // The upstream connection outlives the request only if the client's
      // does: a client that closes after this request has the upstream close
      // too, so the server (as for a direct client) and not coved holds the
      // TIME_WAIT. Otherwise every such request would park one of coved's
      // ephemeral ports for 60 s, and a sandbox opening connections faster
      // than ~470/s to one destination runs coved out of ports.
      req.keep_alive(keep_client);
      if (!upgrade.empty()) {
        // Upgrade is hop-by-hop, but the proxy carries it on: the switched
        // protocol (WebSocket) then runs in a tunnel to the same destination.
        req.set(http::field::connection, "Upgrade");
        req.set(http::field::upgrade, upgrade);
      }
      if (expects_continue && has_body) {
        // The proxy decided and reached the upstream: the client may send.
        std::string interim = "HTTP/1.1 100 Continue\r\n\r\n";
        co_await asio::async_write(client_, asio::buffer(interim), asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;
      }
      bool head = req.method() == http::verb::head;
      bool keep_upstream = false;
      ResponseEnd end = ResponseEnd::kNoResponse;
      // A kept-alive upstream connection may have been closed by the server
      // meanwhile: a request without a body is sent again once on a new one.
      bool may_retry = admission.reused && !has_body;
      while (true) {
        RelayResult sent = co_await RelayMessage<true>(request_parser, client_, client_buffer, upstream_);
        if (sent.ec && sent.reading_failed) co_return;
        if (!sent.ec) {
          end = co_await RelayResponse(upstream_buffer, head, request_parser.get().version(), keep_client,
                                       !upgrade.empty(), &keep_upstream);
          if (end != ResponseEnd::kNoResponse) break;
        }
        if (closed_) co_return;
        CloseUpstream();
        upstream_buffer.consume(upstream_buffer.size());
        if (may_retry) {
          may_retry = false;
          Admission again = co_await OpenUpstream(target->authority.host, target->authority.port, method,
                                                  target->origin_form, preferred);
          if (closed_) co_return;
          if (again.outcome == Admission::Outcome::kAllowed) continue;
        }
        std::string reason = "upstream " + destination + " sent no response";
        if (sent.ec) reason = "upstream " + destination + " failed: " + sent.ec.message();
        std::string body = "cove egress proxy: " + reason + "\n";
        co_await SendError(502, reason, std::move(body), false);
        co_return;
      }
      if (end == ResponseEnd::kSwitchedProtocols) {
        auto to_upstream = client_buffer.data();
        std::string pending_to_upstream(static_cast<const char*>(to_upstream.data()), to_upstream.size());
        auto to_client = upstream_buffer.data();
        std::string pending_to_client(static_cast<const char*>(to_client.data()), to_client.size());
        co_await StartTunnel(std::move(pending_to_upstream), std::move(pending_to_client));
        co_return;
      }
      bool client_ok = end == ResponseEnd::kDone;
      if (!keep_upstream) {
        CloseUpstream();
        upstream_buffer.consume(upstream_buffer.size());
      }
      if (!client_ok || !keep_client) co_return;
    }
  }

  enum class ResponseEnd { kDone, kClose, kNoResponse, kSwitchedProtocols };

  // Relays the upstream's interim responses and its final response to the
  // client. kNoResponse when the upstream sent nothing valid before any byte
  // went to the client (the caller answers); kClose when the client
  // connection must end; kSwitchedProtocols after a 101 to a request that
  // asked for an upgrade. `keep_client` is cleared when the response cannot be
  // framed for keep-alive.
  Task<ResponseEnd> RelayResponse(beast::flat_buffer& upstream_buffer, bool head, unsigned client_version,
                                  bool& keep_client, bool upgrade_requested, bool* keep_upstream) {
    for (bool first = true;; first = false) {
      http::response_parser<http::buffer_body> response_parser;
      response_parser.header_limit(static_cast<uint32_t>(state_->options.max_header_bytes));
      response_parser.body_limit(kUnlimitedBody);
      if (head) response_parser.skip(true);
      error_code ec;
      co_await http::async_read_header(upstream_, upstream_buffer, response_parser,
                                       asio::redirect_error(asio::use_awaitable, ec));
      Touch();
      if (ec) {
        ResponseEnd failed = first ? ResponseEnd::kNoResponse : ResponseEnd::kClose;
        co_return failed;
      }
      auto& res = response_parser.get();
      int status = res.result_int();
      if (status == 101) {
        std::string upgrade = RequestedUpgrade(res);
        if (!upgrade_requested || upgrade.empty()) {
          co_await SendError(502, "upgrade", "cove egress proxy: upstream switched protocols unasked\n", false);
          co_return ResponseEnd::kClose;
        }
        *keep_upstream = false;
        RewriteHopByHop(res);
        res.set(http::field::connection, "Upgrade");
        res.set(http::field::upgrade, upgrade);
        RelayResult switched = co_await RelayMessage<false>(response_parser, upstream_, upstream_buffer, client_);
        ResponseEnd switched_end = switched.ec ? ResponseEnd::kClose : ResponseEnd::kSwitchedProtocols;
        co_return switched_end;
      }
      bool interim = status >= 100 && status < 200;
      bool body_until_eof = !response_parser.is_done() && !response_parser.chunked() &&
                            !response_parser.content_length();
      *keep_upstream = response_parser.keep_alive();
      RewriteHopByHop(res);
      if (!interim) {
        if (body_until_eof) {
          if (client_version >= 11) {
            res.chunked(true);  // keeps the client connection usable
          } else {
            keep_client = false;
          }
        }
        res.version(11);
        res.keep_alive(keep_client);
      }
      RelayResult relayed = co_await RelayMessage<false>(response_parser, upstream_, upstream_buffer, client_);
      if (relayed.ec) {
        *keep_upstream = false;
        co_return ResponseEnd::kClose;
      }
      if (!interim) co_return ResponseEnd::kDone;
    }
  }

  // Streams one message (header, then body pieces as they arrive) from `from`
  // to `to`; reads the next piece only after the previous one was written.
  template <bool kIsRequest>
  Task<RelayResult> RelayMessage(http::parser<kIsRequest, http::buffer_body>& parser, HopStream& from,
                                 beast::flat_buffer& from_buffer, HopStream& to) {
    RelayResult result;
    auto& message = parser.get();
    http::serializer<kIsRequest, http::buffer_body> serializer(message);
    message.body().data = nullptr;
    message.body().size = 0;
    message.body().more = !parser.is_done();
    co_await http::async_write_header(to, serializer, asio::redirect_error(asio::use_awaitable, result.ec));
    if (result.ec) co_return result;
    Touch();
    // No body (HEAD answers, 1xx, 204, 304, length 0): the header is all, even
    // when it names a chunked body.
    if (parser.is_done()) co_return result;
    std::vector<char> piece(kRelayChunk);
    // Beast reads at most the buffer's spare capacity (at least 512 bytes); a
    // buffer_body leaves the buffer empty, so without room made here every
    // read of the body would be 512 bytes.
    from_buffer.reserve(std::min(kRelayChunk, from_buffer.max_size()));
    while (!parser.is_done()) {
      message.body().data = piece.data();
      message.body().size = piece.size();
      co_await http::async_read_some(from, from_buffer, parser, asio::redirect_error(asio::use_awaitable, result.ec));
      if (result.ec == http::error::need_buffer) result.ec = {};
      if (result.ec) {
        result.reading_failed = true;
        co_return result;
      }
      Touch();
      message.body().size = piece.size() - message.body().size;
      message.body().data = piece.data();
      // Always "more": the end of the body is written once, below (a last
      // piece marked final would make the serializer end a chunked body twice).
      message.body().more = true;
      if (message.body().size == 0) continue;
      co_await http::async_write(to, serializer, asio::redirect_error(asio::use_awaitable, result.ec));
      if (result.ec == http::error::need_buffer) result.ec = {};
      if (result.ec) co_return result;
      Touch();
    }
    message.body().data = nullptr;
    message.body().size = 0;
    message.body().more = false;
    co_await http::async_write(to, serializer, asio::redirect_error(asio::use_awaitable, result.ec));
    if (result.ec == http::error::need_buffer) result.ec = {};
    co_return result;
  }

  // ---- CONNECT ----

  Task<void> ServeConnect(http::request<http::buffer_body>& req, beast::flat_buffer& client_buffer) {
    std::string_view target_text(req.target().data(), req.target().size());
    auto authority = ParseAuthority(target_text, 0);
    std::string destination(target_text.substr(0, 256));
    if (!authority) {
      co_await DenyRequest(destination, "", "bad CONNECT target (host:port expected)", "CONNECT", 400, false);
      co_return;
    }
    destination = HostPort(authority->host, authority->port);
    if (req.count(http::field::host) > 0) {
      auto value = req[http::field::host];
      auto host = ParseAuthority(std::string_view(value.data(), value.size()), authority->port);
      if (req.count(http::field::host) > 1 || !host || host->host != authority->host ||
          host->port != authority->port) {
        co_await DenyRequest(destination, "", "Host header differs from the CONNECT target",
                             "CONNECT " + destination, 400, false);
        co_return;
      }
    }
    Admission admission = co_await OpenUpstream(authority->host, authority->port, "", "", std::nullopt);
    if (closed_) co_return;
    if (admission.outcome == Admission::Outcome::kDenied) {
      co_await DenyRequest(destination, admission.address, admission.reason, "CONNECT " + destination, 403, false);
      co_return;
    }
    if (admission.outcome == Admission::Outcome::kUnreachable) {
      co_await SendError(502, admission.reason, "cove egress proxy: " + admission.reason + "\n", false);
      co_return;
    }
    std::string established = "HTTP/1.1 200 Connection Established\r\nVia: " + std::string(kVia) + "\r\n\r\n";
    error_code ec;
    co_await asio::async_write(client_, asio::buffer(established), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    Touch();
    auto pending = client_buffer.data();
    std::string initial(static_cast<const char*>(pending.data()), pending.size());
    client_buffer.consume(pending.size());
    if (authority->port == 443) {
      // No domain fronting: the TLS server name must be the CONNECT host.
      ClientHelloScan scan = co_await ReadClientHello(initial);
      if (closed_) co_return;
      std::string problem;
      if (scan.outcome != ClientHelloScan::Outcome::kComplete) {
        problem = "CONNECT to port 443 without a valid TLS ClientHello: " + scan.problem;
      } else if (scan.server_name && *scan.server_name != authority->host) {
        problem = "TLS server name " + *scan.server_name + " differs from the CONNECT host " + authority->host;
      }
      if (!problem.empty()) {
        if (!initial.empty()) state_->Report(MakeDenial(destination, admission.address, problem));
        co_return;
      }
      if (admission.intercept) {
        co_await Intercept(authority->host, authority->port, std::move(initial), std::nullopt);
        co_return;
      }
    }
    co_await StartTunnel(std::move(initial));
  }

  std::shared_ptr<ProxyState> state_;
  HopStream client_;
  HopStream upstream_;
  asio::steady_timer idle_timer_;
  asio::steady_timer connect_timer_;
  std::chrono::steady_clock::time_point deadline_;
  bool transparent_;
  IpAddress source_;
  SandboxEgress sandbox_;     // refreshed from the lookup before each decision
  std::string upstream_key_;  // host:port the open upstream connection goes to
  IpAddress upstream_address_;
  uint64_t connect_attempt_ = 0;
  bool connect_timed_out_ = false;
  bool closed_ = false;
  bool tunnelling_ = false;
  bool intercepting_ = false;       // client_ speaks TLS with coved's leaf for intercept_host_
  std::string intercept_host_;
  int pumps_done_ = 0;
  std::optional<io::ConnectionRegistry::Slot> slot_;  // counts it under the sandbox it was admitted for
};

// A connection accepted on either listener: attributed to a sandbox by its
// source address (others are closed without an answer), counted under it,
// and served; over the caps it is closed and the sandbox's denial reported.
void Accept(const std::shared_ptr<ProxyState>& state, tcp::socket socket, bool transparent) {
  if (state->stopped) return;
  error_code ec;
  tcp::endpoint peer = socket.remote_endpoint(ec);
  if (ec) return;
  IpAddress source = FromAsioAddress(peer.address());
  auto sandbox = state->lookup(source);
  if (!sandbox || !sandbox->policy) return;  // unknown source: closed, no answer
  auto connection = std::make_shared<Connection>(state, std::move(socket), transparent, source, std::move(*sandbox));
  if (!connection->Admit()) {
    Denial denial;
    denial.sandbox_id = connection->sandbox_id();
    denial.reason = fmt::format("too many connections ({} open from this sandbox, {} in all)",
                                state->registry->count(denial.sandbox_id), state->registry->size());
    state->Report(denial);
    return;  // the connection closes
  }
  state->live[connection.get()] = connection;
  asio::co_spawn(state->io, Connection::Run(connection), asio::detached);
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
    std::vector<std::shared_ptr<Connection>> open;
    for (auto& [raw, weak] : state_->live) {
      if (auto connection = weak.lock()) open.push_back(std::move(connection));
    }
    for (auto& connection : open) connection->Close();
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
  auto state = std::make_shared<ProxyState>(io, std::move(options), std::move(resolver), std::move(lookup),
                                            std::move(denials));
  if (state->options.ca) COVE_TRY(SetUpInterception(*state));
  auto proxy = std::make_unique<EgressProxyImpl>(state);
  COVE_TRY(proxy->Listen());
  return std::unique_ptr<EgressProxy>(std::move(proxy));
}

}  // namespace cove::proxy
