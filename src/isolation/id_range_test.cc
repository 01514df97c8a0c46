#include "isolation/id_range.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include "sys/fs.h"

namespace cove::isolation {
namespace {

TEST(IdRangeTest, SlotArithmetic) {
  EXPECT_EQ(*HostIdBaseForSlot(0), kFirstHostIdBase);
  EXPECT_EQ(*HostIdBaseForSlot(1), kFirstHostIdBase + 65536);
  EXPECT_EQ(*SlotForHostIdBase(kFirstHostIdBase + 5 * 65536), 5u);
  EXPECT_FALSE(SlotForHostIdBase(kFirstHostIdBase + 1).ok());
  EXPECT_FALSE(SlotForHostIdBase(1000).ok());
  EXPECT_FALSE(HostIdBaseForSlot(kIdSlotCount).ok());
  // The last slot's range ends below the invalid id 2^32-1.
  uid_t last = *HostIdBaseForSlot(kIdSlotCount - 1);
  EXPECT_LE(uint64_t{last} + kIdRangeSize - 1, 0xFFFFFFFEull);
  EXPECT_EQ(*SlotForHostIdBase(last), kIdSlotCount - 1);
}

TEST(IdRangeTest, MappingHelpers) {
  uid_t base = *HostIdBaseForSlot(3);
  EXPECT_EQ(ToHostId(base, 0), base);
  EXPECT_EQ(ToHostId(base, 1000), base + 1000);
  EXPECT_TRUE(InRange(base, base));
  EXPECT_TRUE(InRange(base, base + 65535));
  EXPECT_FALSE(InRange(base, base + 65536));
  EXPECT_FALSE(InRange(base, base - 1));
  EXPECT_FALSE(InRange(base, 0));
  EXPECT_EQ(IdMapLine(base), "0 " + std::to_string(base) + " 65536\n");
}

TEST(IdRangeTest, LeasesAreExclusiveAndReleased) {
  char tmpl[] = "/tmp/cove-ids-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  auto a = IdSlotLease::Acquire(dir, 7);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->slot(), 7u);
  // flock is per open file description: a second Acquire in this process must skip slot 7.
  auto b = IdSlotLease::Acquire(dir, 7);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->slot(), 8u);
  { auto moved = std::move(*a); }
  auto c = IdSlotLease::Acquire(dir, 7);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->slot(), 7u);
  EXPECT_EQ(IdSlotLease::AcquireExact(dir, 8).error().code, ErrorCode::kAlreadyExists);
  auto d = IdSlotLease::AcquireExact(dir, 9);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->host_id_base(), *HostIdBaseForSlot(9));
  (void)sys::RemoveTree(dir);
}

}  // namespace
}  // namespace cove::isolation
