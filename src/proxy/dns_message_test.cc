// DNS codec: queries and responses round-trip; hostile messages (pointer
// loops, forward pointers, overlong names and labels, truncation anywhere,
// spoofed ids and questions) are refused without reading out of bounds.
#include "proxy/dns_message.h"

#include <gtest/gtest.h>

namespace cove::proxy::dns {
namespace {

using Bytes = std::vector<uint8_t>;

IpAddress Ip(const std::string& s) { return IpAddress::Parse(s).value(); }

Bytes Header(uint16_t id, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns = 0, uint16_t ar = 0) {
  return {static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), static_cast<uint8_t>(flags >> 8),
          static_cast<uint8_t>(flags),   0, static_cast<uint8_t>(qd),  0, static_cast<uint8_t>(an),
          0, static_cast<uint8_t>(ns),   0, static_cast<uint8_t>(ar)};
}

void Append(Bytes& b, std::initializer_list<int> more) {
  for (int v : more) b.push_back(static_cast<uint8_t>(v));
}

TEST(DnsMessageTest, QueryRoundTrip) {
  auto q = BuildQuery(0x1234, "Example.COM.", kTypeA);
  ASSERT_TRUE(q.ok());
  auto parsed = ParseQuery(*q);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->id, 0x1234);
  EXPECT_TRUE(parsed->recursion_desired);
  EXPECT_EQ(parsed->question.name, "example.com");
  EXPECT_EQ(parsed->question.type, kTypeA);
  EXPECT_EQ(parsed->question.klass, kClassIn);
  EXPECT_EQ(MessageId(*q), 0x1234);
  EXPECT_FALSE(MessageId(Bytes(11, 0)));
}

TEST(DnsMessageTest, ParseQueryKeepsCaseAndAcceptsCompression) {
  Bytes m = Header(7, 0x0100, 1, 0);
  // Question name "www" + pointer back to "Example.com" placed... a pointer must point backwards,
  // so put the target first in a second message layout: header, then the name at 12 is "a.Example.com".
  Append(m, {1, 'a', 7, 'E', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1});
  auto q = ParseQuery(m);
  ASSERT_TRUE(q.ok()) << q.error().message;
  EXPECT_EQ(q->question.name, "a.Example.com");
  Bytes response = BuildResponse(*q, Rcode::kNoError, {AddressRecord("a.Example.com", Ip("192.0.2.1"), 30)});
  auto back = ParseUpstreamResponse(response, 7, "a.example.com", kTypeA);
  ASSERT_TRUE(back.ok()) << back.error().message;
  ASSERT_EQ(back->addresses.size(), 1u);
  EXPECT_EQ(back->addresses[0].ToString(), "192.0.2.1");
  EXPECT_EQ(back->ttl, 30u);
}

TEST(DnsMessageTest, RejectsHostileQueries) {
  Bytes base = Header(1, 0, 1, 0);
  auto with = [&](std::initializer_list<int> tail) {
    Bytes m = base;
    Append(m, tail);
    return m;
  };
  EXPECT_FALSE(ParseQuery(Bytes{}).ok());
  EXPECT_FALSE(ParseQuery(Bytes(11, 0)).ok());
  EXPECT_FALSE(ParseQuery(with({0xC0, 12, 0, 1, 0, 1})).ok()) << "pointer to itself";
  EXPECT_FALSE(ParseQuery(with({0xC0, 40, 0, 1, 0, 1})).ok()) << "forward pointer";
  EXPECT_FALSE(ParseQuery(with({1, 'a', 0xC0, 12, 0, 1, 0, 1})).ok()) << "loop through a label";
  EXPECT_FALSE(ParseQuery(with({0x40, 'a', 0, 0, 1, 0, 1})).ok()) << "reserved label type";
  EXPECT_FALSE(ParseQuery(with({3, 'a', 'b'})).ok()) << "label past the end";
  EXPECT_FALSE(ParseQuery(with({1, 'a', 0, 0, 1})).ok()) << "question past the end";
  EXPECT_FALSE(ParseQuery(with({3, 'a', '.', 'b', 0, 0, 1, 0, 1})).ok()) << "dot inside a label";
  EXPECT_FALSE(ParseQuery(with({1, 0, 0, 0, 1, 0, 1})).ok()) << "NUL inside a label";
  Bytes response = Header(1, 0x8000, 1, 0);
  Append(response, {1, 'a', 0, 0, 1, 0, 1});
  EXPECT_FALSE(ParseQuery(response).ok()) << "QR set";
  Bytes two = Header(1, 0, 2, 0);
  Append(two, {1, 'a', 0, 0, 1, 0, 1, 1, 'b', 0, 0, 1, 0, 1});
  EXPECT_FALSE(ParseQuery(two).ok()) << "two questions";

  // A name of 64-byte labels, and one over 255 bytes in total.
  Bytes long_label = base;
  long_label.push_back(64);
  long_label.insert(long_label.end(), 64, 'a');
  Append(long_label, {0, 0, 1, 0, 1});
  EXPECT_FALSE(ParseQuery(long_label).ok());
  Bytes long_name = base;
  for (int i = 0; i < 5; ++i) {
    long_name.push_back(60);
    long_name.insert(long_name.end(), 60, 'a');
  }
  Append(long_name, {0, 0, 1, 0, 1});
  EXPECT_FALSE(ParseQuery(long_name).ok());

  // Every truncation of a valid query fails cleanly.
  auto good = BuildQuery(9, "deep.sub.example.com", kTypeAaaa);
  ASSERT_TRUE(good.ok());
  for (size_t n = 0; n < good->size(); ++n)
    EXPECT_FALSE(ParseQuery(std::span<const uint8_t>(good->data(), n)).ok()) << n;
}

