// Egress policy: addresses, host patterns, JSON validation and the evaluation
// order of egress_policy.h (documentation ranges stand in for the internet).
#include "policy/egress_policy.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace cove::proxy {
namespace {

using Json = nlohmann::json;

IpAddress Ip(const std::string& s) {
  auto a = IpAddress::Parse(s);
  EXPECT_TRUE(a.has_value()) << s;
  return a.value_or(IpAddress{});
}

HostPattern Pat(const std::string& s) {
  auto p = HostPattern::Parse(s);
  EXPECT_TRUE(p.ok()) << s << ": " << (p.ok() ? "" : p.error().message);
  return p.ok() ? *p : HostPattern{};
}

EgressPolicy Policy(const Json& j) {
  auto p = EgressPolicy::FromJson(j);
  EXPECT_TRUE(p.ok()) << j.dump() << ": " << (p.ok() ? "" : p.error().message);
  return p.ok() ? *p : EgressPolicy{};
}

Decision Check(const EgressPolicy& p, const std::string& host, uint16_t port, const std::string& addr = "",
               const std::string& method = "", const std::string& path = "") {
  Destination d;
  d.host = host;
  d.port = port;
  if (!addr.empty()) d.address = Ip(addr);
  d.method = method;
  d.path = path;
  return Decide(p, d);
}

std::string ErrorOf(const Json& j) {
  auto p = EgressPolicy::FromJson(j);
  EXPECT_FALSE(p.ok()) << j.dump();
  if (p.ok()) return "";
  EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument);
  return p.error().message;
}

TEST(IpAddressTest, ParsesAndPrintsBothFamilies) {
  auto v4 = IpAddress::Parse("203.0.113.7");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->family, AF_INET);
  EXPECT_EQ(v4->ToString(), "203.0.113.7");
  auto v6 = IpAddress::Parse("2001:DB8::1");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->family, AF_INET6);
  EXPECT_EQ(v6->ToString(), "2001:db8::1");
  EXPECT_EQ(IpAddress::Parse("[2001:db8::1]"), v6);
  EXPECT_FALSE(IpAddress::Parse(""));
  EXPECT_FALSE(IpAddress::Parse("example.com"));
  EXPECT_FALSE(IpAddress::Parse("1.2.3"));
  EXPECT_FALSE(IpAddress::Parse("256.1.1.1"));
  EXPECT_FALSE(IpAddress::Parse("0x7f.0.0.1"));
  EXPECT_FALSE(IpAddress::Parse("2130706433"));
  EXPECT_FALSE(IpAddress::Parse("[1.2.3.4]"));
  EXPECT_FALSE(IpAddress::Parse("1.2.3.4 "));
}

TEST(HostPatternTest, GlobsMatchWithinAndAcrossLabels) {
  HostPattern p = Pat("*.Example.com");
  EXPECT_EQ(p.text, "*.example.com");
  EXPECT_TRUE(p.Matches("api.example.com", std::nullopt));
  EXPECT_TRUE(p.Matches("a.b.EXAMPLE.com", std::nullopt));
  EXPECT_TRUE(p.Matches("api.example.com.", std::nullopt));
  EXPECT_FALSE(p.Matches("example.com", std::nullopt));
  EXPECT_FALSE(p.Matches("evilexample.com", std::nullopt));
  EXPECT_FALSE(p.Matches("example.com.evil.test", std::nullopt));

  HostPattern mid = Pat("api-*.example.com");
  EXPECT_TRUE(mid.Matches("api-1.example.com", std::nullopt));
  EXPECT_TRUE(mid.Matches("api-x.y.example.com", std::nullopt));
  EXPECT_FALSE(mid.Matches("web-1.example.com", std::nullopt));

  EXPECT_TRUE(Pat("*").Matches("anything.test", std::nullopt));
  EXPECT_TRUE(Pat("example.com").Matches("EXAMPLE.COM", std::nullopt));
  EXPECT_FALSE(Pat("example.com").Matches("www.example.com", std::nullopt));
  EXPECT_TRUE(Pat("a*b*c").Matches("aXXbYYc", std::nullopt));
  EXPECT_FALSE(Pat("a*b*c").Matches("aXXbYY", std::nullopt));
}

