// UpstreamResolver and DnsResponder against a tiny upstream DNS server that
// runs in the test on 127.0.0.1 (UDP and TCP, written with the codec). The
// io_context is driven until the coroutine under test finishes; timeouts are
// bounded by the code under test, never asserted with sleeps.
#include <gtest/gtest.h>

#include <functional>
#include <future>
#include <thread>
#include <map>

#include <nlohmann/json.hpp>

#include "io/deadline.h"
#include "proxy/dns_message.h"
#include "proxy/dns_responder.h"
#include "proxy/upstream_resolver.h"

namespace cove::proxy {
namespace {

using namespace std::chrono_literals;
using udp = asio::ip::udp;
using tcp = asio::ip::tcp;
using Bytes = std::vector<uint8_t>;
using Clock = std::chrono::steady_clock;

IpAddress Ip(const std::string& s) { return IpAddress::Parse(s).value(); }

// What the fake upstream does with a query.
struct Behaviour {
  dns::Rcode rcode = dns::Rcode::kNoError;
  std::vector<dns::ResourceRecord> answers;
  bool silent = false;             // never answers
  bool spoof_first = false;        // first a reply with another id and one for another name
  bool truncate_over_udp = false;  // UDP reply has TC set; the full answer comes over TCP
};

class FakeUpstream {
 public:
  explicit FakeUpstream(asio::io_context& io) : udp_(io), acceptor_(io) {
    auto loopback = asio::ip::make_address("127.0.0.1");
    for (int attempt = 0; attempt < 20; ++attempt) {
      boost::system::error_code ec;
      udp_.close(ec);
      acceptor_.close(ec);
      udp_.open(udp::v4());
      udp_.bind(udp::endpoint(loopback, 0));
      tcp::endpoint at(loopback, udp_.local_endpoint().port());
      acceptor_.open(tcp::v4());
      acceptor_.bind(at, ec);
      if (!ec) break;
    }
    acceptor_.listen();
    asio::co_spawn(io, ServeUdp(), asio::detached);
    asio::co_spawn(io, ServeTcp(), asio::detached);
  }
  ~FakeUpstream() {
    boost::system::error_code ec;
    udp_.close(ec);
    acceptor_.close(ec);
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(udp_.local_endpoint().port()); }
  std::map<std::string, Behaviour> names;  // by lower-case name; absent: NXDOMAIN
  int udp_queries = 0;
  int tcp_queries = 0;

 private:
  Behaviour For(const dns::Query& q) {
    auto it = names.find(*dns::CanonicalName(q.question.name));
    if (it == names.end()) {
      Behaviour nx;
      nx.rcode = dns::Rcode::kNxDomain;
      return nx;
    }
    Behaviour b = it->second;
    // Only the answers of the asked type (and CNAMEs).
    std::erase_if(b.answers, [&](const dns::ResourceRecord& rr) {
      return rr.type != dns::kTypeCname && rr.type != q.question.type;
    });
    return b;
  }

