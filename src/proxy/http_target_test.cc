// ParseAuthority and ParseHttpTarget: forms the proxy takes and the ones it
// refuses (fronting through Host, user information, bad ports).
#include "proxy/http_target.h"

#include <gtest/gtest.h>

namespace cove::proxy {
namespace {

TEST(ParseAuthority, NamesLiteralsAndPorts) {
  auto a = ParseAuthority("Example.COM.", 80);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "example.com");
  EXPECT_EQ(a->port, 80);
  auto b = ParseAuthority("[2001:db8::1]:8443", 0);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->host, "2001:db8::1");
  EXPECT_EQ(b->port, 8443);
  EXPECT_EQ(HostPort(b->host, b->port), "[2001:db8::1]:8443");
  EXPECT_FALSE(ParseAuthority("example.com", 0));  // CONNECT needs a port
  for (const char* bad : {"", "a b", "x:0", "x:65536", "x:8o", "[1.2.3.4]:80", "[::1", "x:", "ex%41mple.com"}) {
    EXPECT_FALSE(ParseAuthority(bad, 80)) << bad;
  }
}

TEST(ParseHttpTarget, AbsoluteFormOnTheExplicitListener) {
  std::string problem;
  auto t = ParseHttpTarget("http://Web.Test:8080/a?b=c#frag", {"web.test:8080"}, std::nullopt, &problem);
  ASSERT_TRUE(t) << problem;
  EXPECT_EQ(t->authority.host, "web.test");
  EXPECT_EQ(t->authority.port, 8080);
  EXPECT_EQ(t->origin_form, "/a?b=c");
  auto bare = ParseHttpTarget("HTTP://web.test?q", {}, std::nullopt, &problem);
  ASSERT_TRUE(bare) << problem;
  EXPECT_EQ(bare->origin_form, "/?q");
  EXPECT_EQ(bare->authority.port, 80);
}

TEST(ParseHttpTarget, RefusesFrontingAndOddForms) {
  std::string problem;
  EXPECT_FALSE(ParseHttpTarget("http://web.test/", {"other.test"}, std::nullopt, &problem));
  EXPECT_NE(problem.find("differs"), std::string::npos);
  EXPECT_FALSE(ParseHttpTarget("http://web.test/", {"web.test:81"}, std::nullopt, &problem));
  EXPECT_FALSE(ParseHttpTarget("http://web.test/", {"web.test", "web.test"}, std::nullopt, &problem));
  EXPECT_FALSE(ParseHttpTarget("http://user@web.test/", {}, std::nullopt, &problem));
  EXPECT_FALSE(ParseHttpTarget("https://web.test/", {}, std::nullopt, &problem));
  EXPECT_FALSE(ParseHttpTarget("/path", {"web.test"}, std::nullopt, &problem));
}

TEST(ParseHttpTarget, OriginFormOnTheTransparentListener) {
  std::string problem;
  auto t = ParseHttpTarget("/x", {"web.test"}, 80, &problem);
  ASSERT_TRUE(t) << problem;
  EXPECT_EQ(t->authority.host, "web.test");
  EXPECT_EQ(t->authority.port, 80);
  EXPECT_EQ(t->origin_form, "/x");
  EXPECT_FALSE(ParseHttpTarget("/x", {}, 80, &problem));
  EXPECT_FALSE(ParseHttpTarget("/x", {"web.test:8080"}, 80, &problem));
  EXPECT_FALSE(ParseHttpTarget("http://web.test/x", {"web.test"}, 80, &problem));
}

}  // namespace
}  // namespace cove::proxy