TEST(HostPatternTest, CidrsMatchAddressesAndLiterals) {
  HostPattern net = Pat("203.0.113.0/24");
  EXPECT_TRUE(net.Matches("example.com", Ip("203.0.113.9")));
  EXPECT_FALSE(net.Matches("example.com", Ip("198.51.100.9")));
  EXPECT_TRUE(net.Matches("203.0.113.200", std::nullopt));
  EXPECT_FALSE(net.Matches("example.com", std::nullopt));
  EXPECT_TRUE(net.Matches("x", Ip("::ffff:203.0.113.1"))) << "IPv4-mapped form of an address in the range";

  HostPattern v6 = Pat("2001:db8::/32");
  EXPECT_TRUE(v6.Matches("x", Ip("2001:db8:1::5")));
  EXPECT_FALSE(v6.Matches("x", Ip("2001:db9::5")));
  EXPECT_TRUE(v6.Matches("[2001:db8::5]", std::nullopt));
  EXPECT_FALSE(v6.Matches("x", Ip("203.0.113.1")));

  HostPattern single = Pat("198.51.100.7");
  EXPECT_TRUE(single.Matches("x", Ip("198.51.100.7")));
  EXPECT_FALSE(single.Matches("x", Ip("198.51.100.8")));
  EXPECT_TRUE(Pat("10.1.0.0/16").Matches("x", Ip("10.1.255.255")));
  EXPECT_TRUE(Pat("0.0.0.0/0").Matches("x", Ip("8.8.8.8")));
  EXPECT_TRUE(Pat("172.16.0.0/12").Matches("x", Ip("172.31.0.1")));
  EXPECT_FALSE(Pat("172.16.0.0/12").Matches("x", Ip("172.32.0.1")));
}

TEST(HostPatternTest, ExplicitNaming) {
  EXPECT_TRUE(Pat("db.internal").NamesExplicitly("DB.internal", std::nullopt));
  EXPECT_FALSE(Pat("*.internal").NamesExplicitly("db.internal", std::nullopt));
  EXPECT_FALSE(Pat("*").NamesExplicitly("db.internal", std::nullopt));
  EXPECT_TRUE(Pat("10.0.0.0/8").NamesExplicitly("db.internal", Ip("10.2.3.4")));
  EXPECT_TRUE(Pat("10.2.3.4").NamesExplicitly("10.2.3.4", std::nullopt));
  EXPECT_FALSE(Pat("0.0.0.0/0").NamesExplicitly("x", Ip("10.2.3.4"))) << "a /0 is as wide as '*'";
  EXPECT_FALSE(Pat("10.0.0.0/8").NamesExplicitly("x", Ip("192.168.1.1")));
}

TEST(HostPatternTest, RejectsBadPatterns) {
  for (const char* bad : {"", "exa mple.com", "a..b", ".example.com", "example.com.", "a/b", "10.0.0.1/8",
                          "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/x", "::1/129", "2001:db8::1/32", "http://x",
                          "ex@mple.com", "1.2.3.4.5/8", "gg::1", "[::1"}) {
    EXPECT_FALSE(HostPattern::Parse(bad).ok()) << bad;
  }
  EXPECT_FALSE(HostPattern::Parse(std::string(64, 'a') + ".com").ok()) << "label over 63";
  EXPECT_FALSE(HostPattern::Parse(std::string(300, 'a')).ok());
  auto cidr = HostPattern::Parse("10.0.0.1/8");
  ASSERT_FALSE(cidr.ok());
  EXPECT_NE(cidr.error().message.find("host bits"), std::string::npos) << cidr.error().message;
  for (const char* good : {"*", "*.a.b", "a_b.example", "xn--bcher-kva.example", "::1", "[::1]", "fe80::/10"})
    EXPECT_TRUE(HostPattern::Parse(good).ok()) << good;
}

TEST(IsNonGlobalTest, Ranges) {
  for (const char* a : {"0.1.2.3", "10.0.0.1", "100.64.0.1", "100.127.255.255", "127.0.0.1", "169.254.169.254",
                        "172.16.0.1", "172.31.255.255", "192.168.1.1", "224.0.0.1", "239.255.255.250", "240.0.0.1",
                        "255.255.255.255", "::", "::1", "fc00::1", "fd12::1", "fe80::1", "ff02::1",
                        "::ffff:10.0.0.1", "::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe"}) {
    EXPECT_TRUE(IsNonGlobal(Ip(a))) << a;
  }
  for (const char* a : {"192.0.2.1", "198.51.100.1", "203.0.113.1", "2001:db8::1", "8.8.8.8", "1.1.1.1",
                        "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0", "223.255.255.255",
                        "::ffff:203.0.113.5", "64:ff9b::cb00:7105", "2606:4700::1111"}) {
    EXPECT_FALSE(IsNonGlobal(Ip(a))) << a;
  }
}

