// PreviewServer over three io threads, as coved runs it: connections are
// accepted at home and relayed on every shard in turn into a "sandbox" (this
// test's own process and network namespace, reached the real way: the
// dialer's setns on the relay's thread), and removing the port's exposure
// from home closes the relays of every shard.
#include "preview/preview_server.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "io/shards.h"
#include "sys/proc_stat.h"

namespace cove::preview {
namespace {

// A kept-alive HTTP/1.1 server on 127.0.0.1 answering every request "ok".
class OkServer {
 public:
  OkServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, 64), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accepter_ = std::thread([this] {
      for (;;) {
        int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        std::lock_guard lock(mu_);
        conns_.push_back(c);
        workers_.emplace_back([c] {
          std::string in;
          char buf[4096];
          for (;;) {
            ssize_t n = ::read(c, buf, sizeof buf);
            if (n <= 0) return;
            in.append(buf, static_cast<size_t>(n));
            size_t end;
            while ((end = in.find("\r\n\r\n")) != std::string::npos) {
              in.erase(0, end + 4);
              static constexpr char kOk[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
              if (::write(c, kOk, sizeof kOk - 1) < 0) return;
            }
          }
        });
      }
    });
  }
  ~OkServer() {
    ::shutdown(fd_, SHUT_RDWR);
    accepter_.join();
    std::lock_guard lock(mu_);
    for (int c : conns_) ::shutdown(c, SHUT_RDWR);
    for (auto& w : workers_) w.join();
    for (int c : conns_) ::close(c);
    ::close(fd_);
  }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread accepter_;
  std::mutex mu_;
  std::vector<int> conns_;
  std::vector<std::thread> workers_;
};

int Connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  timeval tv{10, 0};  // a bound on a failure, not a timing assertion
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends one request and reads its answer (up to the "ok" body); empty on failure.
std::string Ask(int fd, const std::string& host) {
  std::string req = "GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n";
  if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) return "";
  std::string in;
  char buf[4096];
  while (in.find("\r\n\r\nok") == std::string::npos) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return "";
    in.append(buf, static_cast<size_t>(n));
  }
  return in;
}

TEST(PreviewServerTest, RelaysOnEveryShardAndUnexposingClosesThemAll) {
  OkServer up;
  auto stat = sys::ReadProcStat(::getpid());
  ASSERT_TRUE(stat.ok());
  auto record = std::make_shared<SandboxRecord>();
  record->id = "sb";
  record->state = SandboxState::kRunning;
  record->pid = ::getpid();
  record->start_ticks = stat->start_time_ticks;
  record->ports.push_back(PortExposure{up.port(), "web", "tok123", 0});
  std::shared_ptr<const SandboxRecord> published = record;

  constexpr size_t kShards = 3;
  asio::io_context home;
  auto guard = asio::make_work_guard(home);
  io::Shards shards(home, kShards);
  std::mutex mu;
  std::set<std::thread::id> lookup_threads;
  PreviewOptions options;
  options.listen_host = "127.0.0.1";
  options.listen_port = 0;
  options.connection_executor = [&shards, next = size_t{0}]() mutable { return shards.at(next++ % shards.size()); };
  auto server = PreviewServer::Listen(home.get_executor(), options, [&](const std::string& id) {
    std::lock_guard lock(mu);
    lookup_threads.insert(std::this_thread::get_id());
    return id == "sb" ? published : nullptr;
  });
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  (*server)->Start();
  std::thread home_thread([&] { home.run(); });
  shards.Start();
  std::vector<std::thread::id> shard_threads;
  for (size_t i = 0; i < kShards; ++i) {
    std::promise<std::thread::id> id;
    asio::post(shards.at(i), [&id] { id.set_value(std::this_thread::get_id()); });
    shard_threads.push_back(id.get_future().get());
  }

  std::string host = std::to_string(up.port()) + "-sb-tok123.localhost";
  std::vector<int> clients;
  for (size_t i = 0; i < 2 * kShards; ++i) {
    int fd = Connect((*server)->port());
    ASSERT_GE(fd, 0);
    clients.push_back(fd);
    EXPECT_NE(Ask(fd, host).find("200 OK"), std::string::npos) << "client " << i;
  }
  {
    std::lock_guard lock(mu);
    for (size_t i = 0; i < kShards; ++i)
      EXPECT_TRUE(lookup_threads.count(shard_threads[i])) << "no request routed on shard " << i;
  }
  // A wrong token is the same 404 on any shard.
  int stranger = Connect((*server)->port());
  ASSERT_GE(stranger, 0);
  std::string wrong = "GET / HTTP/1.1\r\nHost: " + std::to_string(up.port()) + "-sb-nottok.localhost\r\n\r\n";
  ASSERT_EQ(::write(stranger, wrong.data(), wrong.size()), static_cast<ssize_t>(wrong.size()));
  char buf[512];
  ssize_t n = ::read(stranger, buf, sizeof buf);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)).rfind("HTTP/1.1 404", 0), 0u);
  ::close(stranger);

  // The port is unexposed (at home, as the API does): every relay closes, on its own shard.
  asio::post(home, [&] { (*server)->Unexposed("sb", up.port()); });
  for (int fd : clients) EXPECT_EQ(::read(fd, buf, sizeof buf), 0) << "the relay was not closed";

  std::promise<void> gone;
  asio::post(home, [&] {
    server->reset();
    gone.set_value();
  });
  gone.get_future().wait();
  guard.reset();
  home.stop();
  home_thread.join();
  shards.Stop();
  for (int fd : clients) ::close(fd);
}

}  // namespace
}  // namespace cove::preview
