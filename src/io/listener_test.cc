// Listener against real sockets on loopback, with the process's descriptor
// limit lowered so that accept(2) really fails with EMFILE.
#include "io/listener.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <map>

namespace cove::io {
namespace {

using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// A connected client socket (blocking), or -1.
int Connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The peer closed the connection (a read returns EOF or a reset, not "would block").
bool ClosedByPeer(int fd) {
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char c;
  ssize_t n = ::recv(fd, &c, 1, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

// Makes the next descriptor the process opens fail with EMFILE (the soft
// limit becomes the lowest free descriptor number); restores it when destroyed.
class NoMoreDescriptors {
 public:
  NoMoreDescriptors() {
    getrlimit(RLIMIT_NOFILE, &saved_);
    int lowest_free = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ::close(lowest_free);
    rlimit lowered = saved_;
    lowered.rlim_cur = static_cast<rlim_t>(lowest_free);
    ok_ = setrlimit(RLIMIT_NOFILE, &lowered) == 0;
  }
  ~NoMoreDescriptors() { Restore(); }
  void Restore() { setrlimit(RLIMIT_NOFILE, &saved_); }
  bool ok() const { return ok_; }

 private:
  rlimit saved_{};
  bool ok_ = false;
};

class ListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = std::make_shared<ConnectionRegistry>(ConnectionLimits{100, 100});
    boost::system::error_code ec;
    listener_ = Listener::Open(io_.get_executor(), tcp::endpoint(asio::ip::address_v4::loopback(), 0), "test",
                               registry_, ec);
    ASSERT_TRUE(listener_) << ec.message();
    // Each accepted socket is admitted and kept, idle, until the registry sheds it.
    listener_->Start([this](tcp::socket socket) {
      int n = ++accepted_;
      auto& c = connections_[n];
      c.socket = std::make_unique<tcp::socket>(std::move(socket));
      auto* raw = c.socket.get();
      c.slot = registry_->Admit("127.0.0.1", [raw] {
        boost::system::error_code ignored;
        raw->close(ignored);
      });
    });
  }

  void TearDown() override {
    listener_->Close();
    connections_.clear();
    io_.run_for(10ms);
    for (int fd : clients_) ::close(fd);
  }

  // Runs the io_context until `done` (or a generous deadline, for a failing
  // test to end: whether it was met is what the caller asserts).
  bool RunUntil(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!done() && std::chrono::steady_clock::now() < deadline) io_.run_for(5ms);
    return done();
  }

  int Client() {
    int fd = Connect(listener_->local_endpoint().port());
    EXPECT_GE(fd, 0);
    clients_.push_back(fd);
    return fd;
  }

  struct Connection {
    std::unique_ptr<tcp::socket> socket;
    std::optional<ConnectionRegistry::Slot> slot;
  };

  asio::io_context io_;
  std::shared_ptr<ConnectionRegistry> registry_;
  std::shared_ptr<Listener> listener_;
  int accepted_ = 0;
  std::map<int, Connection> connections_;  // by order of acceptance, from 1
  std::vector<int> clients_;
};

TEST_F(ListenerTest, OutOfDescriptorsTheLongestIdleConnectionMakesRoom) {
  int first = Client();
  int second = Client();
  ASSERT_TRUE(RunUntil([&] { return accepted_ == 2; }));
  int third = Client();  // waits in the backlog: the process has no descriptor left for it
  NoMoreDescriptors limit;
  ASSERT_TRUE(limit.ok());
  ASSERT_TRUE(RunUntil([&] { return accepted_ == 3; }));
  // The loop's next accept fails too, with no connection waiting: that
  // closes nothing (the second is idle as well).
  ASSERT_TRUE(RunUntil([&] { return listener_->stats().failures >= 2; }));
  limit.Restore();
  EXPECT_EQ(listener_->stats().sheds, 1u);
  EXPECT_TRUE(connections_[1].slot->shed());
  EXPECT_TRUE(ClosedByPeer(first));
  EXPECT_FALSE(connections_[2].slot->shed());
  EXPECT_FALSE(connections_[3].slot->shed());
  EXPECT_TRUE(connections_[3].socket->is_open());
  for (int fd : {second, third}) EXPECT_EQ(::send(fd, "x", 1, MSG_NOSIGNAL), 1);
}

TEST_F(ListenerTest, OutOfDescriptorsWithNothingIdleTheLoopWaitsInsteadOfSpinning) {
  Client();
  ASSERT_TRUE(RunUntil([&] { return accepted_ == 1; }));
  connections_[1].slot->Busy();
  Client();
  NoMoreDescriptors limit;
  ASSERT_TRUE(limit.ok());
  ASSERT_TRUE(RunUntil([&] { return listener_->stats().failures >= 4; }));
  // Every failure was followed by a wait: no accept was retried at once.
  EXPECT_EQ(listener_->stats().waits, listener_->stats().failures);
  EXPECT_EQ(listener_->stats().sheds, 0u);
  EXPECT_EQ(accepted_, 1);
  // Descriptors come back: the waiting connection is accepted.
  limit.Restore();
  EXPECT_TRUE(RunUntil([&] { return accepted_ == 2; }));
}

TEST_F(ListenerTest, CloseStopsAcceptingAndKeepsConnections) {
  Client();
  ASSERT_TRUE(RunUntil([&] { return accepted_ == 1; }));
  uint16_t port = listener_->local_endpoint().port();
  listener_->Close();
  io_.run_for(10ms);
  EXPECT_LT(Connect(port), 0);
  EXPECT_TRUE(connections_[1].socket->is_open());
  EXPECT_FALSE(connections_[1].slot->shed());
}

}  // namespace
}  // namespace cove::io
