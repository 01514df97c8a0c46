// The egress proxy's explicit listener against real upstreams on loopback:
// forwarding and header rewriting, keep-alive, chunked and streamed bodies,
// Expect: 100-continue, CONNECT with the SNI check over a real TLS handshake,
// denials, limits and Stop(), with the real policy (policy.cc). The proxy
// accepts on the test's home io_context and serves its connections on three
// shards in turn (io/shards.h), as coved does, each shard with its own resolver.
#include "proxy/egress_proxy.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "base/testing/wait_until.h"
#include "io/shards.h"
#include "proxy/sandbox_directory.h"
#include "proxy/testing/fake_resolver.h"
#include "proxy/testing/upstreams.h"

namespace cove::proxy {
namespace {

using namespace std::chrono_literals;
using testing::ClosedWithoutData;
using testing::ConnectTcp;
using testing::EchoUpstream;
using testing::FakeResolver;
using testing::HttpMessage;
using testing::HttpReader;
using testing::HttpUpstream;
using testing::SendAll;
using testing::TlsExchange;
using testing::TlsUpstream;

HostPattern Pattern(const std::string& text) { return HostPattern{text}; }

// A shard's resolver: answers from the test's table and notes the threads it
// was called on (a connection resolves on its own shard, with that shard's).
class ShardResolver : public Resolver {
 public:
  explicit ShardResolver(std::shared_ptr<FakeResolver> table) : table_(std::move(table)) {}
  Task<Result<std::vector<IpAddress>>> Resolve(std::string host, bool want_ipv6,
                                               std::chrono::milliseconds timeout) override {
    {
      std::lock_guard lock(mu_);
      threads_.insert(std::this_thread::get_id());
    }
    co_return co_await table_->Resolve(std::move(host), want_ipv6, timeout);
  }
  std::set<std::thread::id> threads() {
    std::lock_guard lock(mu_);
    return threads_;
  }

 private:
  std::shared_ptr<FakeResolver> table_;
  std::mutex mu_;
  std::set<std::thread::id> threads_;
};

class EgressProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    resolver_ = std::make_shared<FakeResolver>();
    for (const char* name : {"web.test", "evil.test", "other.test", "down.test"}) resolver_->Add(name, "127.0.0.1");
    resolver_->Add("tls.test", "127.0.0.44");
    EgressPolicy policy;
    policy.enable_internet = true;
    policy.denied_hosts = {Pattern("evil.test")};
    policy.allowed_hosts = {Pattern("web.test"), Pattern("tls.test"), Pattern("other.test"), Pattern("down.test"),
                            Pattern("127.0.0.44")};
    // The upstreams listen on ephemeral ports: a rule lists every port for the
    // allowed names (the real policy allows only 80 and 443 without one).
    HostRule any_port;
    any_port.host = Pattern("*.test");
    for (uint32_t p = 1; p <= 65535; ++p) any_port.ports.push_back(static_cast<uint16_t>(p));
    policy.rules.push_back(any_port);
    SetPolicy(policy);
  }

  void SetPolicy(EgressPolicy policy) {
    std::lock_guard lock(mu_);
    policy_ = std::make_shared<const EgressPolicy>(std::move(policy));
  }

  void StartProxy(EgressProxyOptions options = {}) {
    options.bind_address = "127.0.0.1";
    // Unmarked: a coved running on this host refuses marked sockets the host's own addresses.
    options.upstream_mark = 0;
    auto lookup = [this](const IpAddress&) -> std::optional<SandboxEgress> {
      std::lock_guard lock(mu_);
      lookup_threads_.insert(std::this_thread::get_id());
      if (directory_) return directory_->Lookup(sandbox_address_);
      if (!known_source_) return std::nullopt;
      return SandboxEgress{"sb-test", policy_};
    };
    auto sink = [this](const Denial& denial) {
      std::lock_guard lock(mu_);
      denials_.push_back(denial);
    };
    shards_ = std::make_unique<io::Shards>(io_, kShards);
    shard_resolvers_.clear();
    for (size_t i = 0; i < kShards; ++i) {
      shard_resolvers_.push_back(std::make_shared<ShardResolver>(resolver_));
      options.shards.push_back(ServingShard{shards_->at(i), shard_resolvers_.back()});
    }
    auto proxy = EgressProxy::Start(io_, options, resolver_, lookup, sink);
    ASSERT_TRUE(proxy.ok()) << proxy.error().ToString();
    proxy_ = std::move(*proxy);
    thread_ = std::thread([this] { io_.run(); });
    shards_->Start();
    shard_threads_.clear();
    for (size_t i = 0; i < kShards; ++i) {
      std::promise<std::thread::id> id;
      asio::post(shards_->at(i), [&id] { id.set_value(std::this_thread::get_id()); });
      shard_threads_.push_back(id.get_future().get());
    }
  }

  void StopProxy() {
    if (!proxy_) return;
    std::promise<void> stopped;
    asio::post(io_, [&] {
      proxy_->Stop();
      stopped.set_value();
    });
    stopped.get_future().wait();
  }

