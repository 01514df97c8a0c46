// AsyncSignal: a coroutine-friendly "something changed" notification on one
// executor thread. Waiters re-check their condition after each wake-up:
//   while (!ready()) if (!co_await signal.Wait(deadline)) break;  // timed out
// Not thread-safe: use from the executor's thread only. The signal must
// outlive its waiters.
#pragma once

#include <algorithm>
#include <vector>

#include "io/asio.h"

namespace cove {

class AsyncSignal {
 public:
  using Clock = asio::steady_timer::clock_type;
  explicit AsyncSignal(asio::any_io_executor ex) : ex_(std::move(ex)) {}

  // Wakes every current waiter.
  void Notify() {
    for (auto* t : waiters_) t->cancel();
  }
  // Waits for Notify() or the deadline; false when the deadline passed first.
  Task<bool> Wait(Clock::time_point deadline = Clock::time_point::max()) {
    asio::steady_timer t(ex_, deadline);
    waiters_.push_back(&t);
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    waiters_.erase(std::find(waiters_.begin(), waiters_.end(), &t));
    co_return ec == asio::error::operation_aborted;
  }

 private:
  asio::any_io_executor ex_;
  std::vector<asio::steady_timer*> waiters_;
};

}  // namespace cove
