#include "api/agent_reply.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "agent/frame.h"

namespace cove::api {
namespace {

// A body stream that keeps each write.
class RecordingStream : public BodyStream {
 public:
  Task<bool> Write(std::string data) override {
    writes.push_back(std::move(data));
    co_return true;
  }
  void OnClientGone(std::function<void()>) override {}
  void Abort(HttpResponse) override {}
  std::vector<std::string> writes;
};

// A fake agent answers hello, then sends `events` events and the reply of the
// next call at once; RelayToSse relays that call into a RecordingStream.
std::vector<std::string> RelayBurst(int events) {
  auto dir = std::filesystem::temp_directory_path() / ("cove-relay-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string sock = (dir / "a.sock").string();
  asio::io_context io;
  asio::local::stream_protocol::acceptor acc(io, asio::local::stream_protocol::endpoint(sock));
  RecordingStream out;
  asio::co_spawn(io, [&]() -> Task<void> {
    auto peer = co_await acc.async_accept(asio::use_awaitable);
    std::vector<char> buf(4096);
    co_await peer.async_read_some(asio::buffer(buf), asio::use_awaitable);
    std::string hello = agent::EncodeFrame(
        1, agent::FrameType::kReply, "{\"version\":\"t\",\"window\":" + std::to_string(agent::kChannelWindow) + "}");
    co_await asio::async_write(peer, asio::buffer(hello), asio::use_awaitable);
    co_await peer.async_read_some(asio::buffer(buf), asio::use_awaitable);  // the request
    std::string burst;
    for (int i = 0; i < events; ++i)
      agent::EncodeFrame(2, agent::FrameType::kEvent, "{\"n\":" + std::to_string(i) + "}", &burst);
    agent::EncodeFrame(2, agent::FrameType::kReply, "{\"n\":-1}", &burst);
    co_await asio::async_write(peer, asio::buffer(burst), asio::use_awaitable);
    asio::steady_timer t(io, std::chrono::seconds(5));
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }, asio::detached);
  // (Built outside the coroutine: GCC 12 cannot keep such temporaries in its frame.)
  auto sse = [](const Json& m) { return "data: " + std::to_string(IntOf(m, "n")) + "\n\n"; };
  SseMapping map{sse, sse, [](const std::string& e) { return "data: error " + e + "\n\n"; },
                 std::string("data: open\n\n"), std::nullopt};
  Json op = Json::object();
  op["op"] = "exec";
  asio::co_spawn(io, [&]() -> Task<void> {
    auto conn = co_await AgentConnection::Connect(io.get_executor(), sock, "t", std::chrono::seconds(2));
    if (!conn.ok()) co_return io.stop();
    co_await StartAndRelay(*conn, op, out, map);
    (*conn)->Close();
    io.stop();
  }, asio::detached);
  io.run();
  std::filesystem::remove_all(dir);
  return out.writes;
}

TEST(RelayToSseTest, EventsThatArrivedTogetherGoOutInOneWrite) {
  std::vector<std::string> writes = RelayBurst(5);
  ASSERT_EQ(writes.size(), 2u) << "the opening at once, then the queued events and the reply together";
  EXPECT_EQ(writes[0], "data: open\n\n");
  EXPECT_EQ(writes[1], "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\ndata: -1\n\n");
}

TEST(RelayToSseTest, AWriteGathersAtMostAboutTheCoalescingBound) {
  // Events of 1 byte each would need far more than kSseCoalesceBytes to be
  // held back: the bound is on bytes, checked before each event is added.
  std::vector<std::string> writes = RelayBurst(20000);
  std::string all;
  for (size_t i = 1; i < writes.size(); ++i) {
    EXPECT_LT(writes[i].size(), kSseCoalesceBytes + 64);
    all += writes[i];
  }
  EXPECT_GT(writes.size(), 2u);
  std::string want;
  for (int i = 0; i < 20000; ++i) want += "data: " + std::to_string(i) + "\n\n";
  EXPECT_EQ(all, want + "data: -1\n\n");
}

}  // namespace
}  // namespace cove::api
