// SandboxDirectory: the lookup the proxy and DNS make for every connection
// and query hands out the sandbox's typed policy itself, shared: there is no
// JSON in its interface, and the pointer is the record's own.
#include "proxy/sandbox_directory.h"

#include <cstring>

#include <gtest/gtest.h>

namespace cove::proxy {
namespace {

class SandboxDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    default_policy_ = std::make_shared<const EgressPolicy>();
    record_.id = "sb";
    record_.state = SandboxState::kRunning;
    record_.slot = 3;
    directory_ = std::make_unique<SandboxDirectory>(
        [this](uint32_t slot) -> const SandboxRecord* { return slot == record_.slot ? &record_ : nullptr; }, plan_,
        default_policy_);
  }

  IpAddress AddressOf(uint32_t slot) {
    auto veth = plan_.ForSlot(slot);
    EXPECT_TRUE(veth.ok());
    IpAddress a;
    std::memcpy(a.bytes, &veth->sandbox, 4);
    return a;
  }

  net::AddressPlan plan_ = *net::AddressPlan::Parse("10.200.0.0/15");
  std::shared_ptr<const EgressPolicy> default_policy_;
  SandboxRecord record_;
  std::unique_ptr<SandboxDirectory> directory_;
};

TEST_F(SandboxDirectoryTest, LookupSharesTheRecordsOwnPolicy) {
  auto own = std::make_shared<EgressPolicy>();
  own->enable_internet = false;
  record_.egress = own;
  auto found = directory_->Lookup(AddressOf(3));
  ASSERT_TRUE(found);
  EXPECT_EQ(found->sandbox_id, "sb");
  EXPECT_EQ(found->policy.get(), own.get());  // the same object: nothing parsed or copied
  EXPECT_EQ(directory_->PolicyOf(record_).get(), own.get());
}

TEST_F(SandboxDirectoryTest, ASandboxWithoutAPolicyGetsTheDefault) {
  auto found = directory_->Lookup(AddressOf(3));
  ASSERT_TRUE(found);
  EXPECT_EQ(found->policy.get(), default_policy_.get());
}

TEST_F(SandboxDirectoryTest, AReplacedPolicyAppliesToTheNextLookup) {
  auto first = std::make_shared<const EgressPolicy>();
  record_.egress = first;
  auto held = directory_->Lookup(AddressOf(3));
  auto second = std::make_shared<const EgressPolicy>();
  record_.egress = second;
  EXPECT_EQ(directory_->Lookup(AddressOf(3))->policy.get(), second.get());
  EXPECT_EQ(held->policy.get(), first.get());  // a connection keeps the one it was decided on
}

TEST_F(SandboxDirectoryTest, UnknownOrNotRunningSourcesHaveNoSandbox) {
  EXPECT_FALSE(directory_->Lookup(AddressOf(4)));
  EXPECT_FALSE(directory_->Lookup(*IpAddress::Parse("192.0.2.1")));
  record_.state = SandboxState::kCreating;
  EXPECT_FALSE(directory_->Lookup(AddressOf(3)));
}

}  // namespace
}  // namespace cove::proxy
