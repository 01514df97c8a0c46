#include "daemon/egress.h"

#include <algorithm>
#include <functional>

#include "base/log.h"
#include "proxy/upstream_resolver.h"

namespace cove {
namespace {

// One nftables table per state directory, so that several coveds share a host.
std::string TableName(const std::string& state_dir) {
  return fmt::format("cove_{:08x}", static_cast<uint32_t>(std::hash<std::string>{}(state_dir)));
}

}  // namespace

Result<std::unique_ptr<Egress>> Egress::Start(asio::io_context& io, const io::Shards& shards,
                                              const EgressConfig& config, const RunningSandboxes* running) {
  std::unique_ptr<Egress> e(new Egress());
  COVE_ASSIGN_OR_RETURN(net::AddressPlan plan, net::AddressPlan::Parse(config.subnet));
  auto default_policy = std::make_shared<proxy::EgressPolicy>();
  if (!config.default_policy.empty()) {
    auto json = nlohmann::json::parse(config.default_policy, nullptr, false);
    if (json.is_discarded()) return MakeError(ErrorCode::kInvalidArgument, "--egress-default is not JSON");
    COVE_ASSIGN_OR_RETURN(*default_policy, proxy::EgressPolicy::FromJson(json));
  }
  e->directory_ = std::make_unique<proxy::SandboxDirectory>(running, plan, default_policy);
  COVE_ASSIGN_OR_RETURN(e->secrets_, proxy::SecretStore::Open(config.state_dir + "/secrets.json"));
  if (!config.sealed) return e;
  COVE_ASSIGN_OR_RETURN(e->ca_, proxy::CertificateAuthority::LoadOrCreate(config.state_dir + "/ca"));

  proxy::UpstreamResolverOptions ropts;
  ropts.servers = config.dns_servers;
  // One resolver per shard: each runs (and caches) on its own thread.
  std::vector<proxy::ServingShard> serving;
  for (size_t i = 0; i < shards.size(); ++i) {
    COVE_ASSIGN_OR_RETURN(auto shard_resolver, proxy::UpstreamResolver::Create(shards.at(i), ropts));
    serving.push_back(proxy::ServingShard{shards.at(i), std::move(shard_resolver)});
  }
  std::shared_ptr<proxy::Resolver> resolver = serving.front().resolver;  // home's
  auto* directory = e->directory_.get();
  auto* denials = &e->denials_;
  auto lookup = [directory](const proxy::IpAddress& source) { return directory->Lookup(source); };

  proxy::DnsResponderOptions dopts;
  dopts.bind_address = "0.0.0.0";  // the firewall redirects sandboxes' DNS here; other sources are refused
  dopts.max_tcp_connections_total = std::min(dopts.max_tcp_connections_total, config.connection_caps.max_connections);
  dopts.max_tcp_connections_per_sandbox =
      std::min(dopts.max_tcp_connections_per_sandbox, config.connection_caps.max_per_key);
  dopts.shards = serving;
  auto dns_denied = [denials](const proxy::DnsDenial& d) {
    denials->Record(proxy::Denial{d.sandbox_id, d.name, "", "DNS: " + d.reason});
  };
  COVE_ASSIGN_OR_RETURN(e->dns_, proxy::DnsResponder::Start(io, dopts, resolver, lookup, dns_denied));

  proxy::EgressProxyOptions popts;
  popts.max_connections = config.connection_caps.max_connections;
  popts.max_connections_per_sandbox = config.connection_caps.max_per_key;
  auto* dns = e->dns_.get();
  popts.name_for_address = [dns](const std::string& sandbox_id, const proxy::IpAddress& address) {
    return dns->NameForAddress(sandbox_id, address);
  };
  popts.ca = e->ca_;
  popts.upstream_ca_file = config.upstream_ca;
  popts.secrets = e->secrets_;
  popts.shards = serving;
  auto proxy_denied = [denials](const proxy::Denial& d) { denials->Record(d); };
  COVE_ASSIGN_OR_RETURN(e->proxy_, proxy::EgressProxy::Start(io, popts, resolver, lookup, proxy_denied));

  NetworkOptions nopts;
  nopts.subnet = config.subnet;
  nopts.pool_size = config.pool_size;
  nopts.ports.transparent_proxy = e->proxy_->transparent_port();
  nopts.ports.explicit_proxy = e->proxy_->explicit_port();
  nopts.ports.dns = e->dns_->port();
  nopts.ports.upstream_mark = popts.upstream_mark;
  nopts.table = TableName(config.state_dir);
  COVE_ASSIGN_OR_RETURN(e->networks_, SandboxNetworks::Open(nopts));
  log::Info("sandbox network {} sealed by nftables table inet {}: proxy ports {} (transparent) and {} (explicit), DNS {}",
            config.subnet, nopts.table, nopts.ports.transparent_proxy, nopts.ports.explicit_proxy, nopts.ports.dns);
  return e;
}

Egress::~Egress() {
  if (proxy_) proxy_->Stop();
}

void Egress::Shutdown(bool no_sandbox_left) {
  if (proxy_) proxy_->Stop();
  if (networks_) networks_->Shutdown(no_sandbox_left);
}

}  // namespace cove
