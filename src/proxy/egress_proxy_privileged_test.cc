// Privileged tests of the transparent listener: each runs in a fresh network
// namespace (a thread that unshared CLONE_NEWNET, lo up) where an nftables
// rule redirects what the "sandbox" (source 127.0.0.3) sends to 127.0.0.2
// ports 80, 443, 7000 and 7001 to the proxy's transparent port, the way
// coved's packet filter will (and SYNs to 127.0.0.9 vanish, for timeouts). Checks the original destination reaches the
// decision: HTTP by Host, TLS by SNI, raw TCP by address and port.
// Needs root and the nft command (Debian package nftables).
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "proxy/egress_proxy.h"
#include "proxy/testing/fake_resolver.h"
#include "proxy/testing/upstreams.h"

namespace cove::proxy {
namespace {

using namespace std::chrono_literals;
using testing::ClosedWithoutData;
using testing::ConnectTcp;
using testing::EchoUpstream;
using testing::FakeResolver;
using testing::HttpReader;
using testing::HttpUpstream;
using testing::SendAll;
using testing::TlsExchange;
using testing::TlsUpstream;

constexpr char kSandbox[] = "127.0.0.3";   // the sandbox's source address
constexpr char kInternet[] = "127.0.0.2";  // where the sandbox connects
constexpr char kBlackHole[] = "127.0.0.9"; // drops every SYN

bool LoopbackUp() {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  bool ok = ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  ok = ok && ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
  close(s);
  return ok;
}

bool Redirect(uint16_t transparent_port) {
  std::string path = "/tmp/cove-egress-proxy-test-" + std::to_string(getpid()) + ".nft";
  {
    std::ofstream rules(path);
    rules << "table ip cove_egress_test {\n"
          << "  chain output {\n"
          << "    type nat hook output priority -100; policy accept;\n"
          << "    ip saddr " << kSandbox << " ip daddr " << kInternet
          << " tcp dport { 80, 443, 7000, 7001 } redirect to :" << transparent_port << "\n"
          << "  }\n"
          << "}\n"
          << "table ip cove_egress_test_filter {\n"
          << "  chain output {\n"
          << "    type filter hook output priority 0; policy accept;\n"
          << "    ip daddr " << kBlackHole << " tcp flags syn drop\n"
          << "  }\n"
          << "}\n";
  }
  std::string command = "nft -f " + path;
  int status = std::system(command.c_str());
  unlink(path.c_str());
  return status == 0;
}

// A transparent proxy in a fresh network namespace, with the policy below.
class TransparentProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    if (std::system("command -v nft >/dev/null") != 0) GTEST_SKIP() << "needs nft (Debian package nftables)";
  }

  // Runs `body` on a thread in a new network namespace with the proxy up.
  void InNamespace(const std::function<void()>& body) {
    std::thread runner([&] {
      ASSERT_EQ(unshare(CLONE_NEWNET), 0) << strerror(errno);
      ASSERT_TRUE(LoopbackUp());
      resolver_ = std::make_shared<FakeResolver>();
      resolver_->Add("web.test", kInternet);
      resolver_->Add("tls.test", kInternet);
      resolver_->Add("evil.test", kInternet);
      resolver_->Add("slow.test", kBlackHole);
      EgressPolicy policy;
      policy.denied_hosts = {HostPattern{"evil.test"}};
      policy.allowed_hosts = {HostPattern{"web.test"}, HostPattern{"tls.test"}, HostPattern{"slow.test"},
                              HostPattern{kInternet}};
      HostRule rule;
      rule.host = HostPattern{kInternet};
      rule.ports = {7000};
      policy.rules.push_back(rule);
      auto shared_policy = std::make_shared<const EgressPolicy>(policy);
      auto lookup = [shared_policy](const IpAddress& source) -> std::optional<SandboxEgress> {
        if (source.ToString() != kSandbox) return std::nullopt;
        return SandboxEgress{"sb-transparent", shared_policy};
      };
      auto sink = [this](const Denial& denial) {
        std::lock_guard lock(mu_);
        denials_.push_back(denial);
      };
      asio::io_context io;
      auto guard = asio::make_work_guard(io);
      EgressProxyOptions options;
      options.bind_address = "127.0.0.1";
      options.connect_timeout = 300ms;
      auto proxy = EgressProxy::Start(io, options, resolver_, lookup, sink);
      ASSERT_TRUE(proxy.ok()) << proxy.error().ToString();
      transparent_port_ = (*proxy)->transparent_port();
      explicit_port_ = (*proxy)->explicit_port();
      ASSERT_TRUE(Redirect(transparent_port_));
      std::thread io_thread([&] { io.run(); });
      body();
      std::promise<void> stopped;
      asio::post(io, [&] {
        (*proxy)->Stop();
        stopped.set_value();
      });
      stopped.get_future().wait();
      guard.reset();
      io_thread.join();
    });
    runner.join();
  }

