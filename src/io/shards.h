// Shards: coved's io threads, one io_context each. Shard 0 is the home
// io_context that the caller runs (the Manager, the listeners, the egress
// proxy, previews); every sandbox belongs to one shard, chosen from its id
// (For), and its agent connection and the API handlers that talk to it run
// there, so their state needs no lock (docs/architecture.md, "Threads").
//
// Thread-safe after construction. Start() runs shards 1..n-1 on threads of
// their own; Stop() ends and joins them (before the objects bound to their
// io_contexts are destroyed).
#pragma once

#include <memory>
#include <optional>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "io/asio.h"

namespace cove::io {

class Shards {
 public:
  // n >= 1 shards, shard 0 being `home` (run by the caller).
  Shards(asio::io_context& home, size_t n);
  ~Shards();
  Shards(const Shards&) = delete;
  Shards& operator=(const Shards&) = delete;

  void Start();
  void Stop();

  size_t size() const { return contexts_.size() + 1; }
  asio::any_io_executor home() const { return home_.get_executor(); }
  asio::any_io_executor at(size_t i) const;
  // The shard of a sandbox id (a stable hash, so every request for it lands there).
  asio::any_io_executor For(std::string_view key) const { return at(IndexOf(key)); }
  size_t IndexOf(std::string_view key) const;

  // The default number of shards: half the CPUs coved may run on (at least
  // one); the sandboxes' own processes need the other half (docs/benchmarks.md,
  // "Every core": on 2 CPUs, a second io thread cost more in wake-ups than it gave).
  static size_t DefaultCount();

 private:
  using Guard = asio::executor_work_guard<asio::io_context::executor_type>;
  asio::io_context& home_;
  std::vector<std::unique_ptr<asio::io_context>> contexts_;  // shards 1..n-1
  std::vector<Guard> guards_;
  std::vector<std::thread> threads_;
};

namespace detail {
template <typename T>
Task<std::optional<T>> Optional(Task<T> task) {
  co_return co_await std::move(task);
}
}  // namespace detail

// Runs `task` on `ex` and resumes the caller on its own executor with the
// result (or the exception). Pointers and references the task holds must stay
// valid until it returns, and what they point at must not be touched by the
// caller's side meanwhile.
template <typename T>
Task<T> RunOn(asio::any_io_executor ex, Task<T> task) {
  if constexpr (std::is_void_v<T>) {
    co_await asio::co_spawn(std::move(ex), std::move(task), asio::use_awaitable);
  } else {
    // Asio's result slot wants a default-constructible type.
    std::optional<T> result = co_await asio::co_spawn(std::move(ex), detail::Optional(std::move(task)),
                                                      asio::use_awaitable);
    co_return std::move(*result);
  }
}

}  // namespace cove::io
