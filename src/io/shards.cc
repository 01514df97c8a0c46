#include "io/shards.h"

#include <sched.h>

#include <functional>

namespace cove::io {

Shards::Shards(asio::io_context& home, size_t n) : home_(home) {
  for (size_t i = 1; i < n; ++i) contexts_.push_back(std::make_unique<asio::io_context>(1));
}

Shards::~Shards() { Stop(); }

void Shards::Start() {
  for (auto& c : contexts_) {
    guards_.push_back(asio::make_work_guard(*c));
    threads_.emplace_back([ctx = c.get()] { ctx->run(); });
  }
}

void Shards::Stop() {
  guards_.clear();
  for (auto& c : contexts_) c->stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

asio::any_io_executor Shards::at(size_t i) const {
  return i == 0 ? home_.get_executor() : asio::any_io_executor(contexts_.at(i - 1)->get_executor());
}

size_t Shards::IndexOf(std::string_view key) const { return std::hash<std::string_view>{}(key) % size(); }

size_t Shards::DefaultCount() {
  cpu_set_t set;
  size_t cpus = ::sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : std::thread::hardware_concurrency();
  return std::max<size_t>(1, cpus / 2);
}

}  // namespace cove::io
