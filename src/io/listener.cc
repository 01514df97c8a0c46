#include "io/listener.h"

#include <cerrno>

#include "base/log.h"

namespace cove::io {
namespace {

using tcp = asio::ip::tcp;

constexpr auto kFirstBackoff = std::chrono::milliseconds(10);
constexpr auto kLastBackoff = std::chrono::seconds(1);
constexpr auto kLogInterval = std::chrono::seconds(10);

// The process or the system is short of descriptors or memory: a closed
// connection, or time, makes room.
bool OutOfResources(const boost::system::error_code& ec) {
  if (ec.category() != boost::system::system_category()) return false;
  int e = ec.value();
  return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

// accept(2) reports these for the pending connection it took off the queue
// (Linux passes network errors on): the next one may do fine.
bool ConnectionError(const boost::system::error_code& ec) {
  if (ec.category() != boost::system::system_category()) return false;
  switch (ec.value()) {
    case ECONNABORTED: case EPROTO: case EPERM: case ENETDOWN: case ENOPROTOOPT: case EHOSTDOWN:
    case ENONET: case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH: case ETIMEDOUT: case EINTR:
    case EAGAIN:
      return true;
    default:
      return false;
  }
}

}  // namespace

Listener::Listener(asio::any_io_executor ex, std::string name, std::shared_ptr<ConnectionRegistry> shed_from)
    : acceptor_(ex), backoff_timer_(ex), name_(std::move(name)), shed_from_(std::move(shed_from)),
      failures_log_(kLogInterval) {}

Listener::~Listener() { Close(); }

std::shared_ptr<Listener> Listener::Open(asio::any_io_executor ex, const tcp::endpoint& at, std::string name,
                                         std::shared_ptr<ConnectionRegistry> shed_from,
                                         boost::system::error_code& ec) {
  std::shared_ptr<Listener> l(new Listener(std::move(ex), std::move(name), std::move(shed_from)));
  ec.clear();
  l->acceptor_.open(at.protocol(), ec);
  if (!ec) l->acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) l->acceptor_.bind(at, ec);
  if (!ec) l->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return nullptr;
  return l;
}

void Listener::Start(OnAccept on_accept) {
  if (started_ || closed_) return;
  started_ = true;
  on_accept_ = std::move(on_accept);
  asio::co_spawn(acceptor_.get_executor(), Loop(shared_from_this()), asio::detached);
}

void Listener::Close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  backoff_timer_.cancel();
}

tcp::endpoint Listener::local_endpoint() const {
  boost::system::error_code ec;
  return acceptor_.local_endpoint(ec);
}

void Listener::LogFailure(const boost::system::error_code& ec, std::string_view action) {
  if (auto held = failures_log_.Pass())
    log::Warn("{}: accept failed: {} ({}); {} more accept failures since the last such line", name_, ec.message(),
              action, *held);
}

Task<void> Listener::Loop(std::shared_ptr<Listener> self) {
  auto backoff = std::chrono::steady_clock::duration(kFirstBackoff);
  while (!self->closed_) {
    boost::system::error_code ec;
    tcp::socket socket = co_await self->acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (self->closed_) break;
    if (!ec) {
      ++self->stats_.accepted;
      backoff = kFirstBackoff;
      self->on_accept_(std::move(socket));
      continue;
    }
    if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) break;
    ++self->stats_.failures;
    if (ConnectionError(ec)) {
      self->LogFailure(ec, "skipped that connection");
      continue;
    }
    if (OutOfResources(ec)) {
      // accept(2) takes a descriptor before it looks at the queue, so it
      // fails so with no connection waiting too: make room only for one.
      boost::system::error_code wait_ec;
      co_await self->acceptor_.async_wait(tcp::acceptor::wait_read, asio::redirect_error(asio::use_awaitable, wait_ec));
      if (self->closed_) break;
      if (self->shed_from_ && self->shed_from_->idle() > 0) {
        // Logged first: nothing may take the descriptor freed for the accept.
        self->LogFailure(ec, "closing the longest-idle connection to make room");
        self->shed_from_->ShedOldestIdle();
        ++self->stats_.sheds;
        continue;
      }
    }
    self->LogFailure(ec, fmt::format("waiting {} ms",
                                     std::chrono::duration_cast<std::chrono::milliseconds>(backoff).count()));
    ++self->stats_.waits;
    self->backoff_timer_.expires_after(backoff);
    co_await self->backoff_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    backoff = std::min<std::chrono::steady_clock::duration>(backoff * 2, kLastBackoff);
  }
}

}  // namespace cove::io