  void TearDown() override {
    StopProxy();
    guard_.reset();
    if (thread_.joinable()) thread_.join();
    if (shards_) shards_->Stop();
    proxy_.reset();
    shards_.reset();
  }

  std::vector<Denial> denials() {
    std::lock_guard lock(mu_);
    return denials_;
  }

  int Client() {
    int fd = ConnectTcp("127.0.0.1", proxy_->explicit_port());
    EXPECT_GE(fd, 0);
    fds_.push_back(fd);
    return fd;
  }

  ~EgressProxyTest() override {
    for (int fd : fds_) close(fd);
  }

  static constexpr size_t kShards = 3;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_ = asio::make_work_guard(io_);
  std::thread thread_;
  std::unique_ptr<io::Shards> shards_;  // shard 0 is io_
  std::vector<std::thread::id> shard_threads_;
  std::vector<std::shared_ptr<ShardResolver>> shard_resolvers_;
  std::shared_ptr<FakeResolver> resolver_;
  // Set before StartProxy: sandboxes are looked up there, as coved does.
  RunningSandboxes running_;
  std::unique_ptr<SandboxDirectory> directory_;
  IpAddress sandbox_address_;
  std::unique_ptr<EgressProxy> proxy_;
  std::mutex mu_;
  std::set<std::thread::id> lookup_threads_;
  std::shared_ptr<const EgressPolicy> policy_;
  bool known_source_ = true;
  std::vector<Denial> denials_;
  std::vector<int> fds_;
};

std::string Get(const std::string& authority, const std::string& path, const std::string& extra = "") {
  return "GET http://" + authority + path + " HTTP/1.1\r\nHost: " + authority + "\r\n" + extra + "\r\n";
}

TEST_F(EgressProxyTest, ForwardsAbsoluteFormInOriginFormWithoutHopByHopHeaders) {
  HttpUpstream up("127.0.0.1", 0, HttpUpstream::Fixed("hello"));
  StartProxy();
  int fd = Client();
  std::string authority = "web.test:" + std::to_string(up.port());
  ASSERT_TRUE(SendAll(fd, Get(authority, "/a/b?c=d",
                              "Proxy-Authorization: Basic eA==\r\nProxy-Connection: keep-alive\r\n"
                              "Connection: X-Secret\r\nX-Secret: 1\r\nX-Keep: yes\r\n")));
  HttpReader reader(fd);
  auto response = reader.Read(true);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status(), 200);
  EXPECT_EQ(response->body, "hello");
  auto seen = up.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].start_line, "GET /a/b?c=d HTTP/1.1");
  EXPECT_EQ(seen[0].Header("Host"), authority);
  EXPECT_FALSE(seen[0].Header("Proxy-Authorization"));
  EXPECT_FALSE(seen[0].Header("Proxy-Connection"));
  EXPECT_FALSE(seen[0].Header("X-Secret"));
  EXPECT_EQ(seen[0].Header("X-Keep"), "yes");
  ASSERT_TRUE(seen[0].Header("Via"));
  EXPECT_NE(seen[0].Header("Via")->find("cove"), std::string::npos);
}

TEST_F(EgressProxyTest, KeepsBothConnectionsAlive) {
  HttpUpstream up("127.0.0.1", 0, HttpUpstream::Fixed("ok"));
  StartProxy();
  int fd = Client();
  std::string authority = "web.test:" + std::to_string(up.port());
  HttpReader reader(fd);
  for (const char* path : {"/one", "/two"}) {
    ASSERT_TRUE(SendAll(fd, Get(authority, path)));
    auto response = reader.Read(true);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status(), 200);
    EXPECT_EQ(response->body, "ok");
  }
  auto seen = up.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].start_line, "GET /one HTTP/1.1");
  EXPECT_EQ(seen[1].start_line, "GET /two HTTP/1.1");
  EXPECT_EQ(seen[0].connection, seen[1].connection);
  EXPECT_EQ(up.connections(), 1);
}

TEST_F(EgressProxyTest, AClientThatClosesHasTheUpstreamCloseToo) {
  // The upstream, not coved, closes first (and keeps the TIME_WAIT).
  HttpUpstream up("127.0.0.1", 0, HttpUpstream::Fixed("ok"));
  StartProxy();
  int fd = Client();
  std::string authority = "web.test:" + std::to_string(up.port());
  ASSERT_TRUE(SendAll(fd, Get(authority, "/once", "Connection: close\r\n")));
  HttpReader reader(fd);
  auto response = reader.Read(true);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status(), 200);
  EXPECT_EQ(response->body, "ok");
  EXPECT_EQ(response->Header("Connection"), "close");
  char byte;
  EXPECT_EQ(read(fd, &byte, 1), 0);  // then the proxy closes the client connection
  auto seen = up.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].Header("Connection"), "close");
}

