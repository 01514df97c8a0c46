#include "manager/reaper.h"

#include <gtest/gtest.h>

#include <atomic>

namespace cove {
namespace {

using namespace std::chrono_literals;

// A sandbox host whose Destroy fails until `fail_first` attempts have been made, as
// the kernel sandbox host's does while a sandbox's processes are still dying
// (which a test cannot make happen on cue).
class SlowToDieHost : public SandboxHost {
 public:
  explicit SlowToDieHost(int fail_first) : fail_first_(fail_first) {}
  Result<Started> Start(const SandboxRecord&) override { return MakeError(ErrorCode::kInternal, "unused"); }
  bool IsAlive(const SandboxRecord&) override { return false; }
  Status Kill(const SandboxRecord&) override { return OkStatus(); }
  Status Destroy(const SandboxRecord&) override {
    if (++attempts_ <= fail_first_) return MakeError(ErrorCode::kTimeout, "sandbox pid 1 still running");
    return OkStatus();
  }
  std::string AgentSocketPath(const SandboxRecord&) override { return ""; }
  Result<uint32_t> ReserveSlot(uint32_t hint) override { return hint; }
  Status ClaimSlot(uint32_t) override { return OkStatus(); }
  void ReleaseSlot(uint32_t) override {}
  void CleanLeftovers(const std::vector<std::string>&) override {}
  int attempts() const { return attempts_; }

 private:
  int fail_first_;
  std::atomic<int> attempts_{0};
};

// Runs io until done() (or a generous limit: a failure, not a timing assertion).
template <typename F>
void RunUntil(asio::io_context& io, F done) {
  auto guard = asio::make_work_guard(io);  // work on the pool is not io's
  auto limit = std::chrono::steady_clock::now() + 60s;
  while (!done() && std::chrono::steady_clock::now() < limit) io.run_one_for(100ms);
}

SandboxRecord Record(const std::string& id) {
  SandboxRecord r;
  r.id = id;
  return r;
}

TEST(ReaperTest, BackoffDoublesUpToHalfAMinute) {
  EXPECT_EQ(Reaper::Backoff(1), 0ms);
  EXPECT_EQ(Reaper::Backoff(2), 250ms);
  EXPECT_EQ(Reaper::Backoff(3), 500ms);
  EXPECT_EQ(Reaper::Backoff(4), 1000ms);
  EXPECT_EQ(Reaper::Backoff(9), 30s);
  EXPECT_EQ(Reaper::Backoff(1000), 30s);
}

TEST(ReaperTest, RetriesUntilNothingIsLeftThenRunsEveryDone) {
  asio::io_context io;
  asio::thread_pool pool(1);
  SlowToDieHost host(2);
  Reaper reaper(io.get_executor(), pool, &host);
  int done = 0;
  reaper.Reap(Record("a"), [&] { ++done; });
  reaper.Reap(Record("a"), [&] { ++done; });  // joins the first
  EXPECT_TRUE(reaper.Busy("a"));
  EXPECT_FALSE(reaper.Busy("b"));
  RunUntil(io, [&] { return reaper.empty(); });
  EXPECT_EQ(host.attempts(), 3);
  EXPECT_EQ(done, 2);
  EXPECT_FALSE(reaper.Busy("a"));
  EXPECT_TRUE(reaper.empty());
  pool.join();
}

TEST(ReaperTest, WaitersAreWokenWhenDoneOrAtTheirDeadline) {
  asio::io_context io;
  asio::thread_pool pool(1);
  SlowToDieHost host(4);  // with the backoff alone: 0.25 + 0.5 + 1 + 2 s
  Reaper reaper(io.get_executor(), pool, &host);
  bool released = false;
  reaper.Reap(Record("a"), [&] { released = true; });
  std::optional<bool> short_wait, long_wait;
  asio::co_spawn(io, [&]() -> Task<void> {
    short_wait = co_await reaper.Wait("a", Reaper::Clock::now() + 1ms);
    // A waiter makes the reaper retry every 0.2 s: done well before 3.75 s.
    long_wait = co_await reaper.Wait("a", Reaper::Clock::now() + 60s);
    EXPECT_TRUE(released);  // done callbacks run before waiters resume
  }, asio::detached);
  RunUntil(io, [&] { return long_wait.has_value(); });
  ASSERT_TRUE(short_wait && long_wait);
  EXPECT_FALSE(*short_wait);
  EXPECT_TRUE(*long_wait);
  EXPECT_EQ(host.attempts(), 5);
  pool.join();
}

}  // namespace
}  // namespace cove