  Task<void> ServeUdp() {
    Bytes buf(4096);
    while (true) {
      udp::endpoint from;
      boost::system::error_code ec;
      size_t n = co_await udp_.async_receive_from(asio::buffer(buf), from, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      ++udp_queries;
      auto q = dns::ParseQuery(std::span<const uint8_t>(buf.data(), n));
      if (!q.ok()) continue;
      Behaviour b = For(*q);
      if (b.silent) continue;
      if (b.spoof_first) {
        dns::Query other_id = *q;
        other_id.id = static_cast<uint16_t>(q->id + 1);
        std::vector<dns::ResourceRecord> decoy;
        decoy.push_back(dns::AddressRecord(q->question.name, Ip("192.0.2.66"), 60));
        Bytes wrong_id = dns::BuildResponse(other_id, dns::Rcode::kNoError, decoy);
        co_await udp_.async_send_to(asio::buffer(wrong_id), from, asio::redirect_error(asio::use_awaitable, ec));
        dns::Query other_name = *q;
        other_name.question.name = "spoofed.test";
        decoy[0] = dns::AddressRecord("spoofed.test", Ip("192.0.2.67"), 60);
        Bytes wrong_name = dns::BuildResponse(other_name, dns::Rcode::kNoError, decoy);
        co_await udp_.async_send_to(asio::buffer(wrong_name), from, asio::redirect_error(asio::use_awaitable, ec));
      }
      size_t limit = b.truncate_over_udp ? dns::kHeaderSize : dns::kMaxUdpSize;
      Bytes reply = dns::BuildResponse(*q, b.rcode, b.answers, limit);
      co_await udp_.async_send_to(asio::buffer(reply), from, asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  Task<void> ServeTcp() {
    while (true) {
      boost::system::error_code ec;
      tcp::socket sock(acceptor_.get_executor());
      co_await acceptor_.async_accept(sock, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      uint8_t len[2];
      co_await asio::async_read(sock, asio::buffer(len), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) continue;
      Bytes msg(size_t{len[0]} << 8 | len[1]);
      co_await asio::async_read(sock, asio::buffer(msg), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) continue;
      ++tcp_queries;
      auto q = dns::ParseQuery(msg);
      if (!q.ok()) continue;
      Behaviour b = For(*q);
      Bytes reply = dns::BuildResponse(*q, b.rcode, b.answers, dns::kMaxMessageSize);
      Bytes framed(reply.size() + 2);
      framed[0] = static_cast<uint8_t>(reply.size() >> 8);
      framed[1] = static_cast<uint8_t>(reply.size());
      std::copy(reply.begin(), reply.end(), framed.begin() + 2);
      co_await asio::async_write(sock, asio::buffer(framed), asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  udp::socket udp_;
  tcp::acceptor acceptor_;
};

// Runs the io_context until `task` finishes (at most 20 s of handlers).
template <typename T>
T RunUntilDone(asio::io_context& io, Task<T> task) {
  std::optional<T> result;
  auto wrapper = [&]() -> Task<void> { result.emplace(co_await std::move(task)); };
  asio::co_spawn(io, wrapper(), asio::detached);
  Clock::time_point give_up = Clock::now() + 20s;
  while (!result && Clock::now() < give_up) io.run_one_for(100ms);
  EXPECT_TRUE(result.has_value()) << "the coroutine under test did not finish";
  if (!result) throw std::runtime_error("coroutine did not finish");
  return std::move(*result);
}

class UpstreamResolverTest : public ::testing::Test {
 protected:
  std::shared_ptr<UpstreamResolver> Make(std::vector<std::string> servers,
                                         std::chrono::milliseconds per_server = 2000ms) {
    UpstreamResolverOptions options;
    options.servers = std::move(servers);
    options.per_server_timeout = per_server;
    auto r = UpstreamResolver::Create(io.get_executor(), options);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return *r;
  }
  Result<std::vector<IpAddress>> Resolve(const std::shared_ptr<UpstreamResolver>& r, const std::string& name,
                                         bool v6 = false, std::chrono::milliseconds timeout = 3000ms) {
    return RunUntilDone(io, r->Resolve(name, v6, timeout));
  }

  asio::io_context io;
  FakeUpstream upstream{io};
};

TEST_F(UpstreamResolverTest, ResolvesAndCaches) {
  upstream.names["www.example.test"].answers = {dns::AddressRecord("www.example.test", Ip("203.0.113.10"), 60),
                                                dns::AddressRecord("www.example.test", Ip("2001:db8::10"), 60)};
  auto r = Make({upstream.address()});
  auto a = Resolve(r, "WWW.example.test.");
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_EQ(a->size(), 1u);
  EXPECT_EQ((*a)[0].ToString(), "203.0.113.10");
  EXPECT_EQ(upstream.udp_queries, 1);

  auto again = Resolve(r, "www.example.test");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(upstream.udp_queries, 1) << "second answer comes from the cache";

  auto both = Resolve(r, "www.example.test", true);
  ASSERT_TRUE(both.ok());
  ASSERT_EQ(both->size(), 2u);
  EXPECT_EQ((*both)[1].ToString(), "2001:db8::10");
}

TEST_F(UpstreamResolverTest, FollowsCnameChain) {
  upstream.names["app.example.test"].answers = {
      *dns::CnameRecord("app.example.test", "lb.cdn.test", 300), *dns::CnameRecord("lb.cdn.test", "n1.cdn.test", 300),
      dns::AddressRecord("n1.cdn.test", Ip("198.51.100.1"), 60)};
  auto r = Make({upstream.address()});
  auto a = Resolve(r, "app.example.test");
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_EQ(a->size(), 1u);
  EXPECT_EQ((*a)[0].ToString(), "198.51.100.1");
}

TEST_F(UpstreamResolverTest, NxDomainIsNotFoundAndCached) {
  auto r = Make({upstream.address()});
  auto a = Resolve(r, "nothing.example.test");
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().code, ErrorCode::kNotFound);
  auto again = Resolve(r, "nothing.example.test");
  EXPECT_EQ(again.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(upstream.udp_queries, 1);

  upstream.names["v4only.example.test"].answers = {dns::AddressRecord("v4only.example.test", Ip("203.0.113.4"), 60)};
  auto empty = RunUntilDone(io, r->Resolve("v4only.example.test", true, 3000ms));
  ASSERT_TRUE(empty.ok()) << "AAAA with no records does not hide the A answer";
  EXPECT_EQ(empty->size(), 1u);
}

TEST_F(UpstreamResolverTest, SilentServerTimesOut) {
  upstream.names["slow.example.test"].silent = true;
  auto r = Make({upstream.address()});
  Clock::time_point start = Clock::now();
  auto a = Resolve(r, "slow.example.test", false, 300ms);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().code, ErrorCode::kTimeout) << a.error().message;
  EXPECT_LT(Clock::now() - start, 5s);
}

TEST_F(UpstreamResolverTest, IgnoresRepliesWithWrongIdOrQuestion) {
  upstream.names["spoof.example.test"].spoof_first = true;
  upstream.names["spoof.example.test"].answers = {dns::AddressRecord("spoof.example.test", Ip("203.0.113.20"), 60)};
  auto r = Make({upstream.address()});
  auto a = Resolve(r, "spoof.example.test");
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_EQ(a->size(), 1u);
  EXPECT_EQ((*a)[0].ToString(), "203.0.113.20");
}

TEST_F(UpstreamResolverTest, TruncatedAnswerRetriesOverTcp) {
  Behaviour& b = upstream.names["big.example.test"];
  b.truncate_over_udp = true;
  for (int i = 1; i <= 40; ++i)
    b.answers.push_back(dns::AddressRecord("big.example.test", Ip("198.51.100." + std::to_string(i)), 60));
  auto r = Make({upstream.address()});
  auto a = Resolve(r, "big.example.test");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->size(), 40u);
  EXPECT_EQ(upstream.tcp_queries, 1);
}

TEST_F(UpstreamResolverTest, NextServerAfterSilenceOrServfail) {
  FakeUpstream silent(io);
  silent.names["x.example.test"].silent = true;
  FakeUpstream failing(io);
  failing.names["x.example.test"].rcode = dns::Rcode::kServFail;
  upstream.names["x.example.test"].answers = {dns::AddressRecord("x.example.test", Ip("203.0.113.30"), 60)};
  auto r = Make({silent.address(), failing.address(), upstream.address()}, 200ms);
  auto a = Resolve(r, "x.example.test", false, 3000ms);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ((*a)[0].ToString(), "203.0.113.30");
  EXPECT_EQ(silent.udp_queries, 1);
  EXPECT_EQ(failing.udp_queries, 1);
}

TEST_F(UpstreamResolverTest, NoServerAnswersIsUnavailable) {
  FakeUpstream failing(io);
  failing.names["x.example.test"].rcode = dns::Rcode::kRefused;
  auto r = Make({failing.address()});
  auto a = Resolve(r, "x.example.test");
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().code, ErrorCode::kUnavailable);
}

TEST_F(UpstreamResolverTest, IpLiteralsNeedNoQuery) {
  auto r = Make({upstream.address()});
  auto a = Resolve(r, "203.0.113.9");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)[0].ToString(), "203.0.113.9");
  auto b = Resolve(r, "[2001:db8::9]", true);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)[0].ToString(), "2001:db8::9");
  EXPECT_FALSE(Resolve(r, "bad name!").ok());
  EXPECT_EQ(upstream.udp_queries, 0);
}

TEST(UpstreamResolverConfigTest, ServersAndResolvConf) {
  auto servers = NameserversFromResolvConf(
      "# comment\nnameserver 192.0.2.53\nsearch example.test\nnameserver fe80::1%eth0\n"
      "nameserver 2001:db8::53\nnameserver not-an-ip\noptions ndots:1\n");
  EXPECT_EQ(servers, (std::vector<std::string>{"192.0.2.53", "2001:db8::53"}));
  EXPECT_EQ(ParseServerEndpoint("192.0.2.1")->port(), 53);
  EXPECT_EQ(ParseServerEndpoint("192.0.2.1:5353")->port(), 5353);
  EXPECT_EQ(ParseServerEndpoint("2001:db8::1")->port(), 53);
  auto v6 = ParseServerEndpoint("[2001:db8::1]:5300");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->port(), 5300);
  EXPECT_EQ(v6->address().to_string(), "2001:db8::1");
  for (const char* bad : {"", "x", "192.0.2.1:", "192.0.2.1:0", "192.0.2.1:65536", "dns.example:53", "[::1]x"})
    EXPECT_FALSE(ParseServerEndpoint(bad).ok()) << bad;
}

// DnsResponder with the real UpstreamResolver against the fake upstream;
// queries from 127.0.0.1 belong to sandbox "sb1", from anywhere else to nobody.
class DnsResponderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    upstream.names["www.example.test"].answers = {dns::AddressRecord("www.example.test", Ip("203.0.113.10"), 60),
                                                  dns::AddressRecord("www.example.test", Ip("203.0.113.11"), 60)};
    upstream.names["rebind.example.test"].answers = {dns::AddressRecord("rebind.example.test", Ip("10.0.0.7"), 60)};
    upstream.names["mixed.example.test"].answers = {dns::AddressRecord("mixed.example.test", Ip("127.0.0.1"), 60),
                                                    dns::AddressRecord("mixed.example.test", Ip("198.51.100.5"), 60)};
    upstream.names["db.corp.test"].answers = {dns::AddressRecord("db.corp.test", Ip("198.51.100.40"), 60)};
    upstream.names["www.evil.test"].answers = {dns::AddressRecord("www.evil.test", Ip("203.0.113.66"), 60)};
    UpstreamResolverOptions ro;
    ro.servers = {upstream.address()};
    auto created = UpstreamResolver::Create(io.get_executor(), ro);
    ASSERT_TRUE(created.ok());
    resolver = *created;