TEST_F(EgressProxyTest, RetriesOnceWhenAKeptUpstreamConnectionWasClosed) {
  std::atomic<int> closed{0};
  HttpUpstream up("127.0.0.1", 0, [&closed](const HttpMessage&, int fd) {
    SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    shutdown(fd, SHUT_RDWR);  // says keep-alive, closes anyway
    ++closed;
  });
  StartProxy();
  int fd = Client();
  std::string authority = "web.test:" + std::to_string(up.port());
  HttpReader reader(fd);
  int sent = 0;
  for (const char* path : {"/one", "/two"}) {
    ASSERT_TRUE(SendAll(fd, Get(authority, path)));
    ++sent;
    auto response = reader.Read(true);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status(), 200);
    // The next request goes out only once the upstream closed the connection.
    cove::testing::WaitUntil([&] { return closed.load() == sent; }, "the upstream to close its connection");
  }
  EXPECT_EQ(up.requests().size(), 2u);
  EXPECT_EQ(up.connections(), 2);
}

TEST_F(EgressProxyTest, RelaysChunkedRequestAndResponseBodies) {
  HttpUpstream up("127.0.0.1", 0, [](const HttpMessage&, int fd) {
    SendAll(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  });
  StartProxy();
  int fd = Client();
  std::string authority = "web.test:" + std::to_string(up.port());
  ASSERT_TRUE(SendAll(fd, "POST http://" + authority + "/upload HTTP/1.1\r\nHost: " + authority +
                              "\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"));
  HttpReader reader(fd);
  auto response = reader.Read(true);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status(), 200);
  EXPECT_EQ(response->body, "hello world");
  auto seen = up.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body, "abcdefg");
  EXPECT_EQ(seen[0].Header("Transfer-Encoding"), "chunked");
}

TEST_F(EgressProxyTest, RelaysLargeBodiesBothWays) {
  std::string big(3 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + (i / 4096) % 26);
  HttpUpstream up("127.0.0.1", 0, [](const HttpMessage& request, int fd) {
    SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(request.body.size()) + "\r\n\r\n" +
                    request.body);
  });
  StartProxy();
  int fd = Client();
  std::string authority = "web.test:" + std::to_string(up.port());
  std::thread sender([&] {
    SendAll(fd, "PUT http://" + authority + "/big HTTP/1.1\r\nHost: " + authority +
                    "\r\nContent-Length: " + std::to_string(big.size()) + "\r\n\r\n" + big);
  });
  HttpReader reader(fd);
  auto response = reader.Read(true);
  sender.join();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status(), 200);
  EXPECT_TRUE(response->body == big);
}

TEST_F(EgressProxyTest, StreamsAResponseBeforeTheUpstreamFinishes) {
  std::promise<void> first_seen;
  auto first_seen_future = first_seen.get_future().share();
  HttpUpstream up("127.0.0.1", 0, [first_seen_future](const HttpMessage&, int fd) {
    SendAll(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n");
    // The rest only once the client has the first chunk.
    if (first_seen_future.wait_for(5s) != std::future_status::ready) return;
    SendAll(fd, "6\r\nsecond\r\n0\r\n\r\n");
  });
  StartProxy();
  int fd = Client();
  ASSERT_TRUE(SendAll(fd, Get("web.test:" + std::to_string(up.port()), "/stream")));
  HttpReader reader(fd);
  HttpMessage head;
  ASSERT_TRUE(reader.ReadHead(&head));
  EXPECT_EQ(head.status(), 200);
  EXPECT_EQ(reader.ReadChunk(), "first");
  first_seen.set_value();
  EXPECT_EQ(reader.ReadChunk(), "second");
  EXPECT_EQ(reader.ReadChunk(), "");
}

// An origin that reports the first chunk of a request body as soon as it has
// it, then reads the rest and answers with the whole body.
class FirstChunkProbe : public testing::Server {
 public:
  FirstChunkProbe() {
    if (Listen("127.0.0.1", 0)) StartAccepting();
  }
  ~FirstChunkProbe() override { StopServing(); }
  std::promise<std::string> first;

 private:
  void Serve(int fd, int) override {
    HttpReader reader(fd);
    HttpMessage head;
    if (!reader.ReadHead(&head)) return;
    auto chunk = reader.ReadChunk();
    if (!chunk) return;
    first.set_value(*chunk);
    std::string body = *chunk;
    while (true) {
      auto next = reader.ReadChunk();
      if (!next) return;
      if (next->empty()) break;
      body += *next;
    }
    SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  }
};

TEST_F(EgressProxyTest, StreamsARequestBodyBeforeTheClientFinishes) {
  FirstChunkProbe probe;
  auto first = probe.first.get_future();
  StartProxy();
  int fd = Client();
  std::string authority = "web.test:" + std::to_string(probe.port());
  ASSERT_TRUE(SendAll(fd, "POST http://" + authority + "/up HTTP/1.1\r\nHost: " + authority +
                              "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"));
  ASSERT_EQ(first.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(first.get(), "first");
  ASSERT_TRUE(SendAll(fd, "6\r\nsecond\r\n0\r\n\r\n"));
  HttpReader reader(fd);
  auto response = reader.Read(true);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->body, "firstsecond");
}

TEST_F(EgressProxyTest, ResponseUntilEofIsRechunkedForTheClient) {
  HttpUpstream up("127.0.0.1", 0, [](const HttpMessage&, int fd) {
    SendAll(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
    shutdown(fd, SHUT_RDWR);
  });
  StartProxy();
  int fd = Client();
  std::string authority = "web.test:" + std::to_string(up.port());
  HttpReader reader(fd);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(SendAll(fd, Get(authority, "/eof")));
    auto response = reader.Read(true);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body, "until the end");
    EXPECT_EQ(response->Header("Transfer-Encoding"), "chunked");
  }
  EXPECT_EQ(up.connections(), 2);
}

