// RunningSandboxes: what the Manager publishes, found by id and by slot;
// replaced and withdrawn records stay valid for whoever holds them.
#include "manager/running_sandboxes.h"

#include <gtest/gtest.h>

namespace cove {
namespace {

SandboxRecord Record(const std::string& id, uint32_t slot) {
  SandboxRecord r;
  r.id = id;
  r.slot = slot;
  r.state = SandboxState::kRunning;
  return r;
}

TEST(RunningSandboxesTest, PublishedRecordsAreFoundByIdAndSlot) {
  RunningSandboxes running;
  auto a = running.Publish(Record("a", 1), nullptr);
  auto b = running.Publish(Record("b", 2), nullptr);
  EXPECT_EQ(running.ById("a"), a);
  EXPECT_EQ(running.BySlot(2), b);
  EXPECT_EQ(running.ById("c"), nullptr);
  EXPECT_EQ(running.BySlot(3), nullptr);
  EXPECT_EQ(running.size(), 2u);
}

TEST(RunningSandboxesTest, AReplacedRecordStaysWhatItWasForItsHolder) {
  RunningSandboxes running;
  SandboxRecord r = Record("a", 1);
  r.ports.push_back(PortExposure{8080, "web", "tok", 0});
  auto first = running.Publish(r, nullptr);
  auto held = running.ById("a");
  r.ports.clear();
  auto second = running.Publish(r, first);
  EXPECT_EQ(running.ById("a"), second);
  ASSERT_EQ(held->ports.size(), 1u);  // a copy: the holder's view does not change under it
  EXPECT_TRUE(second->ports.empty());
  running.Withdraw(second);
  EXPECT_EQ(running.ById("a"), nullptr);
  EXPECT_EQ(running.BySlot(1), nullptr);
  EXPECT_EQ(held->id, "a");
}

TEST(RunningSandboxesTest, WithdrawingAnOlderRecordKeepsTheNewerOne) {
  RunningSandboxes running;
  auto old = running.Publish(Record("a", 1), nullptr);
  running.Withdraw(old);
  auto newer = running.Publish(Record("b", 1), nullptr);  // slot 1 reused by another sandbox
  running.Withdraw(old);
  running.Withdraw(nullptr);
  EXPECT_EQ(running.BySlot(1), newer);
  EXPECT_EQ(running.ById("a"), nullptr);
}

}  // namespace
}  // namespace cove
