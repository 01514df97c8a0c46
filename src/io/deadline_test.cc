// Deadline on a real io_context and real sockets: it fires once its time has
// passed (never before), cancels a pending read, moves nearer or later, can
// be cleared, re-arms after firing, and never runs after its destruction.
#include "io/deadline.h"

#include <gtest/gtest.h>

#include <optional>

namespace cove::io {
namespace {

using Clock = Deadline::Clock;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// Runs `io` until it has no more work, bounded so a broken Deadline fails
// the test instead of hanging it.
void RunAll(asio::io_context& io) {
  io.run_for(30s);
  ASSERT_TRUE(io.stopped()) << "the io_context still had work after 30 s";
}

TEST(Deadline, CancelsAPendingReadOnceItPasses) {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  tcp::socket server = acceptor.accept();  // the client never sends anything
  std::optional<boost::system::error_code> read_ec;
  Clock::time_point at = Clock::now() + 20ms;
  Clock::time_point ended;
  Deadline guard(server, at);
  char byte;
  server.async_read_some(asio::buffer(&byte, 1), [&](boost::system::error_code ec, size_t) {
    read_ec = ec;
    ended = Clock::now();
  });
  RunAll(io);
  ASSERT_TRUE(read_ec.has_value());
  EXPECT_EQ(*read_ec, asio::error::operation_aborted);
  EXPECT_GE(ended, at);
  EXPECT_TRUE(guard.fired());
  EXPECT_TRUE(guard.passed());
}

TEST(Deadline, RunsOnceNotBeforeItsTime) {
  asio::io_context io;
  int runs = 0;
  Clock::time_point ran;
  Clock::time_point at = Clock::now() + 10ms;
  Deadline d(io.get_executor(), [&] {
    ++runs;
    ran = Clock::now();
  }, at);
  EXPECT_FALSE(d.fired());
  RunAll(io);
  EXPECT_EQ(runs, 1);
  EXPECT_GE(ran, at);
  EXPECT_EQ(d.at(), at);
}

TEST(Deadline, WithoutATimeNeverRuns) {
  asio::io_context io;
  int runs = 0;
  Deadline d(io.get_executor(), [&] { ++runs; });
  EXPECT_EQ(d.at(), Deadline::kNever);
  EXPECT_FALSE(d.passed());
  RunAll(io);  // nothing waits: returns at once
  EXPECT_EQ(runs, 0);
}

TEST(Deadline, MovedLaterRunsAtTheLaterTime) {
  asio::io_context io;
  int runs = 0;
  Clock::time_point ran;
  Deadline d(io.get_executor(), [&] {
    ++runs;
    ran = Clock::now();
  }, Clock::now() + 5ms);
  // Pushed on while its timer sleeps, as an idle timeout is on every read.
  Clock::time_point later = Clock::now() + 60ms;
  asio::steady_timer push(io, Clock::now() + 2ms);
  push.async_wait([&](boost::system::error_code) { d.Set(later); });
  RunAll(io);
  EXPECT_EQ(runs, 1);
  EXPECT_GE(ran, later);
}

TEST(Deadline, MovedNearerRunsAtTheNearerTime) {
  asio::io_context io;
  int runs = 0;
  Deadline d(io.get_executor(), [&] { ++runs; }, Clock::now() + 1h);
  d.Set(Clock::now() + 5ms);
  RunAll(io);  // would wait an hour (and fail the 30 s bound) if the hour still held
  EXPECT_EQ(runs, 1);
  EXPECT_TRUE(d.fired());
}

TEST(Deadline, ClearedNeverRuns) {
  asio::io_context io;
  int runs = 0;
  Deadline d(io.get_executor(), [&] { ++runs; }, Clock::now() + 5ms);
  d.Clear();
  RunAll(io);  // the timer still wakes at its old time, and finds nothing to do
  EXPECT_EQ(runs, 0);
  EXPECT_FALSE(d.fired());
  EXPECT_FALSE(d.passed());
}

TEST(Deadline, ArmsAgainAfterFiring) {
  asio::io_context io;
  int runs = 0;
  Deadline d(io.get_executor(), [&] { ++runs; }, Clock::now() + 1ms);
  RunAll(io);
  EXPECT_EQ(runs, 1);
  d.Set(Clock::now() + 1ms);
  EXPECT_FALSE(d.fired());
  io.restart();
  RunAll(io);
  EXPECT_EQ(runs, 2);
}

TEST(Deadline, NeverRunsAfterItsDestruction) {
  asio::io_context io;
  bool destroyed = false;
  int runs_after = 0;
  // Already passed: its completion is due at the io_context's first turn,
  // together with the timer that destroys it (in either order).
  auto d = std::make_unique<Deadline>(io.get_executor(), [&] { runs_after += destroyed; },
                                      Clock::now() - 1s);
  asio::steady_timer killer(io, Clock::now() - 1s);
  killer.async_wait([&](boost::system::error_code) {
    d.reset();
    destroyed = true;
  });
  RunAll(io);
  EXPECT_EQ(runs_after, 0);
  EXPECT_TRUE(destroyed);

  // Destroyed before the io_context ever ran: never runs at all.
  int runs = 0;
  auto e = std::make_unique<Deadline>(io.get_executor(), [&] { ++runs; }, Clock::now() - 1s);
  e.reset();
  io.restart();
  RunAll(io);
  EXPECT_EQ(runs, 0);
}

TEST(Deadline, OnExpiryMayDestroyIt) {
  asio::io_context io;
  std::unique_ptr<Deadline> d;
  int runs = 0;
  d = std::make_unique<Deadline>(io.get_executor(), [&] {
    ++runs;
    d.reset();  // as a connection closed by its idle timeout frees itself
  }, Clock::now() + 1ms);
  RunAll(io);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(d, nullptr);
}

}  // namespace
}  // namespace cove::io