TEST_F(EgressProxyTest, HeadAnswersCarryNoBodyEvenWhenChunked) {
  HttpUpstream up("127.0.0.1", 0, [](const HttpMessage& request, int fd) {
    if (request.start_line.rfind("HEAD", 0) == 0) {
      SendAll(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    } else {
      SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nget");
    }
  });
  StartProxy();
  int fd = Client();
  std::string authority = "web.test:" + std::to_string(up.port());
  ASSERT_TRUE(SendAll(fd, "HEAD http://" + authority + "/ HTTP/1.1\r\nHost: " + authority + "\r\n\r\n"));
  HttpReader reader(fd);
  auto head = reader.Read(true, /*head_request=*/true);
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status(), 200);
  ASSERT_TRUE(SendAll(fd, Get(authority, "/")));
  auto get = reader.Read(true);
  ASSERT_TRUE(get);
  EXPECT_EQ(get->body, "get");
}

TEST_F(EgressProxyTest, AmbiguousRequestFramingIsRejected) {
  HttpUpstream up("127.0.0.1", 0, HttpUpstream::Fixed("ok"));
  StartProxy();
  std::string authority = "web.test:" + std::to_string(up.port());
  for (const char* framing : {"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                              "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                              "Transfer-Encoding: gzip\r\n",
                              "Content-Length: 4\r\nContent-Length: 5\r\n",
                              // Lenient parsers (Boost.Beast's among them) accept these:
                              "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                              "Transfer-Encoding: chunked, chunked\r\n",
                              "Transfer-Encoding: chunked, identity\r\n",
                              "Content-Length: 5\r\nContent-Length: 5\r\n",
                              "Content-Length: 5, 5\r\n"}) {
    int fd = Client();
    ASSERT_TRUE(SendAll(fd, "POST http://" + authority + "/ HTTP/1.1\r\nHost: " + authority + "\r\n" + framing +
                                "\r\n0\r\n\r\n"));
    HttpReader reader(fd);
    auto response = reader.Read(true);
    ASSERT_TRUE(response) << framing;
    EXPECT_EQ(response->status(), 400) << framing;
  }
  // HTTP/1.0 knows no Transfer-Encoding (RFC 9112 §6.1).
  int fd = Client();
  ASSERT_TRUE(SendAll(fd, "POST http://" + authority + "/ HTTP/1.0\r\nHost: " + authority +
                              "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
  HttpReader reader(fd);
  auto response = reader.Read(true);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status(), 400);
  EXPECT_EQ(up.requests().size(), 0u);
}

TEST_F(EgressProxyTest, UpgradesSwitchToATunnel) {
  HttpUpstream up("127.0.0.1", 0, [](const HttpMessage&, int fd) {
    SendAll(fd, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n");
    char buf[256];
    while (true) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0 || !SendAll(fd, std::string_view(buf, static_cast<size_t>(n)))) return;
    }
  });
  StartProxy();
  int fd = Client();
  std::string authority = "web.test:" + std::to_string(up.port());
  ASSERT_TRUE(SendAll(fd, Get(authority, "/ws", "Connection: Upgrade\r\nUpgrade: echo\r\n")));
  HttpReader reader(fd);
  HttpMessage head;
  ASSERT_TRUE(reader.ReadHead(&head));
  EXPECT_EQ(head.status(), 101);
  EXPECT_EQ(head.Header("Upgrade"), "echo");
  ASSERT_TRUE(SendAll(fd, "ping"));
  char buf[4] = {};
  ASSERT_EQ(recv(fd, buf, 4, MSG_WAITALL), 4);
  EXPECT_EQ(std::string(buf, 4), "ping");
  auto seen = up.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].Header("Upgrade"), "echo");
  EXPECT_EQ(seen[0].Header("Connection"), "Upgrade");
}

TEST_F(EgressProxyTest, AnswersExpectContinueOnceAllowed) {
  HttpUpstream up("127.0.0.1", 0, HttpUpstream::Fixed("got it"));
  StartProxy();
  int fd = Client();
  std::string authority = "web.test:" + std::to_string(up.port());
  ASSERT_TRUE(SendAll(fd, "POST http://" + authority + "/p HTTP/1.1\r\nHost: " + authority +
                              "\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"));
  HttpReader reader(fd);
  HttpMessage interim;
  ASSERT_TRUE(reader.ReadHead(&interim));
  EXPECT_EQ(interim.status(), 100);
  ASSERT_TRUE(SendAll(fd, "hello"));
  auto response = reader.Read(true);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status(), 200);
  EXPECT_EQ(response->body, "got it");
  auto seen = up.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body, "hello");
  EXPECT_FALSE(seen[0].Header("Expect"));
}

