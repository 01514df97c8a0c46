#include "manager/tombstones.h"

#include <gtest/gtest.h>

namespace cove {
namespace {

TEST(TombstonesTest, RequestsOlderThanTheDeleteCannotRecreate) {
  Tombstones t;
  auto before = t.Arrive();
  t.Bury("a");
  auto after = t.Arrive();
  EXPECT_TRUE(t.BuriedSince("a", before));
  EXPECT_FALSE(t.BuriedSince("a", after));   // arrived once the DELETE had answered
  EXPECT_FALSE(t.BuriedSince("b", before));  // another id
  EXPECT_FALSE(t.BuriedSince("a", Tombstones::Arrival()));  // unstamped: "now"
}

TEST(TombstonesTest, ASecondDeleteMovesTheGrave) {
  Tombstones t;
  auto first = t.Arrive();
  t.Bury("a");
  auto between = t.Arrive();
  EXPECT_FALSE(t.BuriedSince("a", between));
  t.Bury("a");
  EXPECT_TRUE(t.BuriedSince("a", between));
  EXPECT_TRUE(t.BuriedSince("a", first));
  EXPECT_EQ(t.size(), 1u);
}

TEST(TombstonesTest, GravesLastOnlyWhileOlderRequestsLive) {
  Tombstones t;
  t.Bury("nobody-in-flight");
  EXPECT_EQ(t.size(), 0u);  // no request could be refused by it
  {
    auto old = t.Arrive();
    t.Bury("a");
    auto newer = t.Arrive();
    t.Bury("b");
    EXPECT_EQ(t.size(), 2u);
    Tombstones::Arrival moved = std::move(old);
    EXPECT_TRUE(t.BuriedSince("a", moved));
    moved = Tombstones::Arrival();  // released: only "b" still matters, to `newer`
    EXPECT_EQ(t.size(), 1u);
    EXPECT_TRUE(t.BuriedSince("b", newer));
  }
  EXPECT_EQ(t.size(), 0u);
}

TEST(TombstonesTest, ArrivalsMayOutliveTheirTombstones) {
  Tombstones::Arrival a;
  {
    Tombstones t;
    a = t.Arrive();
    t.Bury("a");
  }
  a = Tombstones::Arrival();  // no crash, no leak (ASan)
  SUCCEED();
}

}  // namespace
}  // namespace cove
