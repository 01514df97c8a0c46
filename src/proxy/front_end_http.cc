// The HTTP front end (egress_connection.h): explicit forward-proxy requests,
// plain HTTP on the transparent port 80, and the requests inside an
// intercepted TLS connection; each decided, with secrets injected
// (header_injection.h), and relayed by http/'s relay, the preview
// listener's: heads parsed strictly (ambiguous framing refused), bodies
// streamed as they are framed, hop-by-hop fields dropped, keep-alive,
// 100-continue, upgrades switching to a tunnel.
#include "proxy/egress_connection.h"

#include <algorithm>

#include "base/ascii.h"
#include "http/forwarding.h"
#include "http/message_relay.h"
#include "proxy/header_injection.h"

namespace cove::proxy::egress {
namespace {

// Adds the proxy to Via (one field, after those before it).
void AddVia(http::HttpHead& head) {
  std::string via;
  for (const auto& [name, value] : head.headers)
    if (AsciiIEquals(name, "via")) via += (via.empty() ? "" : ", ") + value;
  head.Remove("via");
  head.Add("Via", via.empty() ? std::string(kVia) : via + ", " + kVia);
}

}  // namespace

Task<void> EgressConnection::ServeHttp(std::optional<OriginalDestination> original) {
  const size_t max_head = state_->options.max_header_bytes;
  while (!closed_) {
    std::string text;
    Idle();
    http::HeadStatus status = co_await http::ReadHead(client_, cbuf_, idle_.at(), max_head, &text);
    Busy();
    Touch();
    if (closed_ || shed()) co_return;
    if (status == http::HeadStatus::kTooLarge) {
      co_await SendError(431, "request header too large", "cove egress proxy: request header too large\n", false);
      co_return;
    }
    if (status != http::HeadStatus::kOk) co_return;
    auto parsed = http::ParseRequestHead(text);
    if (!parsed.ok()) {
      co_await SendError(400, "malformed request: " + parsed.error().message, "cove egress proxy: malformed request\n",
                         false);
      co_return;
    }
    http::HttpHead req = std::move(*parsed);
    if (req.method == "CONNECT") {
      if (original) {
        co_await SendError(400, "CONNECT on a transparent connection", "cove egress proxy: bad request\n", false);
      } else {
        co_await ServeConnect(req);
      }
      co_return;
    }
    auto framing = http::RequestFraming(req);
    if (!framing.ok()) {
      // Its body would be framed one way here and maybe another upstream.
      co_await SendError(400, framing.error().message, "cove egress proxy: bad request\n", false);
      co_return;
    }
    bool has_body = framing->kind != http::BodyKind::kNone;
    std::string problem;
    std::optional<uint16_t> transparent_port;
    if (original) transparent_port = original->port;
    std::vector<std::string_view> host_headers;
    for (const auto& [name, value] : req.headers)
      if (AsciiIEquals(name, "host")) host_headers.emplace_back(value);
    auto target = ParseHttpTarget(req.target, host_headers, transparent_port, &problem);
    if (!target) {
      std::string destination = req.target.substr(0, 256);
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
    bool keep_client = http::KeepAlive(req);
    std::string method = req.method;
    std::string destination = HostPort(target->authority.host, target->authority.port);
    std::string scheme = intercepting_ ? "https://" : "http://";
    std::optional<IpAddress> preferred;
    if (original) preferred = original->address;
    Admission admission =
        co_await OpenUpstream(target->authority.host, target->authority.port, method, target->origin_form, preferred);
    if (closed_) co_return;
    std::string refusal;  // a denial of the chain after the decision
    if (admission.outcome == Admission::Outcome::kAllowed) {
      refusal = InjectSecrets(req, target->origin_form, target->authority.host, admission.set_headers,
                              *state_->Secrets());
    }
    if (admission.outcome != Admission::Outcome::kAllowed || !refusal.empty()) {
      bool keep = keep_client && !has_body;
      std::string what = method + " " + scheme + destination + target->origin_form;
      if (!refusal.empty()) {
        co_await DenyRequest(destination, admission.address, refusal, what, 403, keep);
      } else if (admission.outcome == Admission::Outcome::kDenied) {
        co_await DenyRequest(destination, admission.address, admission.reason, what, 403, keep);
      } else {
        co_await SendError(502, admission.reason, "cove egress proxy: " + admission.reason + "\n", keep);
      }
      if (has_body) {
        co_await LingeringClose();
        co_return;
      }
      if (!keep) co_return;
      continue;
    }

    bool expects_continue = AsciiIEquals(req.Get("expect"), "100-continue");
    bool upgrade = http::WantsUpgrade(req);
    int client_minor = req.version_minor;
    req.Remove("expect");
    req.target = target->origin_form;
    // Upgrade is hop-by-hop, but the proxy carries it on: the switched
    // protocol (WebSocket) then runs in a tunnel to the same destination.
    // The upstream connection outlives the request only if the client's
    // does: a client that closes after this request has the upstream close
    // too, so the server (as for a direct client) and not coved holds the
    // TIME_WAIT. Otherwise every such request would park one of coved's
    // ephemeral ports for 60 s, and a sandbox opening connections faster
    // than ~470/s to one destination runs coved out of ports.
    http::PrepareRequest(req, upgrade, keep_client);
    AddVia(req);
    if (expects_continue && has_body) {
      // The proxy decided and reached the upstream: the client may send.
      static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      io::IoError ec;
      co_await client_.WriteAll(asio::buffer(kContinue, sizeof kContinue - 1), ec);
      if (ec) co_return;
    }
    // A kept-alive upstream connection may have been closed by the server
    // meanwhile: a request without a body is sent again once on a new one.
    bool may_retry = admission.reused && !has_body;
    bool more = co_await Exchange(req.SerializeRequest(), method, client_minor, *framing, keep_client, upgrade,
                                  may_retry, *target, preferred);
    if (!more) co_return;
  }
}

Task<bool> EgressConnection::Exchange(const std::string& head_text, const std::string& method, int client_minor,
                                      http::Framing framing, bool keep_client, bool upgrade, bool may_retry,
                                      const HttpTarget& target, std::optional<IpAddress> preferred) {
  const size_t max_head = state_->options.max_header_bytes;
  auto touch = [this] { Touch(); };
  std::string destination = HostPort(target.authority.host, target.authority.port);
  http::HttpHead resp;
  for (;;) {
    std::string failure;
    io::IoError ec;
    co_await upstream_.WriteAll(asio::buffer(head_text), ec);
    Touch();
    if (ec) {
      failure = ec.message();
    } else if (framing.kind != http::BodyKind::kNone) {
      http::BodyEnd sent = co_await http::RelayBody(client_, cbuf_, upstream_, framing, touch);
      // The client went away, or its chunked body was malformed: no answer.
      if (sent == http::BodyEnd::kReadFailed) co_return false;
      if (sent == http::BodyEnd::kWriteFailed) failure = "the request body could not be sent";
    }
    if (failure.empty()) {
      bool interim = false;
      http::HeadStatus status = co_await http::ReadResponseHead(upstream_, ubuf_, state_->options.idle_timeout,
                                                                max_head, client_, &resp, &interim);
      Touch();
      if (status == http::HeadStatus::kOk) break;
      // The client has an interim answer: it cannot get an error instead.
      if (interim || closed_) co_return false;
      if (status == http::HeadStatus::kMalformed) failure = "malformed response head";
      if (status == http::HeadStatus::kTooLarge) failure = "response head too large";
    }
    if (closed_) co_return false;
    CloseUpstream();
    if (may_retry) {
      may_retry = false;
      Admission again = co_await OpenUpstream(target.authority.host, target.authority.port, method,
                                              target.origin_form, preferred);
      if (closed_) co_return false;
      if (again.outcome == Admission::Outcome::kAllowed) continue;
    }
    std::string reason = "upstream " + destination + " sent no response";
    if (!failure.empty()) reason = "upstream " + destination + " failed: " + failure;
    co_await SendError(502, reason, "cove egress proxy: " + reason + "\n", false);
    co_return false;
  }

  // A 101 (plan empty) switches to a tunnel; anything else is a final answer.
  std::optional<http::ResponsePlan> plan;
  if (resp.status == 101) {
    if (!upgrade || !http::PrepareSwitch(resp)) {
      co_await SendError(502, "upgrade", "cove egress proxy: upstream switched protocols unasked\n", false);
      co_return false;
    }
  } else {
    auto prepared = http::PrepareResponse(resp, method, client_minor, keep_client);
    if (!prepared.ok()) {
      CloseUpstream();
      std::string reason = "upstream " + destination + " failed: " + prepared.error().message;
      co_await SendError(502, reason, "cove egress proxy: " + reason + "\n", false);
      co_return false;
    }
    plan = *prepared;
  }
  AddVia(resp);
  std::string out = resp.SerializeResponse();
  io::IoError ec;
  co_await client_.WriteAll(asio::buffer(out), ec);
  if (ec) co_return false;
  Touch();
  if (!plan) {
    // What either side sent after its head goes first, then the tunnel.
    std::string to_upstream = std::exchange(cbuf_, std::string());
    std::string to_client = std::exchange(ubuf_, std::string());
    co_await StartTunnel(std::move(to_upstream), std::move(to_client));
    co_return false;
  }
  http::BodyEnd end = plan->rechunk ? co_await http::RelayBodyAsChunked(upstream_, ubuf_, client_, touch)
                                    : co_await http::RelayBody(upstream_, ubuf_, client_, plan->framing, touch);
  if (end != http::BodyEnd::kDone) co_return false;
  if (!plan->keep_upstream) CloseUpstream();
  co_return plan->keep_client;
}

}  // namespace cove::proxy::egress