TEST(DnsMessageTest, ResponsesCarryRcodeAndTruncateToFit) {
  auto qb = BuildQuery(42, "many.example", kTypeA);
  auto q = ParseQuery(*qb);
  ASSERT_TRUE(q.ok());
  for (Rcode rc : {Rcode::kNxDomain, Rcode::kRefused, Rcode::kServFail, Rcode::kNoError}) {
    Bytes r = BuildResponse(*q, rc, {});
    auto a = ParseUpstreamResponse(r, 42, "many.example", kTypeA);
    ASSERT_TRUE(a.ok()) << a.error().message;
    EXPECT_EQ(a->rcode, rc);
    EXPECT_TRUE(a->addresses.empty());
    EXPECT_FALSE(a->truncated);
  }
  std::vector<ResourceRecord> lots;
  for (int i = 0; i < 100; ++i) lots.push_back(AddressRecord("many.example", Ip("198.51.100." + std::to_string(i)), 60));
  Bytes r = BuildResponse(*q, Rcode::kNoError, lots);
  EXPECT_LE(r.size(), kMaxUdpSize);
  auto a = ParseUpstreamResponse(r, 42, "many.example", kTypeA);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->truncated);
  Bytes big = BuildResponse(*q, Rcode::kNoError, lots, kMaxMessageSize);
  auto all = ParseUpstreamResponse(big, 42, "many.example", kTypeA);
  ASSERT_TRUE(all.ok());
  EXPECT_FALSE(all->truncated);
  EXPECT_EQ(all->addresses.size(), 100u);

  Bytes header_only = BuildHeaderOnlyResponse(5, Rcode::kFormErr);
  ASSERT_EQ(header_only.size(), kHeaderSize);
  EXPECT_EQ(header_only[3] & 0xF, 1);
  EXPECT_EQ(header_only[2] & 0x80, 0x80);
}

TEST(DnsMessageTest, FollowsCnameChainsAndIgnoresStrayRecords) {
  auto q = ParseQuery(*BuildQuery(3, "www.example.com", kTypeA));
  ASSERT_TRUE(q.ok());
  std::vector<ResourceRecord> rrs = {
      AddressRecord("unrelated.example", Ip("203.0.113.66"), 5),  // must not be taken
      *CnameRecord("www.example.com", "edge.cdn.example", 300),
      *CnameRecord("edge.cdn.example", "node7.cdn.example", 120),
      AddressRecord("node7.cdn.example", Ip("203.0.113.7"), 200),
      AddressRecord("node7.cdn.example", Ip("203.0.113.8"), 100),
  };
  auto a = ParseUpstreamResponse(BuildResponse(*q, Rcode::kNoError, rrs, 4096), 3, "www.example.com", kTypeA);
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_EQ(a->addresses.size(), 2u);
  EXPECT_EQ(a->addresses[0].ToString(), "203.0.113.7");
  EXPECT_EQ(a->ttl, 100u);

  // A chain longer than kMaxCnameHops, and a CNAME loop, give no addresses.
  std::vector<ResourceRecord> chain;
  std::string prev = "www.example.com";
  for (int i = 0; i <= kMaxCnameHops; ++i) {
    std::string next = "c" + std::to_string(i) + ".example";
    chain.push_back(*CnameRecord(prev, next, 60));
    prev = next;
  }
  chain.push_back(AddressRecord(prev, Ip("203.0.113.9"), 60));
  auto long_chain = ParseUpstreamResponse(BuildResponse(*q, Rcode::kNoError, chain, 4096), 3, "www.example.com", kTypeA);
  ASSERT_TRUE(long_chain.ok());
  EXPECT_TRUE(long_chain->addresses.empty());
  std::vector<ResourceRecord> loop = {*CnameRecord("www.example.com", "b.example", 60),
                                      *CnameRecord("b.example", "www.example.com", 60)};
  auto looped = ParseUpstreamResponse(BuildResponse(*q, Rcode::kNoError, loop, 4096), 3, "www.example.com", kTypeA);
  ASSERT_TRUE(looped.ok());
  EXPECT_TRUE(looped->addresses.empty());

  // AAAA answers to an AAAA query; A records in it are ignored.
  auto q6 = ParseQuery(*BuildQuery(4, "v6.example", kTypeAaaa));
  std::vector<ResourceRecord> mixed = {AddressRecord("v6.example", Ip("203.0.113.1"), 60),
                                       AddressRecord("v6.example", Ip("2001:db8::5"), 60)};
  auto a6 = ParseUpstreamResponse(BuildResponse(*q6, Rcode::kNoError, mixed), 4, "v6.example", kTypeAaaa);
  ASSERT_TRUE(a6.ok());
  ASSERT_EQ(a6->addresses.size(), 1u);
  EXPECT_EQ(a6->addresses[0].ToString(), "2001:db8::5");
}