    auto policy = EgressPolicy::FromJson(nlohmann::json::parse(R"({
      "enableInternet": false,
      "allowedHosts": ["*.example.test", "db.corp.test"],
      "deniedHosts": ["*.evil.test"],
      "rules": [{"host": "db.corp.test", "ports": [5432]}]
    })"));
    ASSERT_TRUE(policy.ok()) << policy.error().message;
    auto shared_policy = std::make_shared<const EgressPolicy>(std::move(*policy));

    DnsResponderOptions options;
    options.bind_address = "127.0.0.1";
    lookup = [shared_policy](const IpAddress& source) -> std::optional<SandboxEgress> {
      if (source.ToString() != "127.0.0.1") return std::nullopt;
      return SandboxEgress{"sb1", shared_policy};
    };
    responder = StartResponder(options);
    ASSERT_NE(responder, nullptr);
    ASSERT_NE(responder->port(), 0);
  }

  std::unique_ptr<DnsResponder> StartResponder(const DnsResponderOptions& options) {
    auto sink = [this](const DnsDenial& d) { denials.push_back(d); };
    auto started = DnsResponder::Start(io, options, resolver, lookup, sink);
    EXPECT_TRUE(started.ok()) << started.error().message;
    return started.ok() ? std::move(*started) : nullptr;
  }