TEST(DecideTest, DefaultPolicyAllowsTheInternetOnWebPorts) {
  EgressPolicy p;
  EXPECT_TRUE(Check(p, "example.com", 443, "203.0.113.5").allow);
  EXPECT_TRUE(Check(p, "example.com", 80, "203.0.113.5").allow);
  Decision raw = Check(p, "example.com", 22, "203.0.113.5");
  EXPECT_FALSE(raw.allow);
  EXPECT_NE(raw.reason.find("port 22"), std::string::npos) << raw.reason;
}

TEST(DecideTest, DeniedHostsComeFirst) {
  EgressPolicy p = Policy({{"allowedHosts", {"*.example.com"}},
                           {"deniedHosts", {"bad.example.com", "198.51.100.0/24"}},
                           {"rules", {{{"host", "bad.example.com"}, {"allow", true}}}}});
  Decision d = Check(p, "bad.example.com", 443, "203.0.113.5");
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.reason, "deniedHosts: bad.example.com");
  Decision by_address = Check(p, "good.example.com", 443, "198.51.100.20");
  EXPECT_FALSE(by_address.allow);
  EXPECT_EQ(by_address.reason, "deniedHosts: 198.51.100.0/24");
  EXPECT_FALSE(Check(p, "198.51.100.20", 443).allow) << "an IP literal host is judged by the CIDR";
  EXPECT_TRUE(Check(p, "good.example.com", 443, "203.0.113.5").allow);
}

TEST(DecideTest, AllowedHostsIsAnAllowList) {
  EgressPolicy p = Policy({{"enableInternet", true}, {"allowedHosts", {"*.example.com", "203.0.113.0/24"}}});
  EXPECT_TRUE(Check(p, "api.example.com", 443, "198.51.100.1").allow);
  Decision other = Check(p, "other.test", 443, "198.51.100.1");
  EXPECT_FALSE(other.allow) << "enableInternet does not widen a non-empty allowedHosts";
  EXPECT_NE(other.reason.find("allowedHosts"), std::string::npos);
  EXPECT_TRUE(Check(p, "whatever.test", 443, "203.0.113.9").allow) << "a CIDR entry allows by address";
  EXPECT_FALSE(Check(p, "api.example.com", 5432, "198.51.100.1").allow) << "raw TCP needs a rule";
}

TEST(DecideTest, RulesDecideBeforeAllowedHostsAndInternet) {
  EgressPolicy p = Policy({{"enableInternet", true},
                           {"rules",
                            {{{"host", "*.blocked.test"}, {"allow", false}},
                             {{"host", "db.example.com"}, {"ports", {5432}}},
                             {{"host", "api.github.com"}, {"pathPrefix", "/repos/me/"}, {"methods", {"get"}}},
                             {{"host", "api.github.com"}, {"allow", false}}}}});
  Decision blocked = Check(p, "x.blocked.test", 443, "203.0.113.1");
  EXPECT_FALSE(blocked.allow);
  ASSERT_NE(blocked.rule, nullptr);
  EXPECT_EQ(blocked.rule->host.text, "*.blocked.test");

  Decision db = Check(p, "db.example.com", 5432, "203.0.113.2");
  EXPECT_TRUE(db.allow);
  ASSERT_NE(db.rule, nullptr);
  EXPECT_EQ(db.rule->ports, std::vector<uint16_t>{5432});
  EXPECT_FALSE(Check(p, "db.example.com", 5433, "203.0.113.2").allow);
  EXPECT_TRUE(Check(p, "db.example.com", 443, "203.0.113.2").allow) << "port 443 falls through to enableInternet";

  // Method and path unknown: the constrained rule applies tentatively and asks for interception.
  Decision tunnel = Check(p, "api.github.com", 443, "203.0.113.3");
  EXPECT_TRUE(tunnel.allow);
  ASSERT_NE(tunnel.rule, nullptr);
  EXPECT_TRUE(tunnel.rule->NeedsInterception());
  EXPECT_TRUE(Check(p, "api.github.com", 443, "203.0.113.3", "GET", "/repos/me/x").allow);
  Decision wrong_path = Check(p, "api.github.com", 443, "203.0.113.3", "GET", "/repos/other");
  EXPECT_FALSE(wrong_path.allow);
  ASSERT_NE(wrong_path.rule, nullptr);
  EXPECT_FALSE(wrong_path.rule->allow);
  EXPECT_FALSE(Check(p, "api.github.com", 443, "203.0.113.3", "POST", "/repos/me/x").allow);
}

