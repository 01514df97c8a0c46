#include "agent/frame.h"

#include <gtest/gtest.h>

namespace cove::agent {
namespace {

TEST(FrameTest, RoundTripsByteByByte) {
  std::string wire = EncodeFrame(7, FrameType::kEvent, "{\"a\":1}") +
                     EncodeFrame(8, FrameType::kReply, "");
  FrameDecoder d(1024);
  std::vector<Frame> got;
  for (char c : wire) {
    ASSERT_TRUE(d.Feed(std::string_view(&c, 1)).ok());
    while (auto f = d.Next()) got.push_back(*f);
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].channel, 7u);
  EXPECT_EQ(got[0].type, FrameType::kEvent);
  EXPECT_EQ(got[0].payload, "{\"a\":1}");
  EXPECT_EQ(got[1].payload, "");
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(FrameTest, RejectsOversizedFrame) {
  FrameDecoder d(16);
  std::string wire = EncodeFrame(1, FrameType::kEvent, std::string(17, 'x'));
  EXPECT_FALSE(d.Feed(wire).ok());
  EXPECT_FALSE(d.Next().has_value());
  EXPECT_FALSE(d.Feed("more").ok());
}

TEST(FrameTest, RejectsUndersizedAndBadType) {
  FrameDecoder d(16);
  EXPECT_FALSE(d.Feed(std::string("\x02\x00\x00\x00", 4)).ok());
  FrameDecoder d2(16);
  std::string wire = EncodeFrame(1, static_cast<FrameType>(99), "x");
  EXPECT_FALSE(d2.Feed(wire).ok());
}

}  // namespace
}  // namespace cove::agent
