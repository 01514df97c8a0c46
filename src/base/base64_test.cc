#include "base/base64.h"

#include <gtest/gtest.h>

#include <random>

namespace cove {
namespace {

TEST(Base64, Rfc4648Vectors) {
  const std::pair<const char*, const char*> kVectors[] = {
      {"", ""},           {"f", "Zg=="},         {"fo", "Zm8="},        {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
  };
  for (auto [plain, encoded] : kVectors) {
    EXPECT_EQ(Base64Encode(plain), encoded);
    EXPECT_EQ(Base64Decode(encoded), plain) << encoded;
  }
}

TEST(Base64, AllByteValuesAndEveryLengthRoundTrip) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  EXPECT_EQ(Base64Encode(all.substr(0, 3)), "AAEC");
  EXPECT_EQ(Base64Encode("\xfb\xff\xbf"), "+/+/");
  for (size_t n = 0; n <= all.size(); ++n) {
    std::string in = all.substr(0, n);
    auto out = Base64Decode(Base64Encode(in));
    ASSERT_TRUE(out.has_value()) << n;
    EXPECT_EQ(*out, in) << n;
  }
}

TEST(Base64, LargeRandomInputRoundTrips) {
  std::mt19937 rng(7);
  std::string in(5 * 1024 * 1024 + 1, '\0');
  for (auto& c : in) c = static_cast<char>(rng());
  std::string enc = Base64Encode(in);
  EXPECT_EQ(enc.size(), (in.size() + 2) / 3 * 4);
  auto out = Base64Decode(enc);
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(*out == in);
}

TEST(Base64, AppendKeepsWhatIsThere) {
  std::string out = "x:";
  AppendBase64("hi", &out);
  EXPECT_EQ(out, "x:aGk=");
}

TEST(Base64, StrictDecodeRefusesMalformedInput) {
  for (const char* bad : {"Zg", "Zg=", "Zm9", "Z", "=", "==", "===", "====", "A===", "Zg==Zg==", "Zm=v", "Z=9v",
                          "Zm9v\n", " Zm9v", "Zm 9v", "Zm9-", "Zm9_", "Zm9v*AAA", "Zg=a", "\xc3\xa9\xc3\xa9"}) {
    EXPECT_FALSE(Base64Decode(bad).has_value()) << bad;
  }
  // A bad character deep inside a large input is found too.
  std::string big(4 * 100000, 'A');
  big[4 * 54321 + 2] = '!';
  EXPECT_FALSE(Base64Decode(big).has_value());
  big[4 * 54321 + 2] = '=';
  EXPECT_FALSE(Base64Decode(big).has_value());
}

TEST(Base64, StrictDecodeIgnoresUnusedLowBits) {
  EXPECT_EQ(Base64Decode("Zh=="), "f");  // as Node's Buffer and Python's b64decode do
}

TEST(Base64, LenientDecodeSkipsWhitespaceAndMissingPadding) {
  EXPECT_EQ(Base64DecodeLenient("Zm9v\nYmFy\n"), "foobar");
  EXPECT_EQ(Base64DecodeLenient(" Zm9 vYg "), "foob");
  EXPECT_EQ(Base64DecodeLenient("Zg"), "f");
  EXPECT_EQ(Base64DecodeLenient("Zm8"), "fo");
  EXPECT_EQ(Base64DecodeLenient(""), "");
  EXPECT_FALSE(Base64DecodeLenient("Z").has_value());
  EXPECT_FALSE(Base64DecodeLenient("Zm9v!").has_value());
  EXPECT_FALSE(Base64DecodeLenient("Zg=\n").has_value());
}

TEST(Base64Decoder, RoundTripAllLengthsAndSplits) {
  std::string data;
  for (int i = 0; i < 300; ++i) data.push_back(static_cast<char>(i * 37 + 11));
  for (size_t len = 0; len < 40; ++len) {
    std::string in = data.substr(0, len);
    std::string enc = Base64Encode(in);
    EXPECT_EQ(enc.size() % 4, 0u);
    for (size_t split = 0; split <= enc.size(); ++split) {
      Base64Decoder d;
      std::string out;
      ASSERT_TRUE(d.Feed(enc.substr(0, split), &out).ok());
      ASSERT_TRUE(d.Feed(enc.substr(split), &out).ok());
      ASSERT_TRUE(d.Finish(&out).ok());
      ASSERT_EQ(out, in) << "len " << len << " split " << split;
    }
  }
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
}

TEST(Base64Decoder, ChunksEncodedSeparatelyWithPadding) {
  Base64Decoder d;
  std::string out;
  for (const char* chunk : {"Zm8=", "YmE=", "cg=="}) ASSERT_TRUE(d.Feed(chunk, &out).ok());
  ASSERT_TRUE(d.Finish(&out).ok());
  EXPECT_EQ(out, "fobar");
}

TEST(Base64Decoder, Garbage) {
  Base64Decoder d;
  std::string out;
  EXPECT_FALSE(d.Feed("ab$d", &out).ok());
  Base64Decoder t;
  EXPECT_TRUE(t.Feed("Zm9vY", &out).ok());
  EXPECT_FALSE(t.Finish(&out).ok());
}

}  // namespace
}  // namespace cove
