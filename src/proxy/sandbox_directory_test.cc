// SandboxDirectory: the lookup the proxy and DNS make for every connection
// and query hands out the sandbox's typed policy itself, shared: there is no
// JSON in its interface, and the pointer is the published record's own. It
// reads the Manager's RunningSandboxes, from any thread.
#include "proxy/sandbox_directory.h"

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

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
    directory_ = std::make_unique<SandboxDirectory>(&running_, plan_, default_policy_);
  }

  // What the Manager does when the record changes.
  void Publish() { published_ = running_.Publish(record_, published_); }

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
  RunningSandboxes running_;
  RunningSandboxes::Record published_;
  std::unique_ptr<SandboxDirectory> directory_;
};

TEST_F(SandboxDirectoryTest, LookupSharesTheRecordsOwnPolicy) {
  auto own = std::make_shared<EgressPolicy>();
  own->enable_internet = false;
  record_.egress = own;
  Publish();
  auto found = directory_->Lookup(AddressOf(3));
  ASSERT_TRUE(found);
  EXPECT_EQ(found->sandbox_id, "sb");
  EXPECT_EQ(found->policy.get(), own.get());  // the same object: nothing parsed or copied
  EXPECT_EQ(directory_->PolicyOf(record_).get(), own.get());
}

TEST_F(SandboxDirectoryTest, ASandboxWithoutAPolicyGetsTheDefault) {
  Publish();
  auto found = directory_->Lookup(AddressOf(3));
  ASSERT_TRUE(found);
  EXPECT_EQ(found->policy.get(), default_policy_.get());
}

TEST_F(SandboxDirectoryTest, AReplacedPolicyAppliesToTheNextLookup) {
  auto first = std::make_shared<const EgressPolicy>();
  record_.egress = first;
  Publish();
  auto held = directory_->Lookup(AddressOf(3));
  auto second = std::make_shared<const EgressPolicy>();
  record_.egress = second;
  Publish();
  EXPECT_EQ(directory_->Lookup(AddressOf(3))->policy.get(), second.get());
  EXPECT_EQ(held->policy.get(), first.get());  // a connection keeps the one it was decided on
}

TEST_F(SandboxDirectoryTest, UnknownOrWithdrawnSourcesHaveNoSandbox) {
  Publish();
  EXPECT_FALSE(directory_->Lookup(AddressOf(4)));
  EXPECT_FALSE(directory_->Lookup(*IpAddress::Parse("192.0.2.1")));
  running_.Withdraw(published_);
  EXPECT_FALSE(directory_->Lookup(AddressOf(3)));
}

// A withdrawal that comes late (the record of an older sandbox of the same
// slot) takes nothing away from the sandbox published since.
TEST_F(SandboxDirectoryTest, AStaleWithdrawalLeavesTheNewerRecord) {
  Publish();
  RunningSandboxes::Record old = published_;
  running_.Withdraw(old);
  RunningSandboxes::Record none;
  record_.id = "sb-next";
  published_ = running_.Publish(record_, none);
  running_.Withdraw(old);
  auto found = directory_->Lookup(AddressOf(3));
  ASSERT_TRUE(found);
  EXPECT_EQ(found->sandbox_id, "sb-next");
  EXPECT_EQ(running_.ById("sb"), nullptr);
  EXPECT_EQ(running_.ById("sb-next"), published_);
}

// Lookups on other threads while the home thread replaces and withdraws the
// record (the sandbox deleted under a connection that looks it up): each
// lookup sees the sandbox whole or not at all, and what it got stays valid
// after the record is gone (ThreadSanitizer checks the rest).
TEST_F(SandboxDirectoryTest, LookupsFromOtherThreadsWhileTheSandboxChangesAndGoes) {
  std::atomic<bool> done{false};
  std::atomic<int> found{0}, missing{0}, open{0};
  std::vector<std::thread> readers;
  std::vector<std::optional<SandboxEgress>> kept(4);
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      while (!done.load()) {
        auto egress = directory_->Lookup(AddressOf(3));
        if (!egress) {
          ++missing;
          continue;
        }
        ++found;
        EXPECT_EQ(egress->sandbox_id, "sb");
        ASSERT_NE(egress->policy, nullptr);
        if (egress->policy->enable_internet) ++open;  // read through the pointer
        kept[t] = std::move(egress);
      }
    });
  }
  for (int round = 0; round < 2000; ++round) {
    auto policy = std::make_shared<EgressPolicy>();
    policy->enable_internet = round % 2 == 0;
    record_.egress = policy;
    Publish();
    if (round % 3 == 0) {
      running_.Withdraw(published_);
      published_.reset();
    }
  }
  running_.Withdraw(published_);
  published_.reset();
  record_.egress.reset();
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_FALSE(directory_->Lookup(AddressOf(3)));
  EXPECT_EQ(running_.size(), 0u);
  // Every record is gone from the directory; what the readers kept is still
  // theirs, held by them alone (several may hold the same policy).
  for (auto& k : kept) {
    if (!k) continue;
    long holders = 0;
    for (auto& other : kept) holders += other && other->policy == k->policy;
    EXPECT_EQ(k->policy.use_count(), holders);
  }
  EXPECT_GT(found.load() + missing.load(), 0);
  EXPECT_LE(open.load(), found.load());
}

}  // namespace
}  // namespace cove::proxy