TEST(DecideTest, AllowedHostsMustAdmitARuleHostToo) {
  EgressPolicy p = Policy({{"allowedHosts", {"a.example.com"}}, {"rules", {{{"host", "b.example.com"}}}}});
  EXPECT_FALSE(Check(p, "b.example.com", 443, "203.0.113.1").allow);
  EXPECT_TRUE(Check(p, "a.example.com", 443, "203.0.113.1").allow);
}

TEST(DecideTest, InternetOffDeniesTheRest) {
  EgressPolicy p = Policy({{"enableInternet", false}, {"rules", {{{"host", "ok.test"}}}}});
  EXPECT_TRUE(Check(p, "ok.test", 443, "203.0.113.1").allow);
  Decision d = Check(p, "other.test", 443, "203.0.113.1");
  EXPECT_FALSE(d.allow);
  EXPECT_NE(d.reason.find("enableInternet"), std::string::npos);
}

TEST(DecideTest, NonGlobalAddressesNeedExplicitNaming) {
  EgressPolicy open;
  Decision d = Check(open, "sneaky.test", 443, "10.0.0.5");
  EXPECT_FALSE(d.allow);
  EXPECT_NE(d.reason.find("non-global"), std::string::npos) << d.reason;
  EXPECT_FALSE(Check(open, "127.0.0.1", 80).allow);
  EXPECT_FALSE(Check(open, "[::1]", 80).allow);
  EXPECT_FALSE(Check(open, "metadata.test", 80, "169.254.169.254").allow);
  EXPECT_FALSE(Check(open, "x.test", 80, "::ffff:192.168.0.1").allow);

  EgressPolicy star = Policy({{"allowedHosts", {"*"}}});
  EXPECT_FALSE(Check(star, "sneaky.test", 443, "10.0.0.5").allow) << "'*' is not explicit";
  EgressPolicy zero = Policy({{"allowedHosts", {"0.0.0.0/0"}}});
  EXPECT_FALSE(Check(zero, "sneaky.test", 443, "10.0.0.5").allow) << "a /0 is not explicit";

  EgressPolicy by_cidr = Policy({{"allowedHosts", {"*.corp.test", "10.0.0.0/8"}}});
  EXPECT_TRUE(Check(by_cidr, "git.corp.test", 443, "10.0.0.5").allow);
  EXPECT_FALSE(Check(by_cidr, "git.corp.test", 443, "192.168.0.5").allow);

  EgressPolicy by_name = Policy({{"allowedHosts", {"git.corp.test"}}});
  EXPECT_TRUE(Check(by_name, "git.corp.test", 443, "10.0.0.5").allow);

  EgressPolicy by_rule = Policy({{"rules", {{{"host", "db.corp.test"}, {"ports", {5432}}}}}});
  EXPECT_TRUE(Check(by_rule, "db.corp.test", 5432, "10.0.0.6").allow);
  EgressPolicy by_deny_rule = Policy({{"rules", {{{"host", "10.0.0.6"}, {"allow", false}}}}});
  EXPECT_FALSE(Check(by_deny_rule, "db.corp.test", 443, "10.0.0.6").allow) << "a deny rule names nothing";
}

TEST(DecideTest, HostIsCaseInsensitive) {
  EgressPolicy p = Policy({{"deniedHosts", {"evil.test"}}});
  EXPECT_FALSE(Check(p, "EVIL.Test", 443, "203.0.113.1").allow);
  EXPECT_FALSE(Check(p, "evil.test.", 443, "203.0.113.1").allow);
}