TEST_F(EgressProxyTest, DeniedHostGets403WithReasonAndIsReported) {
  HttpUpstream up("127.0.0.1", 0, HttpUpstream::Fixed("ok"));
  StartProxy();
  int fd = Client();
  HttpReader reader(fd);
  ASSERT_TRUE(SendAll(fd, Get("evil.test:" + std::to_string(up.port()), "/x")));
  auto response = reader.Read(true);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status(), 403);
  ASSERT_TRUE(response->Header("X-Cove-Egress-Denied"));
  EXPECT_NE(response->Header("X-Cove-Egress-Denied")->find("deniedHosts"), std::string::npos);
  EXPECT_NE(response->body.find("evil.test"), std::string::npos);
  auto seen_denials = denials();
  ASSERT_EQ(seen_denials.size(), 1u);
  EXPECT_EQ(seen_denials[0].sandbox_id, "sb-test");
  EXPECT_EQ(seen_denials[0].destination, "evil.test:" + std::to_string(up.port()));
  EXPECT_NE(seen_denials[0].reason.find("deniedHosts"), std::string::npos);
  // The connection stays usable for an allowed request.
  ASSERT_TRUE(SendAll(fd, Get("web.test:" + std::to_string(up.port()), "/y")));
  auto allowed = reader.Read(true);
  ASSERT_TRUE(allowed);
  EXPECT_EQ(allowed->status(), 200);
  EXPECT_EQ(up.requests().size(), 1u);
}

TEST_F(EgressProxyTest, HostHeaderDifferentFromTheTargetIsRejected) {
  HttpUpstream up("127.0.0.1", 0, HttpUpstream::Fixed("ok"));
  StartProxy();
  int fd = Client();
  ASSERT_TRUE(SendAll(fd, "GET http://web.test:" + std::to_string(up.port()) +
                              "/ HTTP/1.1\r\nHost: other.test\r\n\r\n"));
  HttpReader reader(fd);
  auto response = reader.Read(true);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status(), 400);
  ASSERT_TRUE(response->Header("X-Cove-Egress-Denied"));
  EXPECT_NE(response->Header("X-Cove-Egress-Denied")->find("Host header"), std::string::npos);
  EXPECT_EQ(up.requests().size(), 0u);
  EXPECT_EQ(denials().size(), 1u);
}

TEST_F(EgressProxyTest, OriginFormOnTheExplicitListenerIsRejected) {
  StartProxy();
  int fd = Client();
  ASSERT_TRUE(SendAll(fd, "GET / HTTP/1.1\r\nHost: web.test\r\n\r\n"));
  HttpReader reader(fd);
  auto response = reader.Read(true);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status(), 400);
}

TEST_F(EgressProxyTest, UnknownSourceIsClosedWithoutAnswer) {
  known_source_ = false;
  StartProxy();
  int fd = Client();
  SendAll(fd, Get("web.test", "/"));
  EXPECT_TRUE(ClosedWithoutData(fd));
}

TEST_F(EgressProxyTest, UnreachableUpstreamGets502) {
  int probe = ConnectTcp("127.0.0.1", 1);  // nothing listens on port 1
  ASSERT_LT(probe, 0);
  StartProxy();
  int fd = Client();
  ASSERT_TRUE(SendAll(fd, Get("down.test:1", "/")));
  HttpReader reader(fd);
  auto response = reader.Read(true);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status(), 502);
}

TEST_F(EgressProxyTest, OversizedHeaderGets431) {
  EgressProxyOptions options;
  options.max_header_bytes = 1024;
  StartProxy(options);
  int fd = Client();
  ASSERT_TRUE(SendAll(fd, Get("web.test", "/", "X-Big: " + std::string(4096, 'b') + "\r\n")));
  HttpReader reader(fd);
  auto response = reader.Read(true);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status(), 431);
}

// Sends CONNECT and reads the proxy's answer head.
HttpMessage Connect(int fd, const std::string& authority) {
  SendAll(fd, "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n");
  HttpReader reader(fd);
  HttpMessage head;
  reader.ReadHead(&head);
  return head;
}

TEST_F(EgressProxyTest, ConnectTunnelsTlsWhenTheServerNameIsTheConnectHost) {
  TlsUpstream tls("127.0.0.44", 443);
  ASSERT_EQ(tls.port(), 443);
  StartProxy();
  int fd = Client();
  EXPECT_EQ(Connect(fd, "tls.test:443").status(), 200);
  EXPECT_EQ(TlsExchange(fd, "tls.test", "hi"), "tls says: hi");
  EXPECT_EQ(tls.server_names(), std::vector<std::string>{"tls.test"});
  EXPECT_TRUE(denials().empty());
}

