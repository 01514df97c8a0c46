#include "agent/frame.h"

#include <gtest/gtest.h>

#include <random>

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

// Frames over 256 KiB are received straight into their payload once their
// header is in: whatever the pieces the stream arrives in, every frame comes
// out whole and in order, and nothing stays buffered.
TEST(FrameTest, LargeFramesInAnyPiecesComeOutWholeAndInOrder) {
  std::mt19937 rng(5);
  auto bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  };
  std::vector<std::string> payloads = {"{}", bytes(3 << 20), "", bytes(300 << 10), bytes(256 << 10), "x",
                                       bytes(1 << 20), bytes(2 << 20)};
  std::string wire;
  for (size_t i = 0; i < payloads.size(); ++i)
    EncodeFrame(static_cast<uint32_t>(i + 1), i % 2 ? FrameType::kData : FrameType::kEvent, payloads[i], &wire);
  for (size_t piece : {size_t{1} << 20, size_t{65536}, size_t{4093}, size_t{0}}) {  // 0: random sizes
    FrameDecoder d(4 << 20);
    std::vector<Frame> got;
    for (size_t at = 0; at < wire.size();) {
      size_t n = std::min(wire.size() - at, piece ? piece : 1 + rng() % (512 << 10));
      ASSERT_TRUE(d.Feed(std::string_view(wire).substr(at, n)).ok());
      at += n;
      while (auto f = d.Next()) got.push_back(std::move(*f));
    }
    ASSERT_EQ(got.size(), payloads.size()) << piece;
    for (size_t i = 0; i < payloads.size(); ++i) {
      EXPECT_EQ(got[i].channel, i + 1) << piece;
      EXPECT_EQ(got[i].type, i % 2 ? FrameType::kData : FrameType::kEvent) << piece;
      EXPECT_TRUE(got[i].payload == payloads[i]) << piece << " frame " << i;
    }
    EXPECT_EQ(d.buffered(), 0u) << piece;
  }
  // A bad header right after a large frame: the large frame is still served, then the stream fails.
  FrameDecoder d(4 << 20);
  std::string bad = EncodeFrame(1, FrameType::kData, payloads[1]) + std::string("\x02\x00\x00\x00", 4);
  ASSERT_TRUE(d.Feed(std::string_view(bad).substr(0, 1000)).ok());
  EXPECT_FALSE(d.Feed(std::string_view(bad).substr(1000)).ok());
  auto f = d.Next();
  ASSERT_TRUE(f.has_value());
  EXPECT_TRUE(f->payload == payloads[1]);
  EXPECT_FALSE(d.Next().has_value());
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
