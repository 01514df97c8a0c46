// Request targets and Host headers of proxied HTTP (RFC 9112 §3.2).
#include "base/ascii.h"
#include "proxy/http_target.h"

#include "policy/egress_policy.h"

namespace cove::proxy {
namespace {

bool IsDnsName(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

// "host:port", with an IPv6 literal in brackets.
std::string HostPort(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::optional<Authority> ParseAuthority(std::string_view text, uint16_t default_port) {
  Authority out;
  std::string_view host;
  std::string_view rest;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    rest = text.substr(close + 1);
    auto literal = IpAddress::Parse(std::string(host));
    if (!literal || literal->family != AF_INET6) return std::nullopt;
  } else {
    size_t colon = text.find(':');
    host = text.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view() : text.substr(colon);
  }
  if (rest.empty()) {
    if (default_port == 0) return std::nullopt;
    out.port = default_port;
  } else {
    if (rest.front() != ':' || rest.size() < 2 || rest.size() > 6) return std::nullopt;
    uint32_t port = 0;
    for (char c : rest.substr(1)) {
      if (c < '0' || c > '9') return std::nullopt;
      port = port * 10 + static_cast<uint32_t>(c - '0');
    }
    if (port == 0 || port > 65535) return std::nullopt;
    out.port = static_cast<uint16_t>(port);
  }
  out.host = AsciiLower(host);
  if (!out.host.empty() && out.host.back() == '.') out.host.pop_back();
  if (!IsDnsName(out.host) && !IpAddress::Parse(out.host)) return std::nullopt;
  return out;
}

std::optional<HttpTarget> ParseHttpTarget(std::string_view target, const std::vector<std::string_view>& host_headers,
                                          std::optional<uint16_t> transparent_port, std::string* problem) {
  HttpTarget out;
  if (host_headers.size() > 1) {
    *problem = "more than one Host header";
    return std::nullopt;
  }
  std::optional<Authority> host_header;
  if (host_headers.size() == 1) {
    host_header = ParseAuthority(host_headers[0], transparent_port.value_or(80));
    if (!host_header) {
      *problem = "bad Host header";
      return std::nullopt;
    }
  }
  if (transparent_port) {
    if (target.empty() || target.front() != '/') {
      *problem = "request target is not origin-form";
      return std::nullopt;
    }
    if (!host_header) {
      *problem = "no Host header";
      return std::nullopt;
    }
    if (host_header->port != *transparent_port) {
      *problem = "Host header port differs from the connection's destination port";
      return std::nullopt;
    }
    out.authority = *host_header;
    out.origin_form = std::string(target);
    return out;
  }
  constexpr std::string_view kScheme = "http://";
  if (target.size() < kScheme.size() || !AsciiIEquals(target.substr(0, kScheme.size()), kScheme)) {
    *problem = "the proxy takes absolute-form http:// requests only (use CONNECT for https)";
    return std::nullopt;
  }
  std::string_view rest = target.substr(kScheme.size());
  size_t end = rest.find_first_of("/?#");
  std::string_view authority_text = rest.substr(0, end);
  if (authority_text.find('@') != std::string_view::npos) {
    *problem = "user information in the request target";
    return std::nullopt;
  }
  auto authority = ParseAuthority(authority_text, 80);
  if (!authority) {
    *problem = "bad authority in the request target";
    return std::nullopt;
  }
  if (host_header && (host_header->host != authority->host || host_header->port != authority->port)) {
    *problem = "Host header " + HostPort(host_header->host, host_header->port) + " differs from the request target " +
               HostPort(authority->host, authority->port);
    return std::nullopt;
  }
  out.authority = *authority;
  std::string_view path = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  size_t fragment = path.find('#');
  if (fragment != std::string_view::npos) path = path.substr(0, fragment);
  out.origin_form = path.empty() || path.front() != '/' ? "/" + std::string(path) : std::string(path);
  return out;
}

}  // namespace cove::proxy
