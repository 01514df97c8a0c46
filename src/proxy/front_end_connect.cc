// The CONNECT front end (egress_connection.h): a tunnel to host:port asked
// for on the explicit listener, decided before it is established; on port 443
// the ClientHello's server name must be the CONNECT host (no domain fronting).
#include "proxy/egress_connection.h"

#include "proxy/http_target.h"

namespace cove::proxy::egress {

Task<void> EgressConnection::ServeConnect(const http::HttpHead& req) {
  std::string_view target_text = req.target;
  auto authority = ParseAuthority(target_text, 0);
  std::string destination(target_text.substr(0, 256));
  if (!authority) {
    co_await DenyRequest(destination, "", "bad CONNECT target (host:port expected)", "CONNECT", 400, false);
    co_return;
  }
  destination = HostPort(authority->host, authority->port);
  if (size_t hosts = req.Count("host"); hosts > 0) {
    auto host = ParseAuthority(req.Get("host"), authority->port);
    if (hosts > 1 || !host || host->host != authority->host ||
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
  std::string initial = std::exchange(cbuf_, std::string());
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
  }
  EgressFlow flow;
  flow.host = authority->host;
  flow.port = authority->port;
  flow.initial = std::move(initial);
  co_await PassTunnel(std::move(flow), admission);
}

}  // namespace cove::proxy::egress
