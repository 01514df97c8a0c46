#include "base/error.h"

#include <gtest/gtest.h>

namespace cove {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return MakeError(ErrorCode::kInvalidArgument, "odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  COVE_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

TEST(ResultTest, PropagatesFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  auto r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
}

TEST(ErrorTest, SysErrorMapsErrno) {
  EXPECT_EQ(SysError("open", ENOENT).code, ErrorCode::kNotFound);
  EXPECT_EQ(SysError("write", EDQUOT).code, ErrorCode::kResourceExhausted);
  EXPECT_EQ(SysError("open x", ENOENT).ToString(), "open x: No such file or directory");
}

}  // namespace
}  // namespace cove

#include "base/base64.h"

namespace cove {
namespace {

TEST(Base64Test, RoundTripsAllLengths) {
  std::string data;
  for (int i = 0; i < 300; ++i) {
    auto enc = Base64Encode(data);
    auto dec = Base64Decode(enc);
    ASSERT_TRUE(dec.has_value()) << enc;
    EXPECT_EQ(*dec, data);
    data.push_back(static_cast<char>(i * 37));
  }
  EXPECT_EQ(Base64Encode("hi"), "aGk=");
}

TEST(Base64Test, RejectsGarbage) {
  EXPECT_FALSE(Base64Decode("abc").has_value());
  EXPECT_FALSE(Base64Decode("ab!d").has_value());
  EXPECT_FALSE(Base64Decode("a=bc").has_value());
  EXPECT_FALSE(Base64Decode("ab==cdef").has_value());
}

}  // namespace
}  // namespace cove

#include "base/json_limits.h"

namespace cove {
namespace {

TEST(JsonLimitsTest, RefusesDeepNestingAndNul) {
  EXPECT_TRUE(JsonWithinLimits(R"({"a":[1,{"b":"[[[[["}]})", 3));
  EXPECT_FALSE(JsonWithinLimits("[[[[1]]]]", 3));
  EXPECT_TRUE(JsonWithinLimits("[[[1]]]", 3));
  EXPECT_TRUE(JsonWithinLimits(R"(["\"[[[[[[[["])", 2));
  EXPECT_FALSE(JsonWithinLimits(std::string_view("{}\0junk", 7)));
  EXPECT_FALSE(JsonWithinLimits(std::string(100000, '[')));
}

}  // namespace
}  // namespace cove