TEST_F(EgressProxyTest, ConnectWithAnotherServerNameIsDomainFrontingAndDenied) {
  TlsUpstream tls("127.0.0.44", 443);
  ASSERT_EQ(tls.port(), 443);
  StartProxy();
  int fd = Client();
  EXPECT_EQ(Connect(fd, "tls.test:443").status(), 200);
  EXPECT_FALSE(TlsExchange(fd, "evil.test", "hi"));
  EXPECT_TRUE(tls.server_names().empty());
  auto seen = denials();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_NE(seen[0].reason.find("differs from the CONNECT host"), std::string::npos);
}

TEST_F(EgressProxyTest, ConnectToADeniedHostGets403) {
  StartProxy();
  int fd = Client();
  HttpMessage head = Connect(fd, "evil.test:443");
  EXPECT_EQ(head.status(), 403);
  EXPECT_TRUE(head.Header("X-Cove-Egress-Denied"));
  EXPECT_EQ(denials().size(), 1u);
}

TEST_F(EgressProxyTest, ConnectToOtherPortsNeedsARuleListingThePort) {
  EchoUpstream echo("127.0.0.1", 0);
  EgressPolicy without_rules = *policy_;
  without_rules.rules.clear();
  SetPolicy(without_rules);
  StartProxy();
  std::string authority = "web.test:" + std::to_string(echo.port());
  int denied = Client();
  HttpMessage head = Connect(denied, authority);
  EXPECT_EQ(head.status(), 403);
  ASSERT_TRUE(head.Header("X-Cove-Egress-Denied"));
  EXPECT_NE(head.Header("X-Cove-Egress-Denied")->find("needs a rule"), std::string::npos);

  EgressPolicy policy = *policy_;
  HostRule rule;
  rule.host = Pattern("web.test");
  rule.ports = {echo.port()};
  policy.rules.push_back(rule);
  SetPolicy(policy);
  int fd = Client();
  EXPECT_EQ(Connect(fd, authority).status(), 200);
  ASSERT_TRUE(SendAll(fd, "ping"));
  char buf[4] = {};
  ASSERT_EQ(recv(fd, buf, 4, MSG_WAITALL), 4);
  EXPECT_EQ(std::string(buf, 4), "ping");
}

TEST_F(EgressProxyTest, StopClosesOpenTunnels) {
  EchoUpstream echo("127.0.0.1", 0);
  EgressPolicy policy = *policy_;
  HostRule rule;
  rule.host = Pattern("web.test");
  rule.ports = {echo.port()};
  policy.rules.push_back(rule);
  SetPolicy(policy);
  StartProxy();
  int fd = Client();
  EXPECT_EQ(Connect(fd, "web.test:" + std::to_string(echo.port())).status(), 200);
  StopProxy();
  EXPECT_TRUE(ClosedWithoutData(fd));
  EXPECT_LT(ConnectTcp("127.0.0.1", proxy_->explicit_port()), 0);
}

// A connection past its request head (here a CONNECT tunnel) is never
// closed to make room: over the sandbox's cap the new one is refused.
TEST_F(EgressProxyTest, ConnectionsPerSandboxAreBounded) {
  EchoUpstream echo("127.0.0.1", 0);
  EgressProxyOptions options;
  options.max_connections_per_sandbox = 1;
  StartProxy(options);
  int first = Client();
  EXPECT_EQ(Connect(first, "web.test:" + std::to_string(echo.port())).status(), 200);
  int second = Client();
  EXPECT_TRUE(ClosedWithoutData(second));
  auto reported = denials();
  ASSERT_EQ(reported.size(), 1u);
  EXPECT_EQ(reported[0].sandbox_id, "sb-test");
  EXPECT_NE(reported[0].reason.find("too many connections"), std::string::npos) << reported[0].reason;
  // The tunnel still works.
  ASSERT_TRUE(SendAll(first, "ping"));
  char buf[4] = {};
  ASSERT_EQ(recv(first, buf, 4, MSG_WAITALL), 4);
}

// A connection that has not sent its request head yet is idle: over the
// sandbox's cap it is closed to make room for the new one, which is served.
TEST_F(EgressProxyTest, AnIdleConnectionMakesRoomOverTheCap) {
  HttpUpstream up("127.0.0.1", 0, HttpUpstream::Fixed("ok"));
  EgressProxyOptions options;
  options.max_connections_per_sandbox = 1;
  StartProxy(options);
  int idle = Client();
  int fresh = Client();
  ASSERT_TRUE(SendAll(fresh, Get("web.test:" + std::to_string(up.port()), "/")));
  HttpReader reader(fresh);
  auto response = reader.Read(true);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status(), 200);
  EXPECT_TRUE(ClosedWithoutData(idle));
  EXPECT_TRUE(denials().empty());
}

