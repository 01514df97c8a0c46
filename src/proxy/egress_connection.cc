// EgressConnection (egress_connection.h): its life (admission, idle deadline,
// close), TLS interception, tunnels, and the answers the proxy gives itself.
#include "proxy/egress_connection.h"

#include <sys/socket.h>

#include <algorithm>

#include <openssl/ssl.h>

#include "base/log.h"
#include "io/splice_pump.h"
#include "proxy/http_target.h"

namespace cove::proxy::egress {
namespace {

// A reason fit for one header line: printable ASCII only.
std::string HeaderSafe(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 512)) out.push_back(c >= 0x20 && c < 0x7f ? c : ' ');
  return out;
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

}  // namespace

// Counts the connection in the proxy's registry under its sandbox (Close()
// sheds it); false when over a cap with nothing idle to make room.
// The registry may shed it from any thread: the closer only shuts the socket
// down, and the connection's pending read ends (Close() uncounts it before
// closing the descriptor, so a late shed never hits a reused one).
bool EgressConnection::Admit() {
  slot_ = state_->registry->Admit(sandbox_.sandbox_id,
                                  [fd = client_.socket().native_handle()] { ::shutdown(fd, SHUT_RDWR); });
  return slot_.has_value();
}

Task<void> EgressConnection::Run(std::shared_ptr<EgressConnection> self) {
  error_code ignored;
  self->client_.socket().set_option(tcp::no_delay(true), ignored);
  if (self->transparent_) {
    co_await self->ServeTransparent();
  } else {
    co_await self->ServeHttp(std::nullopt);
  }
  if (!self->tunnelling_) self->Close();
}

void EgressConnection::Close() {
  if (closed_) return;
  closed_ = true;
  slot_.reset();  // uncounted before its descriptor may be reused
  error_code ignored;
  client_.socket().close(ignored);
  upstream_.socket().close(ignored);
  idle_.Clear();
}

Denial EgressConnection::MakeDenial(std::string destination, std::string address, std::string reason) const {
  Denial d;
  d.sandbox_id = sandbox_.sandbox_id;
  d.destination = std::move(destination);
  d.address = std::move(address);
  d.reason = std::move(reason);
  return d;
}

// Terminates the sandbox's TLS (already allowed to host:port, `initial`
// being what it sent so far) with a leaf of coved's CA for `host`, then
// serves the HTTP requests inside, each decided on its own and sent over a
// new, verified TLS connection to the upstream.
Task<void> EgressConnection::Intercept(std::string host, uint16_t port, std::string initial, std::optional<IpAddress> preferred) {
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

// Reads from the client into `bytes` until it holds a ClientHello (or
// cannot be one), at most max_header_bytes.
Task<ClientHelloScan> EgressConnection::ReadClientHello(std::string& bytes) {
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

// The chain for a tunnel: decide and connect (a denial is reported, the
// connection closes), then intercept or pass through.
Task<void> EgressConnection::ForwardTunnel(EgressFlow flow) {
  Admission admission = co_await OpenUpstream(flow.host, flow.port, "", "", flow.preferred);
  if (admission.outcome != Admission::Outcome::kAllowed) {
    if (admission.outcome == Admission::Outcome::kDenied) {
      state_->Report(MakeDenial(HostPort(flow.host, flow.port), admission.address, admission.reason));
    }
    co_return;
  }
  co_await PassTunnel(std::move(flow), admission);
}

// An allowed tunnel whose upstream is connected: intercepted when the
// decision asks for it, else relayed as it is.
Task<void> EgressConnection::PassTunnel(EgressFlow flow, const Admission& admission) {
  if (admission.intercept) {
    co_await Intercept(flow.host, flow.port, std::move(flow.initial), flow.preferred);
    co_return;
  }
  co_await StartTunnel(std::move(flow.initial));
}

// Writes `initial` upstream (and `initial_to_client` to the client), then
// relays bytes both ways until both sides are done; the connection closes
// when both directions ended.
Task<void> EgressConnection::StartTunnel(std::string initial, std::string initial_to_client) {
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
Task<void> EgressConnection::Pump(std::shared_ptr<EgressConnection> self, bool client_to_upstream) {
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
Task<error_code> EgressConnection::Copy(HopStream& from, HopStream& to) {
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

// Answers with a short text error. `reason` also goes in X-Cove-Egress-Denied
// for denials (403) and protocol violations (400).
Task<void> EgressConnection::SendError(int status, std::string reason, std::string body, bool keep_alive) {
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
Task<void> EgressConnection::LingeringClose() {
  error_code ec;
  client_.socket().shutdown(tcp::socket::shutdown_send, ec);
  std::vector<char> buffer(8192);
  size_t drained = 0;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  idle_.Set(std::min(idle_.at(), until));
  while (!closed_ && drained < (1 << 20)) {
    size_t n = co_await client_.async_read_some(asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    drained += n;
  }
  Close();
}

Task<void> EgressConnection::DenyRequest(std::string destination, std::string address, std::string reason, std::string what,
                                         int status, bool keep_alive) {
  state_->Report(MakeDenial(destination, address, reason));
  std::string body = "cove egress proxy: " + what + " denied: " + reason + "\n";
  co_await SendError(status, reason, std::move(body), keep_alive);
}

}  // namespace cove::proxy::egress