  // Runs the io_context until `done` holds (bounded).
  void RunUntil(const std::function<bool()>& done) {
    Clock::time_point give_up = Clock::now() + 10s;
    while (!done() && Clock::now() < give_up) io.run_one_for(100ms);
    ASSERT_TRUE(done());
  }

  // Sends one query over UDP from `from` and returns the reply (empty when none in 5 s).
  Bytes AskUdp(const Bytes& query, const std::string& from = "127.0.0.1", uint16_t port = 0) {
    if (port == 0) port = responder->port();
    auto ask = [&]() -> Task<Bytes> {
      udp::socket sock(io);
      sock.open(udp::v4());
      sock.bind(udp::endpoint(asio::ip::make_address(from), 0));
      io::Deadline guard(sock, Clock::now() + 5s);
      udp::endpoint server(asio::ip::make_address("127.0.0.1"), port);
      boost::system::error_code ec;
      co_await sock.async_send_to(asio::buffer(query), server, asio::redirect_error(asio::use_awaitable, ec));
      Bytes buf(4096);
      udp::endpoint sender;
      size_t n = co_await sock.async_receive_from(asio::buffer(buf), sender, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) n = 0;
      buf.resize(n);
      co_return buf;
    };
    return RunUntilDone(io, ask());
  }

  // Sends raw bytes over TCP and returns one length-prefixed reply (empty when the connection closed).
  Bytes AskTcpRaw(const Bytes& raw) {
    auto ask = [&]() -> Task<Bytes> {
      tcp::socket sock(io);
      io::Deadline guard(sock, Clock::now() + 5s);
      boost::system::error_code ec;
      tcp::endpoint server(asio::ip::make_address("127.0.0.1"), responder->port());
      co_await sock.async_connect(server, asio::redirect_error(asio::use_awaitable, ec));
      co_await asio::async_write(sock, asio::buffer(raw), asio::redirect_error(asio::use_awaitable, ec));
      uint8_t len[2] = {0, 0};
      co_await asio::async_read(sock, asio::buffer(len), asio::redirect_error(asio::use_awaitable, ec));
      Bytes reply(ec ? 0 : (size_t{len[0]} << 8 | len[1]));
      co_await asio::async_read(sock, asio::buffer(reply), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) reply.clear();
      co_return reply;
    };
    return RunUntilDone(io, ask());
  }

