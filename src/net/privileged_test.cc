// Sandbox networks and the sealing firewall against the real kernel, inside a
// network namespace of the test's own (made before any thread starts), so no
// packet reaches the machine's real network.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "net/firewall.h"
#include "net/netns.h"
#include "net/sandbox_network.h"
#include "net/veth.h"

namespace cove::net {
namespace {

sockaddr_in Addr(in_addr a, uint16_t port) {
  sockaddr_in s{};
  s.sin_family = AF_INET;
  s.sin_addr = a;
  s.sin_port = htons(port);
  return s;
}

UniqueFd Listen(int type, uint16_t* port) {
  UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  sockaddr_in any = Addr(in_addr{INADDR_ANY}, 0);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&any), sizeof any), 0);
  if (type == SOCK_STREAM) {
    EXPECT_EQ(::listen(fd.get(), 16), 0);
  }
  socklen_t len = sizeof any;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&any), &len);
  *port = ntohs(any.sin_port);
  return fd;
}

bool Readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

// From inside netns: a TCP connect to dst:port (optionally from `source`);
// true when it was established within 1 s.
bool ConnectFrom(int netns, in_addr dst, uint16_t port, const in_addr* source = nullptr) {
  bool ok = false;
  EXPECT_TRUE(RunInNetns(netns, [&]() -> Status {
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (source) {
      sockaddr_in src = Addr(*source, 0);
      if (::bind(s.get(), reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) return SysError("bind source");
    }
    sockaddr_in a = Addr(dst, port);
    ::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    pollfd p{s.get(), POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    ok = ::poll(&p, 1, 1000) == 1 && ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    return OkStatus();
  }).ok());
  return ok;
}

void SendUdpFrom(int netns, in_addr dst, uint16_t port) {
  ASSERT_TRUE(RunInNetns(netns, [&]() -> Status {
    UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in a = Addr(dst, port);
    ::sendto(s.get(), "q", 1, 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
    return OkStatus();
  }).ok());
}

// Accepts one connection and returns its original destination "ip:port".
std::string AcceptOriginalDst(int listener) {
  if (!Readable(listener, 2000)) return "nothing";
  UniqueFd c(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  sockaddr_in orig{};
  socklen_t len = sizeof orig;
  if (::getsockopt(c.get(), SOL_IP, SO_ORIGINAL_DST, &orig, &len) != 0) return "no original dst";
  char buf[INET_ADDRSTRLEN];
  return std::string(inet_ntop(AF_INET, &orig.sin_addr, buf, sizeof buf)) + ":" + std::to_string(ntohs(orig.sin_port));
}

in_addr Ip(const char* text) {
  in_addr a{};
  inet_pton(AF_INET, text, &a);
  return a;
}

class NetworkTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(::unshare(CLONE_NEWNET), 0) << "needs root";
    ASSERT_EQ(system("ip link set lo up"), 0);
  }
  AddressPlan plan_ = *AddressPlan::Parse("10.200.0.0/16");
};

TEST_F(NetworkTest, BuildsAddressedVethAndDeletesIt) {
  auto n = SandboxNetwork::Build(plan_, 7);
  ASSERT_TRUE(n.ok()) << n.error().ToString();
  EXPECT_EQ(n->host_if(), "cv7");
  EXPECT_EQ(n->addresses().SandboxText(), "10.200.0.15");
  // The host reaches a server in the sandbox's namespace over the veth.
  uint16_t port = 0;
  UniqueFd server;
  ASSERT_TRUE(RunInNetns(n->netns_fd(), [&] { server = Listen(SOCK_STREAM, &port); return OkStatus(); }).ok());
  UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a = Addr(n->addresses().sandbox, port);
  EXPECT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  // Building the same slot twice fails cleanly.
  EXPECT_EQ(SandboxNetwork::Build(plan_, 7).error().code, ErrorCode::kAlreadyExists);
  n->Destroy();
  auto links = ListLinks();
  ASSERT_TRUE(links.ok());
  EXPECT_EQ(std::count(links->begin(), links->end(), "cv7"), 0);
}

TEST_F(NetworkTest, FirewallRedirectsEverythingToCovedAndDropsTheRest) {
  uint16_t transparent = 0, explicit_port = 0, dns = 0, udp_port = 0, api_port = 0;
  UniqueFd t = Listen(SOCK_STREAM, &transparent), e = Listen(SOCK_STREAM, &explicit_port), d = Listen(SOCK_DGRAM, &dns),
           o = Listen(SOCK_DGRAM, &udp_port), api = Listen(SOCK_STREAM, &api_port);
  auto a = SandboxNetwork::Build(plan_, 20);
  auto b = SandboxNetwork::Build(plan_, 21);
  ASSERT_TRUE(a.ok() && b.ok());
  FirewallConfig config{transparent, explicit_port, dns, 0xc0fe, "10.200.0.0/16"};
  auto fw = Firewall::Install("cove_nettest", config, {{a->host_if(), a->addresses().sandbox}});
  ASSERT_TRUE(fw.ok()) << fw.error().ToString();
  ASSERT_TRUE((*fw)->Add({b->host_if(), b->addresses().sandbox}).ok());
  const in_addr gw = a->addresses().host;

  // Any TCP destination ends at the transparent proxy, which learns the original one.
  EXPECT_TRUE(ConnectFrom(a->netns_fd(), Ip("198.51.100.7"), 443));
  EXPECT_EQ(AcceptOriginalDst(t.get()), "198.51.100.7:443");
  // The host's own services (coved's API among them) are not reachable: redirected too.
  EXPECT_TRUE(ConnectFrom(a->netns_fd(), gw, api_port));
  EXPECT_EQ(AcceptOriginalDst(t.get()), a->addresses().HostText() + ":" + std::to_string(api_port));
  EXPECT_FALSE(Readable(api.get(), 100));
  // Another sandbox: redirected, never delivered.
  EXPECT_TRUE(ConnectFrom(a->netns_fd(), b->addresses().sandbox, 80));
  EXPECT_EQ(AcceptOriginalDst(t.get()), b->addresses().SandboxText() + ":80");
  // The explicit proxy port on the gateway is delivered as is.
  EXPECT_TRUE(ConnectFrom(a->netns_fd(), gw, explicit_port));
  EXPECT_TRUE(Readable(e.get(), 1000));
  // DNS to any server lands at coved's responder; other UDP is dropped.
  SendUdpFrom(a->netns_fd(), Ip("192.0.2.53"), 53);
  EXPECT_TRUE(Readable(d.get(), 1000));
  char buf[8];
  ::recv(d.get(), buf, sizeof buf, 0);
  SendUdpFrom(a->netns_fd(), gw, udp_port);
  EXPECT_FALSE(Readable(o.get(), 300));
  // A forged source address is dropped (root in a sandbox could not even set
  // one: it has no CAP_NET_ADMIN over the namespace; the test is root).
  ASSERT_TRUE(RunInNetns(a->netns_fd(), [] {
    return system("ip addr add 10.200.0.99/32 dev eth0") == 0 ? OkStatus() : MakeError(ErrorCode::kInternal, "ip addr");
  }).ok());
  const in_addr forged = Ip("10.200.0.99");
  EXPECT_FALSE(ConnectFrom(a->netns_fd(), gw, explicit_port, &forged));

  // Marked (proxy upstream) sockets reach neither the host's addresses nor sandboxes; others do.
  auto marked_connect = [](in_addr dst, uint16_t port, uint32_t mark) {
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (mark) ::setsockopt(s.get(), SOL_SOCKET, SO_MARK, &mark, sizeof mark);
    sockaddr_in sa = Addr(dst, port);
    return ::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  };
  EXPECT_TRUE(marked_connect(Ip("127.0.0.1"), api_port, 0));
  // coved's proxy ports take sandboxes' traffic only (not the host's, not other networks').
  auto quick_connect = [](in_addr dst, uint16_t port) {
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in sa = Addr(dst, port);
    ::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    pollfd p{s.get(), POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    return ::poll(&p, 1, 300) == 1 && ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
  };
  EXPECT_FALSE(quick_connect(Ip("127.0.0.1"), explicit_port));
  EXPECT_FALSE(quick_connect(gw, transparent));
  EXPECT_TRUE(Readable(api.get(), 1000));
  EXPECT_FALSE(marked_connect(Ip("127.0.0.1"), api_port, 0xc0fe));
  EXPECT_FALSE(marked_connect(gw, api_port, 0xc0fe));
  uint16_t in_b = 0;
  UniqueFd b_server;
  ASSERT_TRUE(RunInNetns(b->netns_fd(), [&] { b_server = Listen(SOCK_STREAM, &in_b); return OkStatus(); }).ok());
  EXPECT_TRUE(marked_connect(b->addresses().sandbox, in_b, 0));  // the preview router may
  EXPECT_FALSE(marked_connect(b->addresses().sandbox, in_b, 0xc0fe));

  // Removing a sandbox's link stops the redirect (the veth goes with it in real use).
  ASSERT_TRUE((*fw)->Remove({b->host_if(), b->addresses().sandbox}).ok());
  ASSERT_TRUE((*fw)->Remove({b->host_if(), b->addresses().sandbox}).ok());  // idempotent
  ASSERT_TRUE((*fw)->Uninstall().ok());
  EXPECT_EQ(system("nft list table inet cove_nettest >/dev/null 2>&1") == 0, false);
}

// A host connection whose own ephemeral port equals one of coved's proxy or
// DNS ports (nothing listens there) gets its replies: the firewall drops
// connections to those ports, not packets to them.
TEST_F(NetworkTest, HostSocketsOnCovedsPortNumbersGetTheirReplies) {
  auto unused_port = [] {
    uint16_t port = 0;
    UniqueFd probe = Listen(SOCK_STREAM, &port);
    return port;
  };
  uint16_t transparent = unused_port(), explicit_port = unused_port(), dns = unused_port(), server_port = 0;
  UniqueFd server = Listen(SOCK_STREAM, &server_port);
  auto a = SandboxNetwork::Build(plan_, 22);
  ASSERT_TRUE(a.ok()) << a.error().ToString();
  FirewallConfig config{transparent, explicit_port, dns, 0xc0fe, "10.200.0.0/16"};
  auto fw = Firewall::Install("cove_nettest_replies", config, {{a->host_if(), a->addresses().sandbox}});
  ASSERT_TRUE(fw.ok()) << fw.error().ToString();
  for (uint16_t own : {transparent, explicit_port, dns}) {
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    int one = 1;
    ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in src = Addr(Ip("127.0.0.1"), own);
    ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&src), sizeof src), 0) << own;
    sockaddr_in dst = Addr(Ip("127.0.0.1"), server_port);
    ::connect(s.get(), reinterpret_cast<sockaddr*>(&dst), sizeof dst);
    pollfd p{s.get(), POLLOUT, 0};
    int err = -1;
    socklen_t len = sizeof err;
    EXPECT_TRUE(::poll(&p, 1, 5000) == 1 && ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
        << "connect from port " << own << ": the server's SYN-ACK was dropped";
  }
  ASSERT_TRUE((*fw)->Uninstall().ok());
  a->Destroy();
}

// The table of a coved that was killed stays: its port numbers must not stop
// a program that listens on a specific address at one of them (only sockets
// bound to the wildcard address, as coved's are, are guarded).
TEST_F(NetworkTest, AStaleTableDropsNothingBoundToASpecificAddress) {
  uint16_t transparent = 0, explicit_port = 0, dns = 0;
  { UniqueFd probe = Listen(SOCK_STREAM, &transparent); }
  { UniqueFd probe = Listen(SOCK_STREAM, &explicit_port); }
  { UniqueFd probe = Listen(SOCK_DGRAM, &dns); }
  FirewallConfig config{transparent, explicit_port, dns, 0xc0fe, "10.200.0.0/16"};
  auto fw = Firewall::Install("cove_nettest_stale", config, {});
  ASSERT_TRUE(fw.ok()) << fw.error().ToString();
  auto connect_within = [](uint16_t port, int ms) {
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in sa = Addr(Ip("127.0.0.1"), port);
    ::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    pollfd p{s.get(), POLLOUT, 0};
    int err = -1;
    socklen_t len = sizeof err;
    return ::poll(&p, 1, ms) == 1 && ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
  };
  {
    UniqueFd local(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in at = Addr(Ip("127.0.0.1"), explicit_port);
    ASSERT_EQ(::bind(local.get(), reinterpret_cast<sockaddr*>(&at), sizeof at), 0);
    ASSERT_EQ(::listen(local.get(), 4), 0);
    EXPECT_TRUE(connect_within(explicit_port, 5000)) << "a SYN to 127.0.0.1:" << explicit_port << " was dropped";
  }
  {
    // A wildcard listener on the same port (what coved's would be) stays guarded.
    UniqueFd wild(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int one = 1;
    ::setsockopt(wild.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in at = Addr(in_addr{INADDR_ANY}, explicit_port);
    ASSERT_EQ(::bind(wild.get(), reinterpret_cast<sockaddr*>(&at), sizeof at), 0);
    ASSERT_EQ(::listen(wild.get(), 4), 0);
    EXPECT_FALSE(connect_within(explicit_port, 300));
  }
  ASSERT_TRUE((*fw)->Uninstall().ok());
}

// A process that owns firewall table `table` (its lock in `lock_dir`) until
// it is killed, as a coved does; returns its pid once the table is installed.
pid_t TableOwner(const std::string& table, const std::string& lock_dir) {
  int ready[2];
  EXPECT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ready[0]);
    FirewallConfig config{1, 2, 3, 0xc0fe, "10.200.0.0/16"};
    auto fw = Firewall::Install(table, config, {}, lock_dir);
    char ok = fw.ok() ? 1 : 0;
    if (::write(ready[1], &ok, 1) != 1 || !ok) ::_exit(1);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char ok = 0;
  EXPECT_EQ(::read(ready[0], &ok, 1), 1);
  EXPECT_EQ(ok, 1) << "the owner of " << table << " could not install it";
  ::close(ready[0]);
  return pid;
}

bool Has(const std::vector<std::string>& v, const std::string& name) {
  return std::find(v.begin(), v.end(), name) != v.end();
}

// A coved killed with SIGKILL leaves its table; the next one to start removes
// it, and never the table of an owner that is still running, nor one whose
// owner is unknown (no lock file: an older coved).
TEST(FirewallOwners, TablesOfKilledOwnersAreRemovedAndLiveOnesKept) {
  char dir_template[] = "/tmp/cove-fwlocks-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  std::string lock_dir = dir_template;
  std::string unknown_lock_dir = lock_dir + "/elsewhere";
  pid_t killed = TableOwner("cove_nettest_killed", lock_dir);
  pid_t live = TableOwner("cove_nettest_live", lock_dir);
  ASSERT_EQ(::kill(killed, SIGKILL), 0);
  ASSERT_EQ(::waitpid(killed, nullptr, 0), killed);
  FirewallConfig config{4, 5, 6, 0xc0fe, "10.200.0.0/16"};
  auto unknown = Firewall::Install("cove_nettest_unknown", config, {}, unknown_lock_dir);
  ASSERT_TRUE(unknown.ok()) << unknown.error().ToString();
  auto starting = Firewall::Install("cove_nettest_starting", config, {}, lock_dir);
  ASSERT_TRUE(starting.ok()) << starting.error().ToString();
  auto before = (*starting)->InetTables();
  ASSERT_TRUE(before.ok()) << before.error().ToString();
  EXPECT_TRUE(Has(*before, "cove_nettest_killed"));

  auto removed = (*starting)->RemoveTablesOfDeadOwners("cove_nettest_");
  ASSERT_TRUE(removed.ok()) << removed.error().ToString();
  EXPECT_EQ(*removed, std::vector<std::string>{"cove_nettest_killed"});
  auto after = (*starting)->InetTables();
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(Has(*after, "cove_nettest_killed"));
  EXPECT_TRUE(Has(*after, "cove_nettest_live"));
  EXPECT_TRUE(Has(*after, "cove_nettest_unknown"));
  EXPECT_TRUE(Has(*after, "cove_nettest_starting"));

  // A live owner's table cannot be taken over either.
  auto takeover = Firewall::Install("cove_nettest_live", config, {}, lock_dir);
  EXPECT_FALSE(takeover.ok());
  if (!takeover.ok()) {
    EXPECT_EQ(takeover.error().code, ErrorCode::kAlreadyExists) << takeover.error().ToString();
  }

  // Once that owner is killed too, its table goes the same way.
  ASSERT_EQ(::kill(live, SIGKILL), 0);
  ASSERT_EQ(::waitpid(live, nullptr, 0), live);
  removed = (*starting)->RemoveTablesOfDeadOwners("cove_nettest_");
  ASSERT_TRUE(removed.ok()) << removed.error().ToString();
  EXPECT_EQ(*removed, std::vector<std::string>{"cove_nettest_live"});

  EXPECT_TRUE((*unknown)->Uninstall().ok());
  EXPECT_TRUE(std::filesystem::exists(lock_dir + "/cove_nettest_starting.lock"));
  EXPECT_TRUE((*starting)->Uninstall().ok());
  EXPECT_FALSE(std::filesystem::exists(lock_dir + "/cove_nettest_starting.lock")) << "a clean stop leaves no lock file";
  std::filesystem::remove_all(lock_dir);
}

}  // namespace
}  // namespace cove::net
