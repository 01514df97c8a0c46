#include "preview/sandbox_dialer.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include "base/log.h"
#include "net/netns.h"
#include "io/deadline.h"
#include "sys/proc_stat.h"
#include "sys/process.h"

namespace cove::preview {
namespace {

constexpr auto kConnectTimeout = std::chrono::seconds(10);

bool Exited(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return ::poll(&p, 1, 0) != 0;
}

}  // namespace

SandboxDialer::SandboxDialer(asio::any_io_executor ex, std::optional<net::AddressPlan> plan,
                             std::function<void(const std::string& id)> on_gone)
    : ex_(std::move(ex)), plan_(std::move(plan)), on_gone_(std::move(on_gone)) {}

SandboxDialer::~SandboxDialer() {
  *alive_ = false;
  std::lock_guard lock(mu_);
  for (auto& [_, e] : entries_)
    if (e->watch) e->watch->close();
}

size_t SandboxDialer::cached() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

Result<std::shared_ptr<const UniqueFd>> SandboxDialer::NetnsOf(const SandboxRecord& record) {
  {
    std::lock_guard lock(mu_);
    if (auto it = entries_.find(record.id); it != entries_.end()) {
      if (it->second->pid == record.pid && it->second->start_ticks == record.start_ticks) return it->second->netns;
      // Another process than the recorded one: its watch at home drops it when it exits.
    }
  }
  if (record.pid <= 0) return MakeError(ErrorCode::kUnavailable, "sandbox has no process");
  COVE_ASSIGN_OR_RETURN(UniqueFd pidfd, sys::PidfdOpen(record.pid));
  COVE_ASSIGN_OR_RETURN(sys::ProcStat stat, sys::ReadProcStat(record.pid));
  if (stat.start_time_ticks != record.start_ticks) return MakeError(ErrorCode::kUnavailable, "sandbox process was replaced");
  UniqueFd netns(::open(fmt::format("/proc/{}/ns/net", record.pid).c_str(), O_RDONLY | O_CLOEXEC));
  if (!netns) return SysError("open the network namespace of sandbox " + record.id);
  // Still alive after the namespace was opened: it is the recorded process's.
  if (Exited(pidfd.get())) return MakeError(ErrorCode::kUnavailable, "sandbox process exited");
  auto e = std::make_shared<Entry>();
  e->pid = record.pid;
  e->start_ticks = record.start_ticks;
  e->netns = std::make_shared<const UniqueFd>(std::move(netns));
  e->pidfd = std::move(pidfd);
  {
    std::lock_guard lock(mu_);
    auto& slot = entries_[record.id];
    // Another thread cached the same process meanwhile: use that one.
    if (slot && slot->pid == record.pid && slot->start_ticks == record.start_ticks) return slot->netns;
    slot = e;
  }
  asio::post(ex_, [this, alive = alive_, id = record.id, e] {
    if (*alive) Watch(id, e);
  });
  return e->netns;
}

void SandboxDialer::Watch(const std::string& id, const std::shared_ptr<Entry>& entry) {
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second != entry) return;  // replaced already: its pidfd closes with it
  }
  entry->watch = std::make_unique<asio::posix::stream_descriptor>(ex_, entry->pidfd.Release());
  entry->watch->async_wait(asio::posix::stream_descriptor::wait_read,
                           [this, id, entry, alive = alive_](const boost::system::error_code& ec) {
                             if (ec || !*alive) return;
                             entry->watch->close();
                             {
                               std::lock_guard lock(mu_);
                               auto it = entries_.find(id);
                               if (it == entries_.end() || it->second != entry) return;
                               entries_.erase(it);
                             }
                             log::Debug("preview: sandbox {} is gone; closing its connections", id);
                             on_gone_(id);
                           });
}

Result<tcp::socket> SandboxDialer::SocketIn(const asio::any_io_executor& ex, int netns_fd) {
  int fd = -1;
  COVE_TRY(net::RunInNetns(netns_fd, [&fd]() -> Status {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return SysError("socket in a sandbox network namespace");
    return OkStatus();
  }));
  tcp::socket sock(ex);
  boost::system::error_code ec;
  sock.assign(tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    return MakeError(ErrorCode::kInternal, "assign socket: " + ec.message());
  }
  return sock;
}

Task<Result<std::unique_ptr<io::ByteStream>>> SandboxDialer::Connect(const SandboxRecord& record, uint16_t port) {
  auto netns = NetnsOf(record);  // held until the sockets are made
  if (!netns.ok()) co_return std::move(netns).error();
  auto ex = co_await asio::this_coro::executor;
  std::vector<asio::ip::address_v4> targets{asio::ip::address_v4::loopback()};
  if (plan_) {
    if (auto addrs = plan_->ForSlot(record.slot); addrs.ok())
      targets.push_back(asio::ip::address_v4(ntohl(addrs->sandbox.s_addr)));
  }
  std::string last_error = "no address";
  for (const auto& addr : targets) {
    auto sock = SocketIn(ex, (*netns)->get());
    if (!sock.ok()) co_return std::move(sock).error();
    boost::system::error_code ec;
    {
      io::Deadline guard(*sock, std::chrono::steady_clock::now() + kConnectTimeout);
      co_await sock->async_connect(tcp::endpoint(addr, port), asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!ec) {
      sock->set_option(tcp::no_delay(true), ec);
      std::unique_ptr<io::ByteStream> stream = io::MakeTcpStream(std::move(*sock));
      co_return stream;
    }
    last_error = ec.message();
    if (ec != asio::error::connection_refused) break;
  }
  co_return MakeError(ErrorCode::kUnavailable, fmt::format("connect to port {} of sandbox {}: {}", port, record.id, last_error));
}

}  // namespace cove::preview