  Bytes AskTcp(const Bytes& query, uint16_t port = 0) {
    if (port == 0) port = responder->port();
    auto ask = [&]() -> Task<Bytes> {
      tcp::socket sock(io);
      io::Deadline guard(sock, Clock::now() + 5s);
      boost::system::error_code ec;
      tcp::endpoint server(asio::ip::make_address("127.0.0.1"), port);
      co_await sock.async_connect(server, asio::redirect_error(asio::use_awaitable, ec));
      Bytes framed(query.size() + 2);
      framed[0] = static_cast<uint8_t>(query.size() >> 8);
      framed[1] = static_cast<uint8_t>(query.size());
      std::copy(query.begin(), query.end(), framed.begin() + 2);
      co_await asio::async_write(sock, asio::buffer(framed), asio::redirect_error(asio::use_awaitable, ec));
      uint8_t len[2] = {0, 0};
      co_await asio::async_read(sock, asio::buffer(len), asio::redirect_error(asio::use_awaitable, ec));
      Bytes reply(ec ? 0 : (size_t{len[0]} << 8 | len[1]));
      co_await asio::async_read(sock, asio::buffer(reply), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) reply.clear();
      co_return reply;
    };
    return RunUntilDone(io, ask());
  }

  // Asks for (name, type) over UDP and reads the reply as an upstream answer.
  Result<dns::UpstreamAnswer> Ask(const std::string& name, uint16_t type, const std::string& from = "127.0.0.1") {
    uint16_t id = next_id++;
    Bytes reply = AskUdp(*dns::BuildQuery(id, name, type), from);
    return dns::ParseUpstreamResponse(reply, id, name, type);
  }

  asio::io_context io;
  FakeUpstream upstream{io};
  std::shared_ptr<UpstreamResolver> resolver;
  DnsResponder::SandboxLookup lookup;
  std::unique_ptr<DnsResponder> responder;
  std::vector<DnsDenial> denials;
  uint16_t next_id = 100;
};