TEST_F(EgressProxyTest, IdleConnectionsAreClosed) {
  EgressProxyOptions options;
  options.idle_timeout = 200ms;
  StartProxy(options);
  int fd = Client();
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(ClosedWithoutData(fd));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

// Connections are accepted at home and served on every shard in turn: each
// resolves on its own shard's thread with that shard's resolver, looks its
// sandbox up again there (before deciding), and is served.
TEST_F(EgressProxyTest, ConnectionsAreServedOnEveryShardAndFindTheirSandbox) {
  HttpUpstream up("127.0.0.1", 0, HttpUpstream::Fixed("ok"));
  StartProxy();
  std::string authority = "web.test:" + std::to_string(up.port());
  for (size_t i = 0; i < 2 * kShards; ++i) {
    int fd = Client();
    ASSERT_TRUE(SendAll(fd, Get(authority, "/" + std::to_string(i))));
    HttpReader reader(fd);
    auto response = reader.Read(true);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status(), 200);
    EXPECT_EQ(response->body, "ok");
  }
  std::set<std::thread::id> used;
  for (size_t i = 0; i < kShards; ++i) {
    auto threads = shard_resolvers_[i]->threads();
    ASSERT_EQ(threads.size(), 1u) << "shard " << i;
    EXPECT_EQ(*threads.begin(), shard_threads_[i]) << "shard " << i << "'s resolver ran on another thread";
    used.insert(*threads.begin());
  }
  EXPECT_EQ(used.size(), kShards);
  std::lock_guard lock(mu_);
  for (size_t i = 1; i < kShards; ++i)
    EXPECT_TRUE(lookup_threads_.count(shard_threads_[i])) << "no lookup on shard " << i;
  EXPECT_TRUE(denials_.empty());
}

// A sandbox deleted while its connection lives on another thread: the
// connection's next lookup (before its next request) finds nothing, and the
// connection ends without reaching the upstream; what it was decided on
// before stayed valid meanwhile (the directory hands out shared records).
TEST_F(EgressProxyTest, ASandboxDeletedUnderAConnectionOfAnotherThreadEndsIt) {
  HttpUpstream up("127.0.0.1", 0, HttpUpstream::Fixed("ok"));
  // Every source maps to slot 3 of this plan: the test's clients are on loopback.
  net::AddressPlan plan = *net::AddressPlan::Parse("10.200.0.0/15");
  auto veth = plan.ForSlot(3);
  ASSERT_TRUE(veth.ok());
  IpAddress sandbox_address;
  std::memcpy(sandbox_address.bytes, &veth->sandbox, 4);
  directory_ = std::make_unique<SandboxDirectory>(&running_, plan, policy_);
  SandboxRecord record;
  record.id = "sb-shard";
  record.slot = 3;
  record.state = SandboxState::kRunning;
  record.egress = policy_;
  RunningSandboxes::Record published = running_.Publish(record, nullptr);
  record.egress.reset();
  sandbox_address_ = sandbox_address;  // the loopback clients stand for the sandbox
  EgressProxyOptions options;
  StartProxy(options);
  std::string authority = "web.test:" + std::to_string(up.port());
  close(ConnectTcp("127.0.0.1", proxy_->explicit_port()));  // served at home (shard 0): the next goes to shard 1
  int fd = Client();
  HttpReader reader(fd);
  ASSERT_TRUE(SendAll(fd, Get(authority, "/first")));
  auto response = reader.Read(true);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status(), 200);
  {
    std::lock_guard lock(mu_);
    EXPECT_TRUE(lookup_threads_.count(shard_threads_[1])) << "the connection did not run on shard 1";
  }
  // Deleted (the Manager withdraws its record) while the connection waits on its shard.
  running_.Withdraw(published);
  published.reset();
  ASSERT_TRUE(SendAll(fd, Get(authority, "/second")));
  EXPECT_TRUE(ClosedWithoutData(fd));
  auto seen = up.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].start_line, "GET /first HTTP/1.1");
}

}  // namespace
}  // namespace cove::proxy

