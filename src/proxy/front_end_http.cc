// The HTTP front end (egress_connection.h): explicit forward-proxy requests,
// plain HTTP on the transparent port 80, and the requests inside an
// intercepted TLS connection; each decided, with secrets injected
// (header_injection.h), and relayed with Boost.Beast: bodies streamed,
// hop-by-hop fields dropped, keep-alive, 100-continue, upgrades.
#include "proxy/egress_connection.h"

#include <algorithm>

#include "base/ascii.h"
#include "http/hop_by_hop.h"
#include "proxy/header_injection.h"
#include "proxy/http_target.h"

namespace cove::proxy::egress {
namespace {

// Bodies are streamed, never held: no limit. (Boost 1.74's parser treats
// body_limit(boost::none) as a limit every length exceeds.)
constexpr uint64_t kUnlimitedBody = std::numeric_limits<uint64_t>::max();

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

}  // namespace

// Serves HTTP/1.1 requests on the client connection until either side
// ends it. `original` is set on the transparent listener.
Task<void> EgressConnection::ServeHttp(std::optional<OriginalDestination> original) {
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

// Relays the upstream's interim responses and its final response to the
// client. kNoResponse when the upstream sent nothing valid before any byte
// went to the client (the caller answers); kClose when the client
// connection must end; kSwitchedProtocols after a 101 to a request that
// asked for an upgrade. `keep_client` is cleared when the response cannot be
// framed for keep-alive.
Task<EgressConnection::ResponseEnd> EgressConnection::RelayResponse(beast::flat_buffer& upstream_buffer, bool head, unsigned client_version,
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
Task<RelayResult> EgressConnection::RelayMessage(http::parser<kIsRequest, http::buffer_body>& parser, HopStream& from,
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

}  // namespace cove::proxy::egress
