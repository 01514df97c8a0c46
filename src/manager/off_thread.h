// OffThread: runs blocking work on a thread pool and resumes the awaiting
// coroutine on `home` (the io executor), with the work's result.
#pragma once

#include <functional>
#include <optional>

#include "manager/asio.h"

namespace cove {

template <typename R>
Task<R> OffThread(asio::thread_pool& pool, asio::any_io_executor home, std::function<R()> fn) {
  auto result = co_await asio::async_initiate<decltype(asio::use_awaitable), void(std::optional<R>)>(
      [&pool, home, fn = std::move(fn)](auto handler) mutable {
        asio::post(pool, [home, fn = std::move(fn), handler = std::move(handler)]() mutable {
          std::optional<R> r(fn());
          asio::post(home, [handler = std::move(handler), r = std::move(r)]() mutable { handler(std::move(r)); });
        });
      },
      asio::use_awaitable);
  co_return std::move(*result);
}

}  // namespace cove
