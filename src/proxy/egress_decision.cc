#include "proxy/egress_decision.h"

#include <algorithm>

namespace cove::proxy {

Decision DecideEgress(const EgressPolicy& policy, const Destination& dest, bool can_intercept) {
  Decision decision = Decide(policy, dest);
  const HostRule* rule = decision.rule;
  if (!decision.allow && dest.method.empty() && can_intercept && dest.port == 443 && rule && !rule->allow &&
      (!rule->methods.empty() || !rule->path_prefix.empty())) {
    // A rule that denies only some methods or paths: whether the rest may go
    // is what the policy says without it; if so the proxy intercepts (the
    // rule needs it) and decides each request.
    EgressPolicy others = policy;
    others.rules.erase(others.rules.begin() + (rule - policy.rules.data()));
    Decision rest = DecideEgress(others, dest, can_intercept);
    if (rest.allow) {
      rest.rule = rule;  // not into `others`: interception follows from it
      rest.reason = "rule " + rule->host.text + " denies some requests: intercepted, decided per request";
      return rest;
    }
    return decision;
  }
  if (!decision.allow || !dest.method.empty()) return decision;
  if (rule && rule->NeedsInterception()) {
    if (!can_intercept || dest.port != 443) {
      decision.allow = false;
      decision.reason = "the rule for " + rule->host.text + " needs TLS interception (port 443, coved's CA)";
    }
  } else if (dest.port != 80 && dest.port != 443 &&
             !(rule && std::find(rule->ports.begin(), rule->ports.end(), dest.port) != rule->ports.end())) {
    decision.allow = false;
    decision.reason = "raw TCP to port " + std::to_string(dest.port) + " needs a rule that lists the port";
  }
  return decision;
}

bool InterceptsTunnel(const Decision& decision, const std::string& host, uint16_t port, bool can_intercept,
                      const SecretSet& secrets) {
  if (port != 443 || !can_intercept) return false;
  return (decision.rule && decision.rule->NeedsInterception()) || secrets.BindsHost(host);
}

}  // namespace cove::proxy
