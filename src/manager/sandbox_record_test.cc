// SandboxRecord's JSON (the store's format): the egress policy is typed in
// the record and JSON only there.
#include "manager/sandbox_record.h"

#include <gtest/gtest.h>

namespace cove {
namespace {

SandboxRecord Minimal() {
  SandboxRecord r;
  r.id = "sb";
  r.state = SandboxState::kRunning;
  return r;
}

TEST(SandboxRecordTest, EgressPolicyRoundTripsTyped) {
  auto policy = proxy::EgressPolicy::FromJson(
      {{"enableInternet", false}, {"allowedHosts", {"*.github.com"}}, {"rules", {{{"host", "ssh.github.com"}, {"ports", {22}}}}}});
  ASSERT_TRUE(policy.ok()) << policy.error().ToString();
  SandboxRecord r = Minimal();
  r.egress = std::make_shared<const proxy::EgressPolicy>(*policy);
  auto back = SandboxRecord::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok()) << back.error().ToString();
  ASSERT_TRUE(back->egress);
  EXPECT_FALSE(back->egress->enable_internet);
  ASSERT_EQ(back->egress->allowed_hosts.size(), 1u);
  EXPECT_EQ(back->egress->allowed_hosts[0].text, "*.github.com");
  ASSERT_EQ(back->egress->rules.size(), 1u);
  EXPECT_EQ(back->egress->rules[0].ports, std::vector<uint16_t>{22});
  EXPECT_EQ(back->egress->ToJson(), policy->ToJson());
}

TEST(SandboxRecordTest, NoPolicyMeansTheDefault) {
  auto j = Minimal().ToJson();
  EXPECT_TRUE(j["egress"].is_null());
  j.erase("egress");  // records of older versions
  auto back = SandboxRecord::FromJson(j);
  ASSERT_TRUE(back.ok());
  EXPECT_FALSE(back->egress);
}

TEST(SandboxRecordTest, AnInvalidStoredPolicyDeniesAllEgress) {
  auto j = Minimal().ToJson();
  j["egress"] = {{"noSuchField", true}};
  auto back = SandboxRecord::FromJson(j);
  ASSERT_TRUE(back.ok());
  ASSERT_TRUE(back->egress);
  EXPECT_FALSE(back->egress->enable_internet);
  EXPECT_FALSE(proxy::Decide(*back->egress, {"example.com", 443, std::nullopt, "", ""}).allow);
}

}  // namespace
}  // namespace cove