TEST(PolicyJsonTest, RoundTrips) {
  Json in = {{"enableInternet", false},
             {"allowedHosts", {"*.example.com", "203.0.113.0/24"}},
             {"deniedHosts", {"bad.example.com"}},
             {"rules",
              {{{"host", "api.example.com"},
                {"ports", {443, 8443}},
                {"pathPrefix", "/v1/"},
                {"methods", {"get", "POST"}},
                {"allow", true},
                {"setHeaders", {{"Authorization", "Bearer {{secret.TOKEN}}"}}}}}}};
  EgressPolicy p = Policy(in);
  ASSERT_EQ(p.rules.size(), 1u);
  EXPECT_EQ(p.rules[0].methods, (std::vector<std::string>{"GET", "POST"}));
  EXPECT_TRUE(p.rules[0].NeedsInterception());
  Json out = p.ToJson();
  EXPECT_EQ(out["rules"][0]["methods"], Json({"GET", "POST"}));
  EgressPolicy again = Policy(out);
  EXPECT_EQ(again.ToJson(), out);
  EXPECT_EQ(out["allowedHosts"], in["allowedHosts"]);
  EXPECT_EQ(out["rules"][0]["setHeaders"]["Authorization"], "Bearer {{secret.TOKEN}}");
  EXPECT_TRUE(Policy(Json::object()).enable_internet);
}

TEST(PolicyJsonTest, ValidationNamesTheField) {
  auto expect_mentions = [](const Json& j, const std::string& field) {
    std::string msg = ErrorOf(j);
    EXPECT_NE(msg.find(field), std::string::npos) << "message '" << msg << "' should name " << field;
  };
  EXPECT_FALSE(EgressPolicy::FromJson(Json::array()).ok());
  expect_mentions({{"enableInternet", "yes"}}, "enableInternet");
  expect_mentions({{"allowInternet", true}}, "allowInternet");
  expect_mentions({{"allowedHosts", "example.com"}}, "allowedHosts");
  expect_mentions({{"allowedHosts", {"ok.test", 5}}}, "allowedHosts[1]");
  expect_mentions({{"allowedHosts", {"ok.test", "bad host"}}}, "allowedHosts[1]");
  expect_mentions({{"deniedHosts", {"10.0.0.0/99"}}}, "deniedHosts[0]");
  expect_mentions({{"rules", {{{"ports", {443}}}}}}, "rules[0].host");
  expect_mentions({{"rules", {{{"host", "a.test"}, {"ports", {0}}}}}}, "rules[0].ports[0]");
  expect_mentions({{"rules", {{{"host", "a.test"}, {"ports", {65536}}}}}}, "rules[0].ports[0]");
  expect_mentions({{"rules", {{{"host", "a.test"}, {"ports", {"443"}}}}}}, "rules[0].ports[0]");
  expect_mentions({{"rules", {{{"host", "a.test"}}, {{"host", "b.test"}, {"ports", {-1}}}}}}, "rules[1].ports[0]");
  expect_mentions({{"rules", {{{"host", "a.test"}, {"pathPrefix", "v1"}}}}}, "rules[0].pathPrefix");
  expect_mentions({{"rules", {{{"host", "a.test"}, {"methods", {"GE T"}}}}}}, "rules[0].methods[0]");
  expect_mentions({{"rules", {{{"host", "a.test"}, {"allow", 1}}}}}, "rules[0].allow");
  expect_mentions({{"rules", {{{"host", "a.test"}, {"setHeaders", {{"X-A", "a\r\nb"}}}}}}}, "rules[0].setHeaders.X-A");
  expect_mentions({{"rules", {{{"host", "a.test"}, {"setHeaders", {{"Bad Name", "x"}}}}}}}, "rules[0].setHeaders");
  expect_mentions({{"rules", {{{"host", "a.test"}, {"setHeaders", {{"X-A", "{{secret.lower}}"}}}}}}}, "rules[0].setHeaders.X-A");
  expect_mentions({{"rules", {{{"host", "a.test"}, {"setHeaders", {{"X-A", "Bearer {{secret.A"}}}}}}}, "rules[0].setHeaders.X-A");
  expect_mentions({{"rules", {{{"host", "a.test"}, {"extra", 1}}}}}, "rules[0].extra");
  expect_mentions({{"rules", {"a.test"}}}, "rules[0]");
  Json many = Json::array();
  for (int i = 0; i < 1025; ++i) many.push_back("a.test");
  expect_mentions({{"deniedHosts", many}}, "deniedHosts");
}

}  // namespace
}  // namespace cove::proxy
