// ConnectionRegistry: counting, caps, shedding the longest-idle connection.
#include "io/connection_registry.h"

#include <gtest/gtest.h>

#include <vector>

namespace cove::io {
namespace {

// A fake connection's closer: records that it was closed.
struct Closed {
  std::vector<std::string> names;
  std::function<void()> Closer(std::string name) {
    return [this, name] { names.push_back(name); };
  }
};

TEST(ConnectionRegistryTest, CountsPerKeyAndUncountsOnDestruction) {
  ConnectionRegistry registry({10, 10});
  Closed closed;
  {
    auto a = registry.Admit("10.0.0.1", closed.Closer("a"));
    auto b = registry.Admit("10.0.0.1", closed.Closer("b"));
    auto c = registry.Admit("10.0.0.2", closed.Closer("c"));
    ASSERT_TRUE(a && b && c);
    EXPECT_EQ(registry.size(), 3u);
    EXPECT_EQ(registry.count("10.0.0.1"), 2u);
    EXPECT_EQ(registry.count("10.0.0.2"), 1u);
    ConnectionRegistry::Slot moved = std::move(*b);
    EXPECT_EQ(registry.size(), 3u);  // a move is no new connection
  }
  EXPECT_EQ(registry.size(), 0u);
  EXPECT_EQ(registry.count("10.0.0.1"), 0u);
  EXPECT_TRUE(closed.names.empty());
}

TEST(ConnectionRegistryTest, OverTheListenerCapTheLongestIdleMakesRoom) {
  ConnectionRegistry registry({3, 3});
  Closed closed;
  auto a = registry.Admit("x", closed.Closer("a"));
  auto b = registry.Admit("y", closed.Closer("b"));
  auto c = registry.Admit("z", closed.Closer("c"));
  // a serves a request and goes back to waiting: now b has waited longest.
  a->Busy();
  a->Idle();
  auto d = registry.Admit("w", closed.Closer("d"));
  ASSERT_TRUE(d);
  EXPECT_EQ(closed.names, std::vector<std::string>{"b"});
  EXPECT_TRUE(b->shed());
  EXPECT_FALSE(a->shed());
  EXPECT_EQ(registry.size(), 3u);
  EXPECT_EQ(registry.count("y"), 0u);
  b.reset();  // the shed connection's coroutine ends later: nothing counted twice
  EXPECT_EQ(registry.size(), 3u);
}

TEST(ConnectionRegistryTest, BusyConnectionsAreNeverShedAndTheNewOneIsRefused) {
  ConnectionRegistry registry({2, 2});
  Closed closed;
  auto a = registry.Admit("x", closed.Closer("a"));
  auto b = registry.Admit("y", closed.Closer("b"));
  a->Busy();
  b->Busy();
  EXPECT_FALSE(registry.Admit("z", closed.Closer("c")));
  EXPECT_FALSE(registry.ShedOldestIdle());
  EXPECT_TRUE(closed.names.empty());
  EXPECT_EQ(registry.size(), 2u);
  EXPECT_EQ(registry.count("z"), 0u);
  b->Idle();
  EXPECT_TRUE(registry.Admit("z", closed.Closer("c")));
  EXPECT_EQ(closed.names, std::vector<std::string>{"b"});
}

TEST(ConnectionRegistryTest, OneKeyCannotTakeEverySlot) {
  ConnectionRegistry registry({10, 2});
  Closed closed;
  auto a = registry.Admit("greedy", closed.Closer("a"));
  auto b = registry.Admit("greedy", closed.Closer("b"));
  auto other = registry.Admit("polite", closed.Closer("other"));
  a->Busy();
  b->Busy();
  // Over its own cap with nothing idle of its own: refused, although the
  // listener has room and another key's connection is idle.
  EXPECT_FALSE(registry.Admit("greedy", closed.Closer("c")));
  EXPECT_TRUE(closed.names.empty());
  // With one of its own idle, that one makes room (not the other key's).
  b->Idle();
  auto c = registry.Admit("greedy", closed.Closer("c"));
  ASSERT_TRUE(c);
  EXPECT_EQ(closed.names, std::vector<std::string>{"b"});
  EXPECT_FALSE(other->shed());
  EXPECT_EQ(registry.count("greedy"), 2u);
}

TEST(ConnectionRegistryTest, ShedOldestIdleClosesInIdleOrder) {
  ConnectionRegistry registry({10, 10});
  Closed closed;
  auto a = registry.Admit("x", closed.Closer("a"));
  auto b = registry.Admit("x", closed.Closer("b"));
  auto c = registry.Admit("y", closed.Closer("c"));
  b->Busy();
  EXPECT_TRUE(registry.ShedOldestIdle());
  EXPECT_TRUE(registry.ShedOldestIdle());
  EXPECT_FALSE(registry.ShedOldestIdle());  // b is busy
  EXPECT_EQ(closed.names, (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(registry.size(), 1u);
  EXPECT_EQ(registry.idle(), 0u);
  b->Idle();  // a shed slot stays out of the books, whatever it is told
  a->Idle();
  EXPECT_TRUE(registry.ShedOldestIdle());
  EXPECT_FALSE(registry.ShedOldestIdle());
  EXPECT_EQ(closed.names, (std::vector<std::string>{"a", "c", "b"}));
}

TEST(ConnectionRegistryTest, TheCloserCanBeReplacedAndSeesTheRoomMade) {
  ConnectionRegistry registry({1, 1});
  Closed closed;
  size_t size_when_closed = 99;
  auto a = registry.Admit("x", closed.Closer("socket"));
  a->SetCloser([&] { size_when_closed = registry.size(); });
  EXPECT_TRUE(registry.ShedOldestIdle());
  EXPECT_EQ(size_when_closed, 0u);
  EXPECT_TRUE(closed.names.empty());
}

TEST(ConnectionRegistryTest, SlotsMayOutliveTheRegistry) {
  std::optional<ConnectionRegistry::Slot> slot;
  {
    ConnectionRegistry registry({1, 1});
    slot = registry.Admit("x", [] {});
  }
  slot->Busy();
  slot.reset();
}

TEST(ConnectionLimitsTest, AQuarterOfTheFileLimitPerListenerAndOfThatPerKey) {
  EXPECT_EQ(LimitsForFdLimit(1024).max_connections, 256u);
  EXPECT_EQ(LimitsForFdLimit(1024).max_per_key, 64u);
  EXPECT_EQ(LimitsForFdLimit(300).max_connections, 75u);
  EXPECT_EQ(LimitsForFdLimit(300).max_per_key, 18u);
  EXPECT_EQ(LimitsForFdLimit(10).max_connections, 16u);
  EXPECT_EQ(LimitsForFdLimit(10).max_per_key, 4u);
  EXPECT_EQ(LimitsForFdLimit(~uint64_t{0}).max_connections, size_t{1} << 22);
  EXPECT_EQ(LimitsForListenerCap(1000).max_per_key, 250u);
  EXPECT_EQ(LimitsForListenerCap(6).max_per_key, 4u);
}

}  // namespace
}  // namespace cove::io
