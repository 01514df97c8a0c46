#include "agent/util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

namespace cove::agent {
namespace {

std::string Json(std::string_view s) {
  std::string out;
  AppendJsonUtf8(s, &out);
  return out;
}

TEST(JsonUtf8Test, EscapesAndKeepsValidUtf8) {
  EXPECT_EQ(Json("a\"b\\c\n\t\x01"), "a\\\"b\\\\c\\n\\t\\u0001");
  EXPECT_EQ(Json("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"), "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80");
  EXPECT_EQ(Json(std::string("a\0b", 3)), "a\\u0000b");
}

TEST(JsonUtf8Test, ReplacesInvalidSequences) {
  const std::string kRep = "\xEF\xBF\xBD";
  EXPECT_EQ(Json("\xFF"), kRep);
  EXPECT_EQ(Json("a\x80z"), "a" + kRep + "z");
  EXPECT_EQ(Json("\xC0\xAF"), kRep + kRep);          // overlong: C0 is never valid
  EXPECT_EQ(Json("\xED\xA0\x80"), kRep + kRep + kRep);  // surrogate
  EXPECT_EQ(Json("\xE2\x82"), kRep);                 // truncated at end: one maximal subpart
  EXPECT_EQ(Json("\xE2\x82x"), kRep + "x");
  EXPECT_EQ(Json("\xF4\x90\x80\x80"), kRep + kRep + kRep + kRep);  // > U+10FFFF
  // Whatever goes in, the output parses as JSON.
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  auto j = nlohmann::json::parse("\"" + Json(all + all) + "\"", nullptr, false);
  EXPECT_FALSE(j.is_discarded());
}

TEST(JsonUtf8Test, StreamJoinsSplitCharacters) {
  std::string text = "x\xE2\x82\xAC\xF0\x9F\x98\x80y\xC3\xA9";
  // Every split point, and byte-by-byte.
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    Utf8JsonStream s;
    std::string out;
    s.Append(text.substr(0, cut), &out);
    s.Append(text.substr(cut), &out);
    s.Finish(&out);
    EXPECT_EQ(out, text) << "cut at " << cut;
  }
  Utf8JsonStream s;
  std::string out;
  for (char c : text) s.Append(std::string(1, c), &out);
  s.Finish(&out);
  EXPECT_EQ(out, text);
}

TEST(JsonUtf8Test, StreamReplacesTruncatedTailAtFinish) {
  Utf8JsonStream s;
  std::string out;
  s.Append("ab\xE2\x82", &out);
  EXPECT_EQ(out, "ab");
  EXPECT_TRUE(s.has_pending());
  s.Finish(&out);
  EXPECT_EQ(out, "ab\xEF\xBF\xBD");
  // A carried lead byte followed by a non-continuation.
  Utf8JsonStream t;
  std::string o2;
  t.Append("\xE2", &o2);
  t.Append("zz", &o2);
  t.Finish(&o2);
  EXPECT_EQ(o2, "\xEF\xBF\xBDzz");
}

TEST(JsonUtf8Test, CompletePrefix) {
  EXPECT_EQ(CompleteUtf8Prefix("abc"), 3u);
  EXPECT_EQ(CompleteUtf8Prefix("ab\xE2\x82"), 2u);
  EXPECT_EQ(CompleteUtf8Prefix("ab\xE2\x82\xAC"), 5u);
  EXPECT_EQ(CompleteUtf8Prefix("\xF0\x9F\x98"), 0u);
  EXPECT_EQ(CompleteUtf8Prefix("a\xFF"), 2u);  // invalid, not incomplete
}

TEST(TextDetectionTest, Utf8AndNul) {
  EXPECT_TRUE(IsText("hello\n\xC3\xA9"));
  EXPECT_TRUE(IsText(""));
  EXPECT_FALSE(IsText(std::string("a\0b", 3)));
  EXPECT_FALSE(IsText("\x89PNG\r\n\x1a\n"));
  EXPECT_FALSE(IsText("ab\xE2\x82"));
  TextDetector d;
  d.Feed("x\xE2\x82");
  d.Feed("\xAC y");
  EXPECT_TRUE(d.Finish());
  TextDetector d2;
  d2.Feed("x\xE2\x82");
  EXPECT_FALSE(d2.Finish());
}

TEST(ShellQuoteTest, QuotesEverything) {
  EXPECT_EQ(ShellQuote("abc"), "'abc'");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
  EXPECT_EQ(ShellQuote("$(rm -rf /) `x` \"y\" \\ \n"), "'$(rm -rf /) `x` \"y\" \\ \n'");
  EXPECT_TRUE(IsShellName("PATH"));
  EXPECT_TRUE(IsShellName("_a1"));
  EXPECT_FALSE(IsShellName("1a"));
  EXPECT_FALSE(IsShellName("A-B"));
  EXPECT_FALSE(IsShellName("A=B"));
  EXPECT_FALSE(IsShellName(""));
}

TEST(PathTest, ResolvesLexically) {
  EXPECT_EQ(ResolvePath("/workspace", "a/b.txt"), "/workspace/a/b.txt");
  EXPECT_EQ(ResolvePath("/workspace", "/etc/passwd"), "/etc/passwd");
  EXPECT_EQ(ResolvePath("/workspace/x", "../y/./z//"), "/workspace/y/z");
  EXPECT_EQ(ResolvePath("/", "../../.."), "/");
  EXPECT_EQ(ResolvePath("/a", "."), "/a");
  EXPECT_EQ(ResolvePath("/a/b", "/../c"), "/c");
  EXPECT_EQ(DirName("/a/b"), "/a");
  EXPECT_EQ(DirName("/a"), "/");
  EXPECT_EQ(BaseName("/a/b.txt"), "b.txt");
  EXPECT_EQ(BaseName("/"), "");
}

TEST(ModeStringTest, FormatsPermissionBits) {
  EXPECT_EQ(ModeString(0644), "rw-r--r--");
  EXPECT_EQ(ModeString(0755 | S_IFDIR), "rwxr-xr-x");
  EXPECT_EQ(ModeString(0), "---------");
  EXPECT_EQ(ModeString(0777), "rwxrwxrwx");
  EXPECT_EQ(ModeString(04711), "rwx--x--x");
}

TEST(Base64Test, RoundTrips) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    auto d = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(*d, s);
  }
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(*Base64Decode("Zm8"), "fo");  // unpadded
  EXPECT_EQ(*Base64Decode("Zm9v\nYmFy"), "foobar");
  EXPECT_FALSE(Base64Decode("Zm9v!").has_value());
  EXPECT_FALSE(Base64Decode("Z").has_value());
  EXPECT_FALSE(Base64Decode("Zm8=Zm8=").has_value());
}

