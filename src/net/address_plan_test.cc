#include "net/address_plan.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

namespace cove::net {
namespace {

TEST(AddressPlan, SlotsGetConsecutivePairs) {
  auto plan = AddressPlan::Parse("10.200.0.0/15");
  ASSERT_TRUE(plan.ok());
  auto a = plan->ForSlot(0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->HostText(), "10.200.0.0");
  EXPECT_EQ(a->SandboxText(), "10.200.0.1");
  auto b = plan->ForSlot(300);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->HostText(), "10.200.2.88");
  EXPECT_EQ(b->SandboxText(), "10.200.2.89");
  uint32_t slot = 0;
  EXPECT_TRUE(plan->SlotOfSandboxAddress(b->sandbox, &slot));
  EXPECT_EQ(slot, 300u);
  EXPECT_FALSE(plan->SlotOfSandboxAddress(b->host, &slot));  // a gateway, not a sandbox
  in_addr outside{};
  inet_pton(AF_INET, "10.202.0.1", &outside);
  EXPECT_FALSE(plan->SlotOfSandboxAddress(outside, &slot));
  EXPECT_EQ(plan->ForSlot(65535).ok(), true);
  EXPECT_EQ(plan->ForSlot(65536).error().code, ErrorCode::kResourceExhausted);
}

TEST(AddressPlan, RejectsBadSubnets) {
  for (const char* bad : {"", "10.0.0.0", "10.0.0.0/7", "10.0.0.0/31", "10.0.0.1/24", "x/24", "10.0.0.0/2x", "::1/64"})
    EXPECT_EQ(AddressPlan::Parse(bad).error().code, ErrorCode::kInvalidArgument) << bad;
}

TEST(AddressPlan, VethNames) {
  EXPECT_EQ(HostVethName(42), "cv42");
  uint32_t slot = 0;
  EXPECT_TRUE(SlotOfHostVeth("cv42", &slot));
  EXPECT_EQ(slot, 42u);
  for (const char* other : {"cv", "cv042", "cvx", "eth0", "cv4x", "docker0"}) EXPECT_FALSE(SlotOfHostVeth(other, &slot)) << other;
  EXPECT_TRUE(SlotOfHostVeth("cv0", &slot));
}

}  // namespace
}  // namespace cove::net
