#include "io/shards.h"

#include <gtest/gtest.h>

#include <set>
#include <stdexcept>

namespace cove::io {
namespace {

Task<std::thread::id> ThreadOf() { co_return std::this_thread::get_id(); }

Task<int> Throws() {
  throw std::runtime_error("boom");
  co_return 0;
}

TEST(ShardsTest, AKeyAlwaysMapsToTheSameShardAndKeysSpreadOverAll) {
  asio::io_context home;
  Shards shards(home, 4);
  EXPECT_EQ(shards.size(), 4u);
  std::set<size_t> seen;
  for (int i = 0; i < 200; ++i) {
    std::string key = "sandbox-" + std::to_string(i);
    EXPECT_EQ(shards.IndexOf(key), shards.IndexOf(key));
    seen.insert(shards.IndexOf(key));
  }
  EXPECT_EQ(seen.size(), 4u);
  EXPECT_TRUE(shards.at(0) == asio::any_io_executor(home.get_executor()));
}

TEST(ShardsTest, RunOnRunsThereAndResumesTheCallerAtHome) {
  asio::io_context home(1);
  Shards shards(home, 3);
  shards.Start();
  const std::thread::id home_thread = std::this_thread::get_id();
  std::set<std::thread::id> ran;
  bool resumed_at_home = true;
  asio::co_spawn(home, [&]() -> Task<void> {
    for (size_t i = 1; i < shards.size(); ++i) {
      ran.insert(co_await RunOn(shards.at(i), ThreadOf()));
      resumed_at_home = resumed_at_home && std::this_thread::get_id() == home_thread;
    }
    // On its own executor too (a post, then back).
    ran.insert(co_await RunOn(shards.at(0), ThreadOf()));
  }, asio::detached);
  home.run();
  shards.Stop();
  EXPECT_TRUE(resumed_at_home);
  EXPECT_EQ(ran.size(), 3u);  // two shard threads and home
  EXPECT_TRUE(ran.count(home_thread));
}

TEST(ShardsTest, AnExceptionThereReachesTheCaller) {
  asio::io_context home(1);
  Shards shards(home, 2);
  shards.Start();
  std::string caught;
  asio::co_spawn(home, [&]() -> Task<void> {
    try {
      co_await RunOn(shards.at(1), Throws());
    } catch (const std::runtime_error& e) {
      caught = e.what();
    }
  }, asio::detached);
  home.run();
  shards.Stop();
  EXPECT_EQ(caught, "boom");
}

TEST(ShardsTest, StopEndsTheThreadsWithWorkStillQueued) {
  asio::io_context home(1);
  Shards shards(home, 2);
  shards.Start();
  asio::steady_timer forever(shards.at(1), std::chrono::hours(1));
  forever.async_wait([](const boost::system::error_code&) {});
  shards.Stop();  // returns: the pending wait does not hold the thread
  SUCCEED();
}

}  // namespace
}  // namespace cove::io
