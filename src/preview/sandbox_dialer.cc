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
  for (auto& [_, e] : entries_) e->pidfd->close();
}

Result<int> SandboxDialer::NetnsOf(const SandboxRecord& record) {
  if (auto it = entries_.find(record.id); it != entries_.end()) {
    if (it->second->pid == record.pid && it->second->start_ticks == record.start_ticks) return it->second->netns.get();
    it->second->pidfd->close();
    entries_.erase(it);
  }
  if (record.pid <= 0) return MakeError(ErrorCode::kUnavailable, "sandbox has no process");
  COVE_ASSIGN_OR_RETURN(UniqueFd pidfd, sys::PidfdOpen(record.pid));
  COVE_ASSIGN_OR_RETURN(sys::ProcStat stat, sys::ReadProcStat(record.pid));
  if (stat.start_time_ticks != record.start_ticks) return MakeError(ErrorCode::kUnavailable, "sandbox process was replaced");
  UniqueFd netns(::open(fmt::format("/proc/{}/ns/net", record.pid).c_str(), O_RDONLY | O_CLOEXEC));
  if (!netns) return SysError("open the network namespace of sandbox " + record.id);
  // Still alive after the namespace was opened: it is the recorded process's.
  if (Exited(pidfd.get())) return MakeError(ErrorCode::kUnavailable, "sandbox process exited");
  auto e = std::make_unique<Entry>();
  e->pid = record.pid;
  e->start_ticks = record.start_ticks;
  e->netns = std::move(netns);
  e->pidfd = std::make_unique<asio::posix::stream_descriptor>(ex_, pidfd.Release());
  Entry* raw = e.get();
  std::string id = record.id;
  raw->pidfd->async_wait(asio::posix::stream_descriptor::wait_read,
                         [this, id, raw, alive = alive_](const boost::system::error_code& ec) {
                           if (ec || !*alive) return;
                           auto it = entries_.find(id);
                           if (it == entries_.end() || it->second.get() != raw) return;
                           it->second->pidfd->close();
                           entries_.erase(it);
                           log::Debug("preview: sandbox {} is gone; closing its connections", id);
                           on_gone_(id);
                         });
  int fd = raw->netns.get();
  entries_[record.id] = std::move(e);
  return fd;
}

Result<tcp::socket> SandboxDialer::SocketIn(int netns_fd) {
  int fd = -1;
  COVE_TRY(net::RunInNetns(netns_fd, [&fd]() -> Status {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return SysError("socket in a sandbox network namespace");
    return OkStatus();
  }));
  tcp::socket sock(ex_);
  boost::system::error_code ec;
  sock.assign(tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    return MakeError(ErrorCode::kInternal, "assign socket: " + ec.message());
  }
  return sock;
}

Task<Result<std::unique_ptr<io::ByteStream>>> SandboxDialer::Connect(const SandboxRecord& record, uint16_t port) {
  auto netns = NetnsOf(record);
  if (!netns.ok()) co_return std::move(netns).error();
  std::vector<asio::ip::address_v4> targets{asio::ip::address_v4::loopback()};
  if (plan_) {
    if (auto addrs = plan_->ForSlot(record.slot); addrs.ok())
      targets.push_back(asio::ip::address_v4(ntohl(addrs->sandbox.s_addr)));
  }
  std::string last_error = "no address";
  for (const auto& addr : targets) {
    auto sock = SocketIn(*netns);
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