  std::vector<Denial> denials() {
    std::lock_guard lock(mu_);
    return denials_;
  }

  std::shared_ptr<FakeResolver> resolver_;
  uint16_t transparent_port_ = 0;
  uint16_t explicit_port_ = 0;
  std::mutex mu_;
  std::vector<Denial> denials_;
};

TEST_F(TransparentProxyTest, HttpOnPort80IsDecidedByItsHostHeader) {
  InNamespace([&] {
    HttpUpstream web(kInternet, 80, HttpUpstream::Fixed("from web"));
    ASSERT_EQ(web.port(), 80);
    int fd = ConnectTcp(kInternet, 80, kSandbox);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(SendAll(fd, "GET /hello HTTP/1.1\r\nHost: web.test\r\n\r\n"));
    HttpReader reader(fd);
    auto response = reader.Read(true);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status(), 200);
    EXPECT_EQ(response->body, "from web");
    auto seen = web.requests();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].start_line, "GET /hello HTTP/1.1");
    EXPECT_EQ(seen[0].Header("Host"), "web.test");
    EXPECT_TRUE(seen[0].Header("Via"));

    // Same connection, a denied name resolving to the same address.
    ASSERT_TRUE(SendAll(fd, "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n"));
    auto denied = reader.Read(true);
    ASSERT_TRUE(denied);
    EXPECT_EQ(denied->status(), 403);
    EXPECT_TRUE(denied->Header("X-Cove-Egress-Denied"));
    close(fd);
    EXPECT_EQ(web.requests().size(), 1u);
    auto seen_denials = denials();
    ASSERT_EQ(seen_denials.size(), 1u);
    EXPECT_EQ(seen_denials[0].sandbox_id, "sb-transparent");
    EXPECT_EQ(seen_denials[0].destination, "evil.test:80");
  });
}

TEST_F(TransparentProxyTest, RawTcpNeedsARuleForTheOriginalAddressAndPort) {
  InNamespace([&] {
    EchoUpstream allowed(kInternet, 7000);
    EchoUpstream other(kInternet, 7001);
    ASSERT_EQ(allowed.port(), 7000);
    ASSERT_EQ(other.port(), 7001);
    int fd = ConnectTcp(kInternet, 7000, kSandbox);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(SendAll(fd, "ping"));
    char buf[4] = {};
    ASSERT_EQ(recv(fd, buf, 4, MSG_WAITALL), 4);
    EXPECT_EQ(std::string(buf, 4), "ping");
    close(fd);
    EXPECT_EQ(allowed.connections(), 1);

    int denied = ConnectTcp(kInternet, 7001, kSandbox);
    ASSERT_GE(denied, 0);
    SendAll(denied, "ping");
    EXPECT_TRUE(ClosedWithoutData(denied));
    close(denied);
    EXPECT_EQ(other.connections(), 0);
    auto seen = denials();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].destination, std::string(kInternet) + ":7001");
  });
}

TEST_F(TransparentProxyTest, TlsOnPort443IsDecidedByItsServerName) {
  InNamespace([&] {
    TlsUpstream tls(kInternet, 443);
    ASSERT_EQ(tls.port(), 443);
    int fd = ConnectTcp(kInternet, 443, kSandbox);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(TlsExchange(fd, "tls.test", "hi"), "tls says: hi");
    close(fd);
    int denied = ConnectTcp(kInternet, 443, kSandbox);
    ASSERT_GE(denied, 0);
    EXPECT_FALSE(TlsExchange(denied, "evil.test", "hi"));
    close(denied);
    EXPECT_EQ(tls.server_names(), std::vector<std::string>{"tls.test"});
    auto seen = denials();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].destination, "evil.test:443");
  });
}

TEST_F(TransparentProxyTest, ConnectionsThatWereNotRedirectedAreClosed) {
  InNamespace([&] {
    int fd = ConnectTcp("127.0.0.1", transparent_port_, kSandbox);
    ASSERT_GE(fd, 0);
    SendAll(fd, "GET / HTTP/1.1\r\nHost: web.test\r\n\r\n");
    EXPECT_TRUE(ClosedWithoutData(fd));
    close(fd);
  });
}

TEST_F(TransparentProxyTest, UnansweredConnectsTimeOutWith502) {
  InNamespace([&] {
    int fd = ConnectTcp("127.0.0.1", explicit_port_, kSandbox);
    ASSERT_GE(fd, 0);
    auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(SendAll(fd, "GET http://slow.test/ HTTP/1.1\r\nHost: slow.test\r\n\r\n"));
    HttpReader reader(fd);
    auto response = reader.Read(true);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status(), 502);
    EXPECT_NE(response->body.find("timed out"), std::string::npos) << response->body;
    EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
    close(fd);
  });
}

}  // namespace
}  // namespace cove::proxy
