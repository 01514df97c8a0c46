#include "cli/stdin_pump.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>

namespace cove::cli {

StdinPump::StdinPump(int fd, Sink sink, size_t max_in_flight)
    : fd_(fd), sink_(std::move(sink)), max_in_flight_(max_in_flight) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) == 0) {
    stop_read_.Reset(p[0]);
    stop_write_.Reset(p[1]);
  }
  thread_ = std::thread([this] { Run(); });
}

StdinPump::~StdinPump() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (stop_write_) {
    char byte = 0;
    while (::write(stop_write_.get(), &byte, 1) < 0 && errno == EINTR) {
    }
  }
  thread_.join();
}

void StdinPump::Consumed(size_t n) {
  {
    std::lock_guard lock(mu_);
    in_flight_ -= std::min(n, in_flight_);
  }
  cv_.notify_all();
}

void StdinPump::Run() {
  std::string buf(1 << 16, '\0');
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || in_flight_ < max_in_flight_; });
      if (stopping_) return;
    }
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_read_.get(), POLLIN, 0}};
    int r = ::poll(fds, stop_read_ ? 2 : 1, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (fds[1].revents & POLLIN)) return;
    ssize_t n = ::read(fd_, buf.data(), buf.size());
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      sink_("");
      return;
    }
    {
      std::lock_guard lock(mu_);
      in_flight_ += static_cast<size_t>(n);
    }
    sink_(buf.substr(0, static_cast<size_t>(n)));
  }
}

}  // namespace cove::cli
