// The transparent listener's front end (egress_connection.h): connections
// the packet filter redirected, by their original destination (SO_ORIGINAL_DST):
// port 80 is HTTP (front_end_http.cc), 443 TLS decided on the ClientHello's
// server name, any other port raw TCP decided on the name the sandbox looked up.
#include "proxy/egress_connection.h"

#include "base/log.h"
#include "proxy/asio_address.h"
#include "proxy/http_target.h"

namespace cove::proxy::egress {

Task<void> EgressConnection::ServeTransparent() {
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

Task<void> EgressConnection::ServeTransparentTls(OriginalDestination original) {
  std::string hello;
  ClientHelloScan scan = co_await ReadClientHello(hello);
  Busy();
  std::string literal = original.address.ToString();
  if (scan.outcome != ClientHelloScan::Outcome::kComplete) {
    // A connection that ended before its first byte is no denial.
    if (!closed_ && !shed() && !hello.empty()) {
      state_->Report(MakeDenial(HostPort(literal, original.port), literal, "TLS: " + scan.problem));
    }
    co_return;
  }
  EgressFlow flow;
  flow.host = scan.server_name.value_or(literal);
  flow.port = original.port;
  flow.preferred = original.address;
  flow.initial = std::move(hello);
  co_await ForwardTunnel(std::move(flow));
}

Task<void> EgressConnection::ServeRawTcp(OriginalDestination original) {
  Busy();
  EgressFlow flow;
  flow.host = RawTcpName(original.address);
  flow.port = original.port;
  flow.preferred = original.address;
  co_await ForwardTunnel(std::move(flow));
}

// The DNS name this sandbox got `address` from, else the address itself.
std::string EgressConnection::RawTcpName(const IpAddress& address) {
  if (state_->options.name_for_address) {
    if (auto sandbox = state_->lookup(source_)) {
      if (auto name = state_->options.name_for_address(sandbox->sandbox_id, address)) return *name;
    }
  }
  return address.ToString();
}

}  // namespace cove::proxy::egress