TEST(DnsMessageTest, UpstreamResponseMustMatchTheQuery) {
  auto q = ParseQuery(*BuildQuery(10, "a.example", kTypeA));
  Bytes r = BuildResponse(*q, Rcode::kNoError, {AddressRecord("a.example", Ip("192.0.2.1"), 60)});
  EXPECT_TRUE(ParseUpstreamResponse(r, 10, "A.Example.", kTypeA).ok());
  EXPECT_FALSE(ParseUpstreamResponse(r, 11, "a.example", kTypeA).ok()) << "id";
  EXPECT_FALSE(ParseUpstreamResponse(r, 10, "b.example", kTypeA).ok()) << "name";
  EXPECT_FALSE(ParseUpstreamResponse(r, 10, "a.example", kTypeAaaa).ok()) << "type";
  EXPECT_FALSE(ParseUpstreamResponse(*BuildQuery(10, "a.example", kTypeA), 10, "a.example", kTypeA).ok()) << "QR";
  for (size_t n = 0; n < r.size(); ++n)
    EXPECT_FALSE(ParseUpstreamResponse(std::span<const uint8_t>(r.data(), n), 10, "a.example", kTypeA).ok()) << n;
}

TEST(DnsMessageTest, CompressedUpstreamAnswersAndSoaNegativeTtl) {
  // Hand-made response: answer owner is a pointer to the question name (0xC00C).
  Bytes m = Header(0x55, 0x8180, 1, 1);
  Append(m, {1, 'x', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0, 1, 0, 1});
  Append(m, {0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 50, 0, 4, 192, 0, 2, 44});
  auto a = ParseUpstreamResponse(m, 0x55, "x.example", kTypeA);
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_EQ(a->addresses.size(), 1u);
  EXPECT_EQ(a->addresses[0].ToString(), "192.0.2.44");
  EXPECT_EQ(a->ttl, 50u);

  // NXDOMAIN with an SOA in authority: negative TTL = min(TTL, MINIMUM).
  Bytes nx = Header(0x56, 0x8183, 1, 0, 1);
  Append(nx, {1, 'x', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0, 1, 0, 1});
  Append(nx, {0xC0, 14, 0, 6, 0, 1, 0, 0, 1, 0, 0, 24, 0xC0, 14, 0xC0, 14});
  Append(nx, {0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 30});
  auto n = ParseUpstreamResponse(nx, 0x56, "x.example", kTypeA);
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(n->rcode, Rcode::kNxDomain);
  EXPECT_EQ(n->negative_ttl, 30u);

  // A CNAME whose rdata length disagrees with its name is malformed.
  Bytes bad = Header(0x57, 0x8180, 1, 1);
  Append(bad, {1, 'x', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0, 1, 0, 1});
  Append(bad, {0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 50, 0, 5, 0xC0, 14, 0, 0, 0});
  EXPECT_FALSE(ParseUpstreamResponse(bad, 0x57, "x.example", kTypeA).ok());
}

TEST(DnsMessageTest, CanonicalNames) {
  EXPECT_EQ(*CanonicalName("WWW.Example.com."), "www.example.com");
  EXPECT_EQ(*CanonicalName("_acme-challenge.x"), "_acme-challenge.x");
  for (const char* bad : {"", ".", "a..b", "a b", "a/b", "*.x", ".a"})
    EXPECT_FALSE(CanonicalName(bad).ok()) << bad;
  EXPECT_FALSE(CanonicalName(std::string(64, 'a')).ok());
  EXPECT_FALSE(CanonicalName(std::string(254, 'a')).ok());
  EXPECT_FALSE(BuildQuery(1, "bad name", kTypeA).ok());
}

}  // namespace
}  // namespace cove::proxy::dns
