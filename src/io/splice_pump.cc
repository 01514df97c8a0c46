#include "io/splice_pump.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace cove::io {
namespace {

using error_code = boost::system::error_code;

// Larger than the default 64 KiB: fewer wake-ups per megabyte on fast links.
// Pages are taken only while bytes sit in the pipe.
constexpr int kPipeBytes = 256 << 10;

error_code Errno() { return error_code(errno, boost::system::system_category()); }

}  // namespace

std::optional<SplicePump> SplicePump::Open() {
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return std::nullopt;
  int size = ::fcntl(fds[1], F_SETPIPE_SZ, kPipeBytes);
  if (size < 0) size = ::fcntl(fds[1], F_GETPIPE_SZ);
  if (size <= 0) size = 64 << 10;
  return SplicePump(fds[0], fds[1], static_cast<size_t>(size));
}

SplicePump::SplicePump(SplicePump&& other) noexcept
    : read_end_(std::exchange(other.read_end_, -1)),
      write_end_(std::exchange(other.write_end_, -1)),
      capacity_(other.capacity_) {}

SplicePump& SplicePump::operator=(SplicePump&& other) noexcept {
  std::swap(read_end_, other.read_end_);
  std::swap(write_end_, other.write_end_);
  std::swap(capacity_, other.capacity_);
  return *this;
}

SplicePump::~SplicePump() {
  if (read_end_ >= 0) ::close(read_end_);
  if (write_end_ >= 0) ::close(write_end_);
}

Task<error_code> SplicePump::Run(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to,
                                 std::function<void()> progress) {
  error_code ec;
  from.native_non_blocking(true, ec);
  if (!ec) to.native_non_blocking(true, ec);
  if (ec) co_return ec;
  size_t in_pipe = 0;  // bytes taken from `from` and not yet given to `to`
  bool eof = false;
  while (true) {
    if (!from.is_open() || !to.is_open()) co_return asio::error::operation_aborted;
    bool would_block_read = eof || in_pipe == capacity_;
    if (!would_block_read) {
      ssize_t n = ::splice(from.native_handle(), nullptr, write_end_, nullptr, capacity_ - in_pipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        in_pipe += static_cast<size_t>(n);
        if (progress) progress();
      } else if (n == 0) {
        eof = true;
      } else if (errno == EAGAIN) {
        would_block_read = true;
      } else if (errno != EINTR) {
        co_return Errno();
      }
    }
    if (in_pipe > 0) {
      ssize_t n = ::splice(read_end_, nullptr, to.native_handle(), nullptr, in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        in_pipe -= static_cast<size_t>(n);
        if (progress) progress();
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN) co_return Errno();
      // The destination is full: wait until it takes more (reading on would
      // only fill the pipe, which is full or will be).
      co_await to.async_wait(asio::ip::tcp::socket::wait_write, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return ec;
      continue;
    }
    if (eof) co_return error_code();
    if (would_block_read) {
      co_await from.async_wait(asio::ip::tcp::socket::wait_read, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return ec;
    }
  }
}

}  // namespace cove::io
