// SplicePump against real TCP connections on loopback: every byte arrives in
// order, EOF ends the pump, and closing a socket stops it.
#include "io/splice_pump.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace cove::io {
namespace {

using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

// Two connected sockets on loopback.
std::pair<tcp::socket, tcp::socket> Connected(asio::io_context& io) {
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  tcp::socket server = acceptor.accept();
  return {std::move(client), std::move(server)};
}

std::string RandomBytes(size_t n) {
  std::mt19937 rng(42);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

TEST(SplicePump, MovesEveryByteUntilEof) {
  asio::io_context io;
  auto [writer, pump_from] = Connected(io);
  auto [pump_to, reader] = Connected(io);
  // Larger than the pipe and the socket buffers together: the pump must wait
  // for the reader more than once.
  const std::string data = RandomBytes(24 << 20);
  std::string received;
  error_code pump_ec = asio::error::would_block, read_ec;
  size_t moves = 0;
  asio::co_spawn(io, [&]() -> Task<void> {
    error_code ec;
    co_await asio::async_write(writer, asio::buffer(data), asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_FALSE(ec) << ec.message();
    writer.shutdown(tcp::socket::shutdown_send);
  }, asio::detached);
  asio::co_spawn(io, [&]() -> Task<void> {
    auto pump = SplicePump::Open();
    EXPECT_TRUE(pump.has_value());
    if (!pump) co_return;
    pump_ec = co_await pump->Run(pump_from, pump_to, [&] { ++moves; });
    pump_to.shutdown(tcp::socket::shutdown_send);
  }, asio::detached);
  asio::co_spawn(io, [&]() -> Task<void> {
    std::string chunk(100000, '\0');
    while (true) {
      size_t n = co_await reader.async_read_some(asio::buffer(chunk), asio::redirect_error(asio::use_awaitable, read_ec));
      if (read_ec) break;
      received.append(chunk.data(), n);
    }
  }, asio::detached);
  io.run();
  EXPECT_FALSE(pump_ec) << pump_ec.message();
  EXPECT_EQ(read_ec, asio::error::eof);
  ASSERT_EQ(received.size(), data.size());
  EXPECT_TRUE(received == data);
  EXPECT_GT(moves, 2u);
}

TEST(SplicePump, ClosingTheDestinationStopsIt) {
  asio::io_context io;
  auto [writer, pump_from] = Connected(io);
  auto [pump_to, reader] = Connected(io);
  error_code pump_ec;
  bool done = false;
  asio::co_spawn(io, [&]() -> Task<void> {
    auto pump = SplicePump::Open();
    EXPECT_TRUE(pump.has_value());
    if (!pump) co_return;
    pump_ec = co_await pump->Run(pump_from, pump_to, {});
    done = true;
  }, asio::detached);
  // Nobody reads `reader`: once the buffers are full the pump waits for the
  // destination, and closing it must end the wait.
  asio::co_spawn(io, [&]() -> Task<void> {
    const std::string data = RandomBytes(8 << 20);
    error_code ec;
    co_await asio::async_write(writer, asio::buffer(data), asio::redirect_error(asio::use_awaitable, ec));
  }, asio::detached);
  asio::steady_timer timer(io, std::chrono::milliseconds(300));
  timer.async_wait([&](error_code) {
    EXPECT_FALSE(done);
    pump_to.close();
    writer.close();
  });
  io.run();
  EXPECT_TRUE(done);
  EXPECT_TRUE(pump_ec);
}

TEST(SplicePump, AnEmptySourceEndsAtOnce) {
  asio::io_context io;
  auto [writer, pump_from] = Connected(io);
  auto [pump_to, reader] = Connected(io);
  writer.shutdown(tcp::socket::shutdown_send);
  error_code pump_ec = asio::error::would_block;
  asio::co_spawn(io, [&]() -> Task<void> {
    auto pump = SplicePump::Open();
    if (pump) pump_ec = co_await pump->Run(pump_from, pump_to, {});
  }, asio::detached);
  io.run();
  EXPECT_FALSE(pump_ec) << pump_ec.message();
}

}  // namespace
}  // namespace cove::io