TEST_F(DnsResponderTest, AllowedNameIsAnsweredAndRemembered) {
  auto a = Ask("WWW.example.test", dns::kTypeA);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->rcode, dns::Rcode::kNoError);
  ASSERT_EQ(a->addresses.size(), 2u);
  EXPECT_EQ(a->addresses[0].ToString(), "203.0.113.10");
  EXPECT_EQ(responder->NameForAddress("sb1", Ip("203.0.113.11")), "www.example.test");
  EXPECT_EQ(responder->NameForAddress("sb1", Ip("203.0.113.99")), std::nullopt);
  EXPECT_EQ(responder->NameForAddress("other", Ip("203.0.113.11")), std::nullopt);
  EXPECT_TRUE(denials.empty());
  responder->ForgetSandbox("sb1");
  EXPECT_EQ(responder->NameForAddress("sb1", Ip("203.0.113.11")), std::nullopt);
}

TEST_F(DnsResponderTest, RuleOnlyNameIsResolvable) {
  auto a = Ask("db.corp.test", dns::kTypeA);
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_EQ(a->addresses.size(), 1u);
  EXPECT_EQ(responder->NameForAddress("sb1", Ip("198.51.100.40")), "db.corp.test");
}

TEST_F(DnsResponderTest, DeniedNameIsNxDomainAndReported) {
  int before = upstream.udp_queries;
  auto a = Ask("www.evil.test", dns::kTypeA);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->rcode, dns::Rcode::kNxDomain);
  EXPECT_EQ(upstream.udp_queries, before) << "a denied name is never sent upstream";
  ASSERT_EQ(denials.size(), 1u);
  EXPECT_EQ(denials[0].sandbox_id, "sb1");
  EXPECT_EQ(denials[0].name, "www.evil.test");
  EXPECT_NE(denials[0].reason.find("deniedHosts"), std::string::npos) << denials[0].reason;

  auto outside = Ask("elsewhere.test", dns::kTypeA);
  ASSERT_TRUE(outside.ok());
  EXPECT_EQ(outside->rcode, dns::Rcode::kNxDomain);
  EXPECT_EQ(denials.size(), 2u);
}

TEST_F(DnsResponderTest, NamesResolvingToDeniedAddressesAreFiltered) {
  auto rebind = Ask("rebind.example.test", dns::kTypeA);
  ASSERT_TRUE(rebind.ok());
  EXPECT_EQ(rebind->rcode, dns::Rcode::kNxDomain);
  ASSERT_EQ(denials.size(), 1u);
  EXPECT_NE(denials[0].reason.find("non-global"), std::string::npos) << denials[0].reason;

  auto mixed = Ask("mixed.example.test", dns::kTypeA);
  ASSERT_TRUE(mixed.ok());
  ASSERT_EQ(mixed->addresses.size(), 1u);
  EXPECT_EQ(mixed->addresses[0].ToString(), "198.51.100.5");
  EXPECT_EQ(responder->NameForAddress("sb1", Ip("127.0.0.1")), std::nullopt);
}

TEST_F(DnsResponderTest, AaaaIsEmptyAndOtherTypesRefused) {
  auto aaaa = Ask("www.example.test", dns::kTypeAaaa);
  ASSERT_TRUE(aaaa.ok()) << aaaa.error().message;
  EXPECT_EQ(aaaa->rcode, dns::Rcode::kNoError);
  EXPECT_TRUE(aaaa->addresses.empty());

  uint16_t id = 7;
  Bytes mx = AskUdp(*dns::BuildQuery(id, "www.example.test", 15));
  auto parsed = dns::ParseUpstreamResponse(mx, id, "www.example.test", 15);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->rcode, dns::Rcode::kRefused);
}

TEST_F(DnsResponderTest, UnknownSourceIsRefused) {
  auto a = Ask("www.example.test", dns::kTypeA, "127.0.0.2");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->rcode, dns::Rcode::kRefused);
  EXPECT_TRUE(a->addresses.empty());
  EXPECT_TRUE(denials.empty());
}