TEST(MimeTest, ByExtension) {
  EXPECT_EQ(MimeTypeForPath("/a/b.PNG"), "image/png");
  EXPECT_EQ(MimeTypeForPath("x.json"), "application/json");
  EXPECT_EQ(MimeTypeForPath("/a/Makefile"), "");
  EXPECT_EQ(MimeTypeForPath("/a/.bashrc"), "");
  EXPECT_EQ(MimeTypeForPath("/a.b/c"), "");
}

TEST(PasswdTest, FindsUsersAndGroups) {
  std::string passwd =
      "root:x:0:0:root:/root:/bin/bash\n# comment\nuser:x:1000:1001:U:/home/user:/bin/sh\nbad:line\n";
  auto u = FindPasswd(passwd, "user");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->uid, 1000u);
  EXPECT_EQ(u->gid, 1001u);
  EXPECT_EQ(u->home, "/home/user");
  EXPECT_FALSE(FindPasswd(passwd, "nobody").has_value());
  EXPECT_FALSE(FindPasswd(passwd, "bad").has_value());
  std::string group = "wheel:x:10:root,user\nusers:x:100:\ndocker:x:999:user\n";
  EXPECT_EQ(FindGroups(group, "user"), (std::vector<gid_t>{10, 999}));
  EXPECT_TRUE(FindGroups(group, "nobody").empty());
}

}  // namespace
}  // namespace cove::agent
