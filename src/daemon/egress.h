// Egress: coved's sealed sandbox networking, wired together: the sandboxes'
// networks (namespaces, veths, firewall), coved's DNS for sandboxes, the
// egress proxy with its CA for TLS interception, the secrets, the policy
// directory and the denial log. With networking off
// only the policy directory and the denial log exist (policies can still be
// set; sandboxes then have loopback only).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/asio.h"
#include "io/connection_limits.h"
#include "io/shards.h"
#include "manager/running_sandboxes.h"
#include "manager/sandbox_networks.h"
#include "proxy/denial_log.h"
#include "proxy/dns_responder.h"
#include "proxy/egress_proxy.h"
#include "proxy/sandbox_directory.h"

namespace cove {

struct EgressConfig {
  bool sealed = true;                   // --network sealed|none
  std::string subnet = "10.200.0.0/15";
  size_t pool_size = 8;
  std::vector<std::string> dns_servers;  // empty: /etc/resolv.conf
  std::string state_dir;                 // names the firewall table; holds ca/ and secrets.json
  std::string upstream_ca;               // --upstream-ca: extra CA file for intercepted upstreams
  std::string default_policy;            // --egress-default: JSON policy of sandboxes without one
  io::ConnectionLimits connection_caps;  // the proxy's (per sandbox), and the upper bounds of DNS over TCP's
};

class Egress {
 public:
  // Starts the DNS responder and the proxy (when sealed) and opens the
  // networks. Both listen on `io` (home) and serve their connections on every
  // shard in turn, each shard with its own upstream resolver (DNS over UDP at
  // home). `running` (the Manager's published sandboxes) and `shards`
  // outlive the Egress.
  static Result<std::unique_ptr<Egress>> Start(asio::io_context& io, const io::Shards& shards,
                                               const EgressConfig& config, const RunningSandboxes* running);
  ~Egress();

  SandboxNetworks* networks() { return networks_.get(); }  // null when not sealed
  proxy::SandboxDirectory* directory() { return directory_.get(); }
  proxy::DenialLog* denials() { return &denials_; }
  proxy::SecretStore* secrets() { return secrets_.get(); }
  // PEM of coved's interception CA, for sandboxes' trust stores (empty when not sealed).
  std::string ca_certificate_pem() const { return ca_ ? ca_->certificate_pem() : std::string(); }
  bool sealed() const { return networks_ != nullptr; }
  // coved is stopping: pooled networks go, and the firewall table too when no sandbox is left.
  void Shutdown(bool no_sandbox_left);

 private:
  Egress() = default;
  proxy::DenialLog denials_;
  std::unique_ptr<proxy::SandboxDirectory> directory_;
  std::shared_ptr<proxy::SecretStore> secrets_;
  std::shared_ptr<proxy::CertificateAuthority> ca_;
  std::unique_ptr<proxy::DnsResponder> dns_;
  std::unique_ptr<proxy::EgressProxy> proxy_;
  std::unique_ptr<SandboxNetworks> networks_;
};

}  // namespace cove