TEST_F(DnsResponderTest, MalformedQueryIsFormErr) {
  Bytes garbage = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0x0C, 0, 1, 0, 1};
  Bytes reply = AskUdp(garbage);
  ASSERT_EQ(reply.size(), dns::kHeaderSize);
  EXPECT_EQ(reply[0], 0x12);
  EXPECT_EQ(reply[1], 0x34);
  EXPECT_EQ(reply[3] & 0xF, static_cast<int>(dns::Rcode::kFormErr));

  // A response sent to the responder is not answered; a query right after it is.
  udp::socket client(io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  Bytes bounced = dns::BuildHeaderOnlyResponse(0x5555, dns::Rcode::kFormErr);
  client.send_to(asio::buffer(bounced), udp::endpoint(asio::ip::make_address("127.0.0.1"), responder->port()));
  Bytes query = *dns::BuildQuery(0x6666, "www.example.test", dns::kTypeA);
  client.send_to(asio::buffer(query), udp::endpoint(asio::ip::make_address("127.0.0.1"), responder->port()));
  Bytes first;
  auto receive = [&]() -> Task<bool> {
    io::Deadline guard(client, Clock::now() + 5s);
    Bytes buf(4096);
    boost::system::error_code ec;
    size_t n = co_await client.async_receive(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
    buf.resize(ec ? 0 : n);
    first = buf;
    co_return true;
  };
  RunUntilDone(io, receive());
  ASSERT_TRUE(dns::MessageId(first).has_value());
  EXPECT_EQ(*dns::MessageId(first), 0x6666) << "the first reply is the query's, not one to the response";
}

TEST_F(DnsResponderTest, AnswersOverTcp) {
  uint16_t id = 0x4321;
  Bytes reply = AskTcp(*dns::BuildQuery(id, "www.example.test", dns::kTypeA));
  auto a = dns::ParseUpstreamResponse(reply, id, "www.example.test", dns::kTypeA);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->addresses.size(), 2u);
}

// TCP connections are accepted at home and served on each shard in turn,
// each resolving with its own shard's resolver; what a shard answered is
// remembered for the proxy, which asks from any thread.
TEST_F(DnsResponderTest, TcpConnectionsAreServedOnEveryShardWithItsResolver) {
  asio::io_context shard_io;
  auto guard = asio::make_work_guard(shard_io);
  std::thread shard_thread([&] { shard_io.run(); });
  UpstreamResolverOptions ro;
  ro.servers = {upstream.address()};
  auto shard_resolver = UpstreamResolver::Create(shard_io.get_executor(), ro);
  ASSERT_TRUE(shard_resolver.ok());
  DnsResponderOptions options;
  options.bind_address = "127.0.0.1";
  options.shards = {ServingShard{io.get_executor(), resolver},
                    ServingShard{shard_io.get_executor(), *shard_resolver}};
  auto sharded = StartResponder(options);
  ASSERT_NE(sharded, nullptr);
  // The first connection is served at home, the second on the other shard.
  for (uint16_t id : {0x1001, 0x1002}) {
    Bytes reply = AskTcp(*dns::BuildQuery(id, "www.example.test", dns::kTypeA), sharded->port());
    auto a = dns::ParseUpstreamResponse(reply, id, "www.example.test", dns::kTypeA);
    ASSERT_TRUE(a.ok()) << a.error().message;
    EXPECT_EQ(a->addresses.size(), 2u);
  }
  EXPECT_EQ(resolver->cache_size(), 1u);
  std::promise<size_t> cached;
  asio::post(shard_io, [&] { cached.set_value((*shard_resolver)->cache_size()); });
  EXPECT_EQ(cached.get_future().get(), 1u);  // the shard resolved it itself
  EXPECT_EQ(sharded->NameForAddress("sb1", Ip("203.0.113.11")), "www.example.test");
  EXPECT_TRUE(denials.empty());
  sharded->Stop();  // the shard's connection closes there
  sharded.reset();
  guard.reset();
  shard_thread.join();  // returns once the shard's connection has ended
}

