// Where a proxied HTTP request goes: its request target and Host header(s)
// parsed and checked against each other (no domain fronting). Pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cove::proxy {

// A host and port as a request named them.
struct Authority {
  std::string host;  // lower-case, no trailing dot, IPv6 literal without brackets
  uint16_t port = 0;
};

// "host[:port]" or "[v6]:port"; the port is required when default_port is 0.
// The host must be a DNS name (letters, digits, '-', '_', '.') or an IP literal.
std::optional<Authority> ParseAuthority(std::string_view text, uint16_t default_port);

// "host:port", with an IPv6 literal in brackets.
std::string HostPort(const std::string& host, uint16_t port);

struct HttpTarget {
  Authority authority;
  std::string origin_form;  // path and query, what goes upstream
};

// Explicit listener (transparent_port empty): an absolute-form
// "http://authority/path" target whose Host header, if any, names the same
// authority. Transparent listener: an origin-form target with a Host header
// whose port, if any, is the original destination port. More than one Host
// header is an error. nullopt with `problem` set when the request is refused.
std::optional<HttpTarget> ParseHttpTarget(std::string_view target, const std::vector<std::string_view>& host_headers,
                                          std::optional<uint16_t> transparent_port, std::string* problem);

}  // namespace cove::proxy
