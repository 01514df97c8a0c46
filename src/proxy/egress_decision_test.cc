// The egress chain's decisions on their own: what the proxy adds to the
// policy's Decide for tunnels, and which tunnels it intercepts.
#include "proxy/egress_decision.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace cove::proxy {
namespace {

EgressPolicy Policy(const char* json) {
  auto policy = EgressPolicy::FromJson(nlohmann::json::parse(json));
  EXPECT_TRUE(policy.ok());
  return policy.ok() ? *policy : EgressPolicy{};
}

Destination Tunnel(std::string host, uint16_t port) { return Destination{std::move(host), port, std::nullopt, "", ""}; }

TEST(EgressDecision, RawTcpNeedsARuleThatListsThePort) {
  EgressPolicy open = Policy(R"({})");
  EXPECT_TRUE(DecideEgress(open, Tunnel("a.test", 443), false).allow);
  Decision ssh = DecideEgress(open, Tunnel("a.test", 22), false);
  EXPECT_FALSE(ssh.allow);
  EXPECT_NE(ssh.reason.find("port 22"), std::string::npos) << ssh.reason;
  EgressPolicy listed = Policy(R"({"rules":[{"host":"a.test","ports":[22]}]})");
  EXPECT_TRUE(DecideEgress(listed, Tunnel("a.test", 22), false).allow);
  EXPECT_FALSE(DecideEgress(listed, Tunnel("b.test", 22), false).allow);
}

TEST(EgressDecision, ARuleThatNeedsInterceptionNeedsPort443AndTheCa) {
  EgressPolicy policy = Policy(R"({"rules":[{"host":"api.test","setHeaders":{"Authorization":"x"}}]})");
  EXPECT_TRUE(DecideEgress(policy, Tunnel("api.test", 443), true).allow);
  EXPECT_FALSE(DecideEgress(policy, Tunnel("api.test", 443), false).allow);
  EXPECT_FALSE(DecideEgress(policy, Tunnel("api.test", 80), true).allow);
  // A request the proxy sees (method known) is decided by the policy alone.
  Destination request{"api.test", 80, std::nullopt, "GET", "/"};
  EXPECT_TRUE(DecideEgress(policy, request, false).allow);
}

TEST(EgressDecision, ARuleDenyingSomeRequestsInterceptsTheRest) {
  EgressPolicy policy = Policy(R"({"rules":[{"host":"api.test","methods":["DELETE"],"allow":false}]})");
  Decision tunnel = DecideEgress(policy, Tunnel("api.test", 443), true);
  EXPECT_TRUE(tunnel.allow) << tunnel.reason;
  ASSERT_NE(tunnel.rule, nullptr);
  EXPECT_TRUE(InterceptsTunnel(tunnel, "api.test", 443, true, SecretSet{}));
  // Without the CA the tunnel cannot be decided per request.
  EXPECT_FALSE(DecideEgress(policy, Tunnel("api.test", 443), false).allow);
}

TEST(EgressDecision, OnlyTunnelsOn443WithTheCaAreIntercepted) {
  EgressPolicy policy = Policy(R"({"rules":[{"host":"api.test","setHeaders":{"Authorization":"x"}}]})");
  Decision decision = DecideEgress(policy, Tunnel("api.test", 443), true);
  EXPECT_TRUE(InterceptsTunnel(decision, "api.test", 443, true, SecretSet{}));
  EXPECT_FALSE(InterceptsTunnel(decision, "api.test", 443, false, SecretSet{}));
  EXPECT_FALSE(InterceptsTunnel(decision, "api.test", 8443, true, SecretSet{}));
  Decision plain = DecideEgress(Policy(R"({})"), Tunnel("other.test", 443), true);
  EXPECT_FALSE(InterceptsTunnel(plain, "other.test", 443, true, SecretSet{}));
}

}  // namespace
}  // namespace cove::proxy
