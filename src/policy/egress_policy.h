// Egress policy of one sandbox and its evaluation (Cloudflare Containers'
// order, reference §6.1): which destinations a sandbox may reach through
// coved's egress proxy. Pure data and functions: no I/O, thread-compatible.
//
// Evaluation of a destination (host name as the sandbox named it, port, and
// the address the proxy would connect to), first match wins:
//   1. deniedHosts (host glob or CIDR matching the name or the address)  -> deny
//   2. allowedHosts non-empty and nothing in it matches                  -> deny
//   3. per-host rules (first rule whose host glob matches)               -> that rule
//   4. a host that matched allowedHosts                                  -> allow
//   5. enableInternet                                                    -> allow
//   6. otherwise                                                         -> deny
// Steps 4 and 5 allow ports 80 and 443 only: any other port (raw TCP) needs
// an allowing rule that lists it. A rule applies when its host pattern, its
// ports and, when the destination's method/path are known, its methods and
// path prefix match; with method/path unknown a rule that constrains them
// applies tentatively (the caller sees rule->NeedsInterception() and decides
// again once it has intercepted the request).
// Whatever the order says, an address in a private, loopback, link-local,
// multicast or otherwise non-global range (the host's own and other
// sandboxes' among them) is denied unless an allowedHosts or allowing rule
// entry names that address's CIDR (prefix length > 0), or the exact host
// name, explicitly (not through '*').
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <netinet/in.h>

#include <nlohmann/json_fwd.hpp>

#include "base/error.h"

namespace cove::proxy {

// An IPv4 or IPv6 address in network byte order.
struct IpAddress {
  int family = AF_INET;  // AF_INET or AF_INET6
  uint8_t bytes[16] = {};
  static std::optional<IpAddress> Parse(const std::string& text);
  std::string ToString() const;
  bool operator==(const IpAddress&) const = default;
};

// A host pattern: a glob over names ('*' matches any run of characters within
// and across labels, "*.example.com" also matches deeper names but not
// "example.com" itself), an exact name, an IP literal, or a CIDR.
struct HostPattern {
  std::string text;  // as given, lower-cased
  static Result<HostPattern> Parse(const std::string& text);
  // True when the pattern matches the name (case-insensitive) or the address.
  bool Matches(const std::string& host, const std::optional<IpAddress>& addr) const;
  // True when the pattern names this host or address without a wildcard.
  bool NamesExplicitly(const std::string& host, const std::optional<IpAddress>& addr) const;
};

// A per-host rule: what happens to requests for hosts that match.
struct HostRule {
  HostPattern host;
  std::vector<uint16_t> ports;          // empty: 80 and 443 (HTTP/HTTPS); raw TCP needs a listed port
  std::string path_prefix;              // empty: every path (HTTP rules only)
  std::vector<std::string> methods;     // empty: every method (upper-case)
  bool allow = true;                    // false: deny what matches
  // Header templates applied to matching requests ("Authorization" ->
  // "Bearer {{secret.GITHUB_TOKEN}}"); a rule with any needs TLS interception.
  std::vector<std::pair<std::string, std::string>> set_headers;
  bool NeedsInterception() const { return !set_headers.empty() || !path_prefix.empty() || !methods.empty(); }
};

struct EgressPolicy {
  bool enable_internet = true;
  std::vector<HostPattern> allowed_hosts;
  std::vector<HostPattern> denied_hosts;
  std::vector<HostRule> rules;

  // JSON of the native API: {"enableInternet":bool, "allowedHosts":[...],
  // "deniedHosts":[...], "rules":[{"host":..,"ports":[..],"pathPrefix":..,
  // "methods":[..],"allow":bool,"setHeaders":{name:template}}]}. Unknown
  // fields, bad globs or CIDRs, ports outside 1-65535 are kInvalidArgument
  // with the offending field in the message.
  static Result<EgressPolicy> FromJson(const nlohmann::json& j);
  nlohmann::json ToJson() const;
};

// One destination to decide on. `method` and `path` are empty when unknown
// (a tunnel before interception, raw TCP).
struct Destination {
  std::string host;                 // lower-case name or IP literal as the sandbox used it
  uint16_t port = 0;
  std::optional<IpAddress> address; // the address the proxy will connect to, once resolved
  std::string method;
  std::string path;
};

struct Decision {
  bool allow = false;
  const HostRule* rule = nullptr;   // the per-host rule that decided, if any
  std::string reason;               // for the sandbox and the operator: "deniedHosts: *.evil.test"
};

Decision Decide(const EgressPolicy& policy, const Destination& dest);

// True for addresses that are not globally routable (RFC 1918, loopback,
// link-local, CGNAT, ULA, multicast, documentation ranges are NOT included
// here since tests use them as a fake internet: see the .cc for the list).
bool IsNonGlobal(const IpAddress& addr);

}  // namespace cove::proxy
