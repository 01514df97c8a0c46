// DnsResponder: the DNS server sandboxes talk to (coved redirects their port
// 53 traffic here), so DNS cannot be a tunnel out: coved resolves only names
// the sandbox's egress policy allows and answers everything else itself.
//
// Listens on UDP and TCP on one address:port. Each query is attributed to a
// sandbox by its source address (the packet filter drops spoofed sources):
//   - a message too short for a header, or a response (QR set): no answer;
//   - a malformed query: FORMERR; an opcode other than QUERY: NOTIMP;
//   - unknown source, non-IN class, other types than A/AAAA: REFUSED;
//   - a name the policy allows on no port (Decide() on 443, 80 and every
//     port a rule lists): NXDOMAIN, and an A query's denial is reported;
//   - AAAA for an allowed name: NOERROR without answers (no IPv6 inside);
//   - A for an allowed name: the upstream addresses the policy also allows
//     (a name resolving only to denied, e.g. non-global, addresses is
//     NXDOMAIN and reported), with a short TTL. Resolver failures: SERVFAIL.
// Each address returned is remembered per sandbox with the name it came from
// (bounded, least recently answered forgotten first; the latest name wins
// when two share an address), for the proxy to match raw-TCP rules by name.
// Bounded: queries in flight per sandbox and overall, TCP connections per
// sandbox and overall (one waiting for its next query is idle and closed
// first to make room: io/listener.h), TCP message size, idle TCP
// connections, resolution time. UDP answers fit 512
// bytes (TC set otherwise; the client retries over TCP).
// UDP is served on the io_context given to Start (home), with its resolver;
// each TCP connection is accepted there and served on the next of
// DnsResponderOptions::shards in turn, with that shard's resolver. What they
// share is thread-safe (one mutex: queries in flight, the address -> name
// memory, the open connections); the lookup and the sink are called from
// every shard. Start, Stop and the destructor at home; NameForAddress and
// ForgetSandbox from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "io/asio.h"
#include "proxy/egress_proxy.h"
#include "policy/egress_policy.h"
#include "proxy/resolver.h"
#include "proxy/serving_shard.h"

namespace cove::proxy {

struct DnsDenial {
  std::string sandbox_id;
  std::string name;    // lower-case, as queried
  std::string reason;  // Decision::reason
};

struct DnsResponderOptions {
  std::string bind_address = "127.0.0.1";
  uint16_t port = 0;  // 0: any free port, the same for UDP and TCP (read it back with port())
  std::chrono::milliseconds resolve_timeout{5000};
  std::chrono::milliseconds tcp_idle_timeout{10000};
  uint32_t answer_ttl = 30;                 // seconds, in the A records given to sandboxes
  size_t max_queries_per_sandbox = 64;      // resolutions in flight; beyond: SERVFAIL
  size_t max_queries_total = 1024;          // datagrams being answered; beyond: dropped
  size_t max_tcp_connections_per_sandbox = 8;
  size_t max_tcp_connections_total = 256;
  size_t max_tcp_message_bytes = 4096;      // a bigger TCP query closes the connection
  size_t max_names_per_sandbox = 4096;      // address -> name memory
  // Where TCP connections are served, in turn; empty: on the io_context
  // given to Start, with the resolver given to Start.
  std::vector<ServingShard> shards;
};

class DnsResponder {
 public:
  // Same shape as EgressProxy::SandboxLookup, so coved passes one function to both.
  using SandboxLookup = std::function<std::optional<SandboxEgress>(const IpAddress& source)>;
  using DenialSink = std::function<void(const DnsDenial&)>;

  static Result<std::unique_ptr<DnsResponder>> Start(asio::io_context& io, DnsResponderOptions options,
                                                     std::shared_ptr<Resolver> resolver, SandboxLookup lookup,
                                                     DenialSink denials);
  ~DnsResponder();
  DnsResponder(const DnsResponder&) = delete;
  DnsResponder& operator=(const DnsResponder&) = delete;

  uint16_t port() const;
  // The name whose A answer to this sandbox last held `address`, if remembered.
  std::optional<std::string> NameForAddress(const std::string& sandbox_id, const IpAddress& address) const;
  // Drops what is remembered for a sandbox (call when it is destroyed).
  void ForgetSandbox(const std::string& sandbox_id);
  // Stops listening and closes every connection; idempotent.
  void Stop();

  struct Impl;

 private:
  explicit DnsResponder(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace cove::proxy
