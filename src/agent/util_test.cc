#include "agent/util.h"

#include <functional>
#include <random>

#include "base/json_parse.h"

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

TEST(PasswdTest, IdsThatDoNotFitAreRefused) {
  // Truncated, 4294967296 would be uid 0; 4294967295 is (uid_t)-1, "unchanged" to setresuid.
  EXPECT_FALSE(FindPasswd("user:x:4294967296:1000::/home/user:/bin/sh\n", "user").has_value());
  EXPECT_FALSE(FindPasswd("user:x:4294967295:1000::/home/user:/bin/sh\n", "user").has_value());
  EXPECT_FALSE(FindPasswd("user:x:1000:4294967295::/home/user:/bin/sh\n", "user").has_value());
  auto u = FindPasswd("user:x:99999999999:1:x:/h:/s\nuser:x:4294967294:7::/home/user:/bin/sh\n", "user");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->uid, 4294967294u);
  EXPECT_TRUE(FindGroups("g:x:4294967295:user\n", "user").empty());
}

}  // namespace
}  // namespace cove::agent

namespace cove::agent {
namespace {

TEST(ParseJsonTest, AgreesWithNlohmann) {
  const char* valid[] = {
      "{}", "[]", "0", "-0", "1.5e3", "-12", "18446744073709551615", "-9223372036854775808",
      "true", "false", "null", "\"\"", " {\"a\" : [1, 2.25, \"x\", {\"b\": null}] } ",
      "\"\\u00e9\\ud83d\\ude00\\n\\t\\\"\\\\\\/\\b\\f\\r\"", "\"h\xC3\xA9llo\"",
      "{\"op\":\"exec\",\"command\":\"echo hi\",\"env\":{\"A\":\"1\"},\"timeoutMs\":500}",
      "{\"a\":1,\"a\":2}", "[[[[[[[[[[1]]]]]]]]]]", "123456789012345678901234567890",
  };
  for (const char* v : valid) {
    auto mine = ParseJson(v);
    auto ref = nlohmann::json::parse(v, nullptr, false);
    ASSERT_FALSE(ref.is_discarded()) << v;
    ASSERT_TRUE(mine.has_value()) << v;
    EXPECT_EQ(*mine, ref) << v;
    EXPECT_EQ(mine->dump(), ref.dump()) << v;
  }
  const char* invalid[] = {
      "", " ", "{", "}", "[1,]", "{\"a\":}", "{\"a\" 1}", "{a:1}", "01", "1.", ".5", "-", "1e",
      "+1", "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"",
      "\"\\ud800\\u0041\"", "\"a\nb\"", "\"\xFF\"", "\"\xC3\"", "{} {}", "[1] x", "'a'",
      "NaN", "1e400", "[1 2]", "{\"a\":1,}",
  };
  for (const char* v : invalid) {
    EXPECT_FALSE(ParseJson(v).has_value()) << v;
    EXPECT_TRUE(nlohmann::json::parse(v, nullptr, false).is_discarded()) << v;
  }
  EXPECT_FALSE(ParseJson(std::string(1000, '[') + std::string(1000, ']')).has_value());  // too deep
  EXPECT_FALSE(ParseJson(std::string("\"a\0b\"", 5)).has_value());
}

TEST(ParseJsonTest, RoundTripsRandomDocuments) {
  std::mt19937 rng(1);
  auto rand_string = [&] {
    std::string s;
    int n = static_cast<int>(rng() % 20);
    for (int i = 0; i < n; ++i) {
      switch (rng() % 4) {
        case 0: s.push_back(static_cast<char>(rng() % 128)); break;
        case 1: s += "\xC3\xA9"; break;
        case 2: s += "\xF0\x9F\x98\x80"; break;
        default: s.push_back(static_cast<char>('a' + rng() % 26));
      }
    }
    return s;
  };
  std::function<nlohmann::json(int)> gen = [&](int depth) -> nlohmann::json {
    switch (depth > 4 ? rng() % 4 : rng() % 6) {
      case 0: return rand_string();
      case 1: return static_cast<int64_t>(rng()) - (1ll << 31);
      case 2: return static_cast<double>(rng()) / 7.0;
      case 3: return rng() % 2 == 0;
      case 4: {
        nlohmann::json a = nlohmann::json::array();
        for (int i = static_cast<int>(rng() % 5); i > 0; --i) a.push_back(gen(depth + 1));
        return a;
      }
      default: {
        nlohmann::json o = nlohmann::json::object();
        for (int i = static_cast<int>(rng() % 5); i > 0; --i) o[rand_string()] = gen(depth + 1);
        return o;
      }
    }
  };
  for (int i = 0; i < 300; ++i) {
    nlohmann::json doc = gen(0);
    std::string text = doc.dump(i % 2 ? 2 : -1);
    auto mine = ParseJson(text);
    ASSERT_TRUE(mine.has_value()) << text;
    EXPECT_EQ(mine->dump(), nlohmann::json::parse(text).dump()) << text;
  }
}

}  // namespace
}  // namespace cove::agent
