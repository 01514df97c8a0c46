#include "sys/proc_stat.h"

#include <unistd.h>

#include <gtest/gtest.h>

namespace cove::sys {
namespace {

TEST(ProcStatTest, FieldsAfterAHostileComm) {
  // comm with spaces and parentheses must not shift the fields.
  std::string line =
      "1234 (a) b) c) S 77 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 "
      "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  auto r = ParseProcStat(line);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->state, 'S');
  EXPECT_EQ(r->ppid, 77);
  EXPECT_EQ(r->start_time_ticks, 987654u);
}

TEST(ProcStatTest, ShortOrMalformedLinesAreErrors) {
  EXPECT_FALSE(ParseProcStat("1 (x) S 1 2").ok());
  EXPECT_FALSE(ParseProcStat("garbage").ok());
  EXPECT_FALSE(ParseProcStat("1 (x) S one 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5 1").ok());
  EXPECT_FALSE(ParseProcStat("1 (x) S 1 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 -5 1").ok());
}

TEST(ProcStatTest, OwnProcessIsStableAndHasItsParent) {
  auto a = ReadProcStat(getpid());
  auto b = ReadProcStat("self");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->start_time_ticks, b->start_time_ticks);
  EXPECT_EQ(a->ppid, getppid());
  EXPECT_EQ(a->state, 'R');
  EXPECT_FALSE(ReadProcStat(pid_t{-1}).ok());
}

}  // namespace
}  // namespace cove::sys