namespace cove::proxy {
namespace {

// Secrets in plain HTTP: header templates of the deciding rule, placeholders
// replaced for their bound host and blocked (exfiltration) elsewhere, a
// template naming a missing secret denied.
TEST_F(EgressProxyTest, PutsSecretsIntoRequestsAndBlocksPlaceholdersElsewhere) {
  char dir[] = "/tmp/cove-proxy-secrets-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  auto store = SecretStore::Open(std::string(dir) + "/secrets.json");
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Put("TOKEN", "real-token", false, {}).ok());
  auto key = (*store)->Put("KEY", "real-key", true, {Pattern("web.test")});
  ASSERT_TRUE(key.ok());
  EgressPolicy policy = *policy_;
  HostRule inject;
  inject.host = Pattern("web.test");
  inject.ports = policy.rules[0].ports;
  inject.set_headers = {{"Authorization", "Bearer {{secret.TOKEN}}"}};
  HostRule missing = inject;
  missing.host = Pattern("down.test");
  missing.set_headers = {{"X-Missing", "{{secret.GONE}}"}};
  policy.rules.insert(policy.rules.begin(), {inject, missing});
  SetPolicy(policy);
  EgressProxyOptions options;
  options.secrets = *store;
  HttpUpstream up("127.0.0.1", 0, HttpUpstream::Fixed("ok"));
  StartProxy(options);
  std::string port = std::to_string(up.port());
  int fd = Client();
  HttpReader reader(fd);
  ASSERT_TRUE(SendAll(fd, Get("web.test:" + port, "/a?k=" + key->placeholder,
                              "Authorization: mine\r\nX-Key: " + key->placeholder + "\r\n")));
  auto ok = reader.Read(true);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status(), 200);
  auto seen = up.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].start_line, "GET /a?k=real-key HTTP/1.1");
  EXPECT_EQ(seen[0].Header("Authorization"), "Bearer real-token");
  EXPECT_EQ(seen[0].Header("X-Key"), "real-key");
  // The same placeholder to another host: blocked, reported.
  ASSERT_TRUE(SendAll(fd, Get("other.test:" + port, "/b", "X-Key: " + key->placeholder + "\r\n")));
  auto blocked = reader.Read(true);
  ASSERT_TRUE(blocked);
  EXPECT_EQ(blocked->status(), 403);
  ASSERT_FALSE(denials().empty());
  EXPECT_NE(denials().back().reason.find("exfiltration attempt"), std::string::npos);
  // A template naming a secret that is not set: denied, never sent.
  ASSERT_TRUE(SendAll(fd, Get("down.test:" + port, "/c")));
  auto denied = reader.Read(true);
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status(), 403);
  EXPECT_NE(denied->body.find("GONE"), std::string::npos);
  EXPECT_EQ(up.requests().size(), 1u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cove::proxy

namespace cove::proxy {
namespace {

// A CONNECT whose rule needs interception: the proxy terminates TLS with a
// leaf of its CA, reads the HTTP request inside, and connects to the
// upstream over TLS that it verifies; a self-signed upstream fails: 502.
TEST_F(EgressProxyTest, InterceptsTlsForRulesThatNeedItAndVerifiesTheUpstream) {
  TlsUpstream tls("127.0.0.44", 443);
  ASSERT_EQ(tls.port(), 443);
  char dir[] = "/tmp/cove-proxy-ca-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  auto ca = CertificateAuthority::LoadOrCreate(std::string(dir) + "/ca");
  ASSERT_TRUE(ca.ok());
  EgressPolicy policy = *policy_;
  HostRule inject;
  inject.host = Pattern("tls.test");
  inject.set_headers = {{"X-A", "b"}};
  policy.rules.insert(policy.rules.begin(), inject);
  SetPolicy(policy);
  EgressProxyOptions options;
  options.ca = *ca;
  StartProxy(options);
  int fd = Client();
  EXPECT_EQ(Connect(fd, "tls.test:443").status(), 200);
  auto answer = TlsExchange(fd, "tls.test", "GET /x HTTP/1.1\r\nHost: tls.test\r\n\r");
  ASSERT_TRUE(answer);
  EXPECT_EQ(*answer, "HTTP/1.1 502 Bad Gateway\r");
  EXPECT_EQ((*ca)->minted(), 1u);
  EXPECT_GE(tls.connections(), 1);
  std::filesystem::remove_all(dir);
}

// A rule that denies one method: the tunnel is intercepted (not denied) and
// that method alone gets 403.
TEST_F(EgressProxyTest, ARuleDenyingSomeMethodsInterceptsAndDecidesPerRequest) {
  TlsUpstream tls("127.0.0.44", 443);
  ASSERT_EQ(tls.port(), 443);
  char dir[] = "/tmp/cove-proxy-ca-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  auto ca = CertificateAuthority::LoadOrCreate(std::string(dir) + "/ca");
  ASSERT_TRUE(ca.ok());
  EgressPolicy policy = *policy_;
  HostRule no_delete;
  no_delete.host = Pattern("tls.test");
  no_delete.methods = {"DELETE"};
  no_delete.allow = false;
  policy.rules.insert(policy.rules.begin(), no_delete);
  SetPolicy(policy);
  EgressProxyOptions options;
  options.ca = *ca;
  StartProxy(options);
  int fd = Client();
  EXPECT_EQ(Connect(fd, "tls.test:443").status(), 200);
  auto answer = TlsExchange(fd, "tls.test", "DELETE /x HTTP/1.1\r\nHost: tls.test\r\n\r");
  ASSERT_TRUE(answer);
  EXPECT_EQ(*answer, "HTTP/1.1 403 Forbidden\r");
  int fd2 = Client();
  EXPECT_EQ(Connect(fd2, "tls.test:443").status(), 200);
  auto get = TlsExchange(fd2, "tls.test", "GET /x HTTP/1.1\r\nHost: tls.test\r\n\r");
  ASSERT_TRUE(get);
  EXPECT_EQ(*get, "HTTP/1.1 502 Bad Gateway\r");  // allowed; the self-signed upstream fails verification
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cove::proxy
