// The chain behind the front ends (egress_connection.h): decide on each
// address of a destination (DecideEgress), connect to the first allowed one
// that answers, with TLS to it when intercepting; what the decision asks of
// the proxy (header templates, interception).
#include "proxy/egress_connection.h"

#include <algorithm>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "proxy/asio_address.h"
#include "proxy/egress_decision.h"
#include "proxy/http_target.h"

namespace cove::proxy::egress {

// Decides on (host, port, address) for each address of `host` (the
// preferred one first) and connects to the first allowed one that answers.
// Reuses the open upstream connection when it goes to the same host:port.
Task<Admission> EgressConnection::OpenUpstream(std::string host, uint16_t port, std::string method, std::string path,
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
    auto resolved = co_await resolver_->Resolve(host, true, state_->options.connect_timeout);
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
void EgressConnection::Describe(Admission& admission, const Decision& decision, const std::string& host, uint16_t port,
                                const std::string& method) {
  if (decision.rule) admission.set_headers = decision.rule->set_headers;
  if (!method.empty()) return;
  admission.intercept = InterceptsTunnel(decision, host, port, state_->can_intercept(), *state_->Secrets());
}

// TLS to the upstream of an intercepted connection, verified against the
// system's and the operator's CAs for `host`. Empty, or what failed.
Task<std::string> EgressConnection::UpstreamTls(const std::string& host) {
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

Task<error_code> EgressConnection::ConnectUpstream(IpAddress address, uint16_t port) {
  upstream_.Reset();
  io::Deadline connect_deadline(upstream_.socket(), std::chrono::steady_clock::now() + state_->options.connect_timeout);
  tcp::endpoint endpoint(ToAsioAddress(address), port);
  error_code ec;
  upstream_.socket().open(endpoint.protocol(), ec);
  uint32_t mark = state_->options.upstream_mark;
  if (!ec && mark && ::setsockopt(upstream_.socket().native_handle(), SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0)
    ec = error_code(errno, boost::system::system_category());
  if (!ec) co_await upstream_.socket().async_connect(endpoint, asio::redirect_error(asio::use_awaitable, ec));
  Touch();
  if (ec && connect_deadline.fired()) ec = asio::error::timed_out;
  if (ec) {
    error_code ignored;
    upstream_.socket().close(ignored);
  } else {
    error_code ignored;
    upstream_.socket().set_option(tcp::no_delay(true), ignored);
  }
  co_return ec;
}

void EgressConnection::CloseUpstream() {
  error_code ignored;
  upstream_.Reset();
  upstream_key_.clear();
  ubuf_.clear();
}

}  // namespace cove::proxy::egress
