// Unit tests of the preview router: host routes, exposed ports in records.
#include <gtest/gtest.h>

#include "manager/sandbox_record.h"
#include "preview/host_route.h"

namespace cove::preview {
namespace {

TEST(HostRoute, ParsesIdsWithDashes) {
  auto r = ParseHost("8080-my-sandbox-1-abc_123.localhost:7071", "localhost");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->port, 8080);
  EXPECT_EQ(r->sandbox_id, "my-sandbox-1");
  EXPECT_EQ(r->token, "abc_123");
  auto upper = ParseHost("8080-SB-TOK.Preview.Example.COM", "preview.example.com");
  ASSERT_TRUE(upper);
  EXPECT_EQ(upper->sandbox_id, "sb");
}

TEST(HostRoute, RejectsOthers) {
  for (const char* h : {"localhost", "8080-sb.localhost", "8080--tok.localhost", "x-sb-tok.localhost",
                        "0-sb-tok.localhost", "70000-sb-tok.localhost", "8080-sb-tok.evil.localhost",
                        "8080-sb-tok.localhost.evil", "8080-sb-tok-.localhost", "08080-sb-tok.localhost",
                        "8080-sb-tok.localhost:x", "8080-sb-toooooooooooooooolong.localhost"})
    EXPECT_FALSE(ParseHost(h, "localhost")) << h;
}

TEST(HostRoute, UrlAndTokens) {
  EXPECT_EQ(PreviewUrl(false, "localhost", 7071, 8000, "sb-1", "abc"), "http://8000-sb-1-abc.localhost:7071");
  EXPECT_EQ(PreviewUrl(true, "example.com", 443, 8000, "sb", "abc"), "https://8000-sb-abc.example.com");
  std::string t = RandomToken();
  EXPECT_EQ(t.size(), 16u);
  EXPECT_TRUE(ValidToken(t));
  EXPECT_FALSE(ValidToken(""));
  EXPECT_FALSE(ValidToken("a-b"));
  EXPECT_FALSE(ValidToken("ABC"));
}

TEST(SandboxRecord, ExposedPortsRoundTrip) {
  SandboxRecord r;
  r.id = "sb";
  r.ports.push_back({8000, "web", "tok_1", 1234});
  r.ports.push_back({9000, "", "abc", 5678});
  auto back = SandboxRecord::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok()) << back.error().message;
  ASSERT_EQ(back->ports.size(), 2u);
  EXPECT_EQ(back->ports[0].port, 8000);
  EXPECT_EQ(back->ports[0].name, "web");
  EXPECT_EQ(back->ports[0].token, "tok_1");
  EXPECT_EQ(back->ports[1].created_ms, 5678);
  auto old = r.ToJson();
  old.erase("ports");  // records of older versions
  auto legacy = SandboxRecord::FromJson(old);
  ASSERT_TRUE(legacy.ok());
  EXPECT_TRUE(legacy->ports.empty());
}

}  // namespace
}  // namespace cove::preview
