// The decisions of the egress chain, on a flow a front end made of a
// connection (or on one request inside it): whether it may go, and whether
// the proxy intercepts it. Pure functions of the sandbox's policy.
#pragma once

#include <cstdint>
#include <string>

#include "policy/egress_policy.h"
#include "proxy/secret_store.h"

namespace cove::proxy {

// Decide (policy/egress_policy.h), plus what only the proxy knows: a tunnel
// (no method: CONNECT, transparent TLS or raw TCP) honours a rule that needs
// interception only on port 443 and when the proxy can intercept (it then
// intercepts and decides again per request), and a tunnel to a port other
// than 80/443 is raw TCP, allowed only by a rule that lists the port.
Decision DecideEgress(const EgressPolicy& policy, const Destination& dest, bool can_intercept);

// Whether an allowed tunnel (no method) to host:port is intercepted: on port
// 443 when the proxy can, for a rule that needs it or a host bound to a
// placeholder secret.
bool InterceptsTunnel(const Decision& decision, const std::string& host, uint16_t port, bool can_intercept,
                      const SecretSet& secrets);

}  // namespace cove::proxy
