// coved's egress proxy: the only way out of a sealed sandbox. Two kinds of
// listener on the host side of the sandboxes' veths:
//   - explicit: HTTP/1.1 forward proxy (absolute-form requests and CONNECT),
//     what HTTP_PROXY/HTTPS_PROXY in the sandbox point at;
//   - transparent: TCP that the packet filter redirected (REDIRECT); the
//     original destination comes from SO_ORIGINAL_DST. Port 80 is parsed as
//     HTTP (Host header), 443 as TLS (SNI from the ClientHello, then tunnelled
//     untouched, or intercepted: see EgressProxyOptions::ca), any other port
//     is raw TCP allowed only by a rule that names host:port.
// Requests the proxy sees (plain HTTP, intercepted HTTPS) get the deciding
// rule's header templates expanded with secrets, and placeholder tokens
// replaced (bound host) or blocked (any other host: exfiltration).
// Every connection is attributed to a sandbox by its source address (the
// packet filter drops spoofed sources), decided by that sandbox's policy
// (policy.h) on the name AND the address the proxy resolves and connects to,
// and denials are answered (HTTP 403 with a JSON/text reason for proxied HTTP,
// a closed connection otherwise) and reported through the DenialSink.
// Host, SNI and CONNECT target must agree (no domain fronting).
// Accepts on one io_context (home) and serves each connection on the next of
// EgressProxyOptions::shards in turn (coved: every io thread), with that
// shard's resolver; the lookup, the denial sink, name_for_address, the CA and
// the secrets are called from every shard, so they must be thread-safe.
// Bounded: header sizes, idle and connect timeouts,
// connections per sandbox and in all (both listeners together; a connection
// not yet past its request head, or ClientHello, is idle and closed first to
// make room: io/listener.h).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "io/asio.h"
#include "proxy/certificate_authority.h"
#include "policy/egress_policy.h"
#include "proxy/resolver.h"
#include "proxy/secret_store.h"
#include "proxy/serving_shard.h"

namespace cove::proxy {

// What the proxy knows about the sandbox behind a source address.
struct SandboxEgress {
  std::string sandbox_id;
  std::shared_ptr<const EgressPolicy> policy;  // replaced (not mutated) on change
};

struct Denial {
  std::string sandbox_id;
  std::string destination;  // host:port as requested
  std::string address;      // the resolved address, if any
  std::string reason;       // Decision::reason or a protocol violation
};

struct EgressProxyOptions {
  std::string bind_address = "0.0.0.0";
  uint16_t explicit_port = 0;     // 0: any free port (read it back with explicit_port())
  uint16_t transparent_port = 0;
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds idle_timeout{300000};
  size_t max_header_bytes = 64 << 10;
  size_t max_connections = 1024;              // both listeners together
  size_t max_connections_per_sandbox = 256;   // by source address, i.e. per sandbox
  // SO_MARK of upstream sockets (0: none); coved's firewall refuses marked
  // sockets the host's own addresses and the sandboxes (net/firewall.h).
  uint32_t upstream_mark = 0x636f7665;  // "cove"
  // The name a sandbox looked up to get an address (coved's DNS remembers
  // its answers): raw TCP to that address is decided on the name, so a rule
  // can name "ssh.example.com" rather than its addresses. Optional.
  std::function<std::optional<std::string>(const std::string& sandbox_id, const IpAddress& address)> name_for_address;
  // TLS interception (null: none; tunnels a rule would need to intercept are
  // denied). Hosts whose rule NeedsInterception() or that are bound to a
  // placeholder secret are intercepted on port 443: the sandbox gets a leaf
  // of this CA, requests are decided one by one, and go upstream over TLS
  // verified against the system trust store plus upstream_ca_file.
  std::shared_ptr<CertificateAuthority> ca;
  std::string upstream_ca_file;
  // Secrets for header templates and placeholders (null: none).
  std::shared_ptr<SecretStore> secrets;
  // Where connections are served, each accepted one on the next in turn
  // (moved there with its socket). Empty: on the io_context given to Start,
  // with the resolver given to Start.
  std::vector<ServingShard> shards;
};

class EgressProxy {
 public:
  using SandboxLookup = std::function<std::optional<SandboxEgress>(const IpAddress& source)>;
  using DenialSink = std::function<void(const Denial&)>;

  static Result<std::unique_ptr<EgressProxy>> Start(asio::io_context& io, EgressProxyOptions options,
                                                    std::shared_ptr<Resolver> resolver, SandboxLookup lookup,
                                                    DenialSink denials);
  virtual ~EgressProxy() = default;
  virtual uint16_t explicit_port() const = 0;
  virtual uint16_t transparent_port() const = 0;
  // Stops accepting and closes every connection (on its shard: the closes
  // are posted there). Call Stop() and destroy the proxy on the io_context's
  // thread (or while it is not running), before the io_context is destroyed.
  virtual void Stop() = 0;
};

}  // namespace cove::proxy