TEST_F(DnsResponderTest, QueriesInFlightPerSandboxAreBounded) {
  upstream.names["hang.example.test"].silent = true;
  DnsResponderOptions options;
  options.max_queries_per_sandbox = 1;
  auto limited = StartResponder(options);
  ASSERT_NE(limited, nullptr);
  // The first query stays in flight (its upstream never answers)...
  udp::socket first(io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  Bytes hang = *dns::BuildQuery(1, "hang.example.test", dns::kTypeA);
  first.send_to(asio::buffer(hang), udp::endpoint(asio::ip::make_address("127.0.0.1"), limited->port()));
  RunUntil([&] { return upstream.udp_queries == 1; });
  // ...so the sandbox's next one is refused for now.
  uint16_t id = 2;
  Bytes reply = AskUdp(*dns::BuildQuery(id, "www.example.test", dns::kTypeA), "127.0.0.1", limited->port());
  auto a = dns::ParseUpstreamResponse(reply, id, "www.example.test", dns::kTypeA);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->rcode, dns::Rcode::kServFail);
}

// A TCP connection waiting for a query is idle: over the sandbox's cap it is
// closed to make room; one whose query is being answered is not, and the
// new connection is closed instead.
TEST_F(DnsResponderTest, TcpConnectionsPerSandboxAreBoundedAndIdleOnesMakeRoom) {
  upstream.names["hang.example.test"].silent = true;
  DnsResponderOptions options;
  options.max_tcp_connections_per_sandbox = 1;
  options.resolve_timeout = 60s;
  auto limited = StartResponder(options);
  ASSERT_NE(limited, nullptr);
  tcp::endpoint server(asio::ip::make_address("127.0.0.1"), limited->port());

  tcp::socket idle(io);
  idle.connect(server);
  uint16_t id = 7;
  Bytes reply = AskTcp(*dns::BuildQuery(id, "www.example.test", dns::kTypeA), limited->port());
  auto a = dns::ParseUpstreamResponse(reply, id, "www.example.test", dns::kTypeA);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->rcode, dns::Rcode::kNoError);
  uint8_t byte;
  boost::system::error_code ec;
  idle.non_blocking(true);  // closed by the responder already: no waiting
  idle.read_some(asio::buffer(&byte, 1), ec);
  EXPECT_EQ(ec, asio::error::eof) << ec.message();

  tcp::socket busy(io);
  busy.connect(server);
  Bytes hang = *dns::BuildQuery(8, "hang.example.test", dns::kTypeA);
  Bytes framed = {0, static_cast<uint8_t>(hang.size())};
  framed.insert(framed.end(), hang.begin(), hang.end());
  int asked = upstream.udp_queries;
  asio::write(busy, asio::buffer(framed));
  RunUntil([&] { return upstream.udp_queries > asked; });
  EXPECT_TRUE(AskTcp(*dns::BuildQuery(9, "www.example.test", dns::kTypeA), limited->port()).empty());
  busy.close();
}

TEST_F(DnsResponderTest, OversizedTcpQueryClosesTheConnection) {
  Bytes too_long = {0x13, 0x88};  // 5000 bytes announced, over max_tcp_message_bytes
  too_long.resize(2 + 5000, 'a');
  EXPECT_TRUE(AskTcpRaw(too_long).empty());
  Bytes two = {0x00, 0x02, 0x12, 0x34};  // shorter than a header
  EXPECT_TRUE(AskTcpRaw(two).empty());
}

TEST_F(DnsResponderTest, StopClosesTheListeners) {
  uint16_t port = responder->port();
  responder->Stop();
  auto loopback = asio::ip::make_address("127.0.0.1");
  boost::system::error_code ec;
  udp::socket u(io, udp::v4());
  u.bind(udp::endpoint(loopback, port), ec);
  EXPECT_FALSE(ec) << "UDP port still bound: " << ec.message();
  tcp::acceptor t(io, tcp::v4());
  t.set_option(tcp::acceptor::reuse_address(true));
  t.bind(tcp::endpoint(loopback, port), ec);
  EXPECT_FALSE(ec) << "TCP port still bound: " << ec.message();
  io.poll();  // the loops see their sockets closed and end
}

}  // namespace
}  // namespace cove::proxy
