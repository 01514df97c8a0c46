// OffThread: runs blocking work on a thread pool and resumes the awaiting
// coroutine on `home` (the io executor) with its result:
//   auto work = [..] { return Blocking(); };   // a named lambda: GCC 12 mishandles
//   R r = co_await OffThread<R>(pool, ex, work);  // temporaries in co_await expressions
#pragma once

#include <optional>

#include "io/asio.h"

namespace cove {

template <typename R, typename F>
Task<R> OffThread(asio::thread_pool& pool, asio::any_io_executor home, const F& fn) {
  std::optional<R> result = co_await asio::async_initiate<decltype(asio::use_awaitable), void(std::optional<R>)>(
      [&pool, home, &fn](auto handler) {
        asio::post(pool, [home, fn, handler = std::move(handler)]() mutable {
          std::optional<R> r(fn());
          asio::post(home, [handler = std::move(handler), r = std::move(r)]() mutable { handler(std::move(r)); });
        });
      },
      asio::use_awaitable);
  co_return std::move(*result);
}

}  // namespace cove
