#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "agent/frame.h"
#include "manager/agent_connection.h"
#include "manager/instance_types.h"
#include "manager/sandbox_id.h"
#include "manager/store.h"

namespace cove {
namespace {

TEST(SandboxIdTest, AcceptsDnsLabelsOnly) {
  EXPECT_EQ(CheckSandboxId("my-box-1"), "");
  EXPECT_NE(CheckSandboxId(""), "");
  EXPECT_NE(CheckSandboxId(std::string(64, 'a')), "");
  EXPECT_EQ(CheckSandboxId(std::string(63, 'a')), "");
  EXPECT_NE(CheckSandboxId("Upper"), "");
  EXPECT_NE(CheckSandboxId("../x"), "");
  EXPECT_NE(CheckSandboxId("a_b"), "");
  EXPECT_EQ(CheckSandboxId(NewSandboxId()), "");
}

TEST(InstanceTypesTest, CloudflareTable) {
  auto lite = LimitsOf("lite");
  ASSERT_TRUE(lite);
  EXPECT_EQ(lite->memory_bytes, 256u << 20);
  EXPECT_EQ(LimitsOf("basic")->cpu_millis, 250u);
  EXPECT_EQ(LimitsOf("standard-4")->cpu_millis, 4000u);
  EXPECT_FALSE(LimitsOf("huge"));
}

TEST(StoreTest, RecordsSurviveReopen) {
  auto dir = std::filesystem::temp_directory_path() / ("cove-store-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "cove.db").string();
  {
    auto store = Store::Open(path);
    ASSERT_TRUE(store.ok()) << store.error().ToString();
    SandboxRecord r;
    r.id = "abc";
    r.state = SandboxState::kRunning;
    r.labels = {{"team", "x"}};
    r.pid = 42;
    ASSERT_TRUE((*store)->PutSandbox(r).ok());
    r.id = "def";
    ASSERT_TRUE((*store)->PutSandbox(r).ok());
    ASSERT_TRUE((*store)->RemoveSandbox("def").ok());
    ASSERT_TRUE((*store)->PutSetting("k", "v").ok());
  }
  auto store = Store::Open(path);
  ASSERT_TRUE(store.ok());
  for (const char* suffix : {"", "-wal", "-shm"}) {
    struct stat st {};
    if (::stat((path + suffix).c_str(), &st) == 0) {
      EXPECT_EQ(st.st_mode & 0777, 0600u) << suffix;
    }
  }
  auto all = (*store)->LoadSandboxes();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].id, "abc");
  EXPECT_EQ((*all)[0].state, SandboxState::kRunning);
  EXPECT_EQ((*all)[0].labels.at("team"), "x");
  EXPECT_EQ((*all)[0].pid, 42);
  EXPECT_EQ(*(*store)->GetSetting("k"), "v");
  EXPECT_EQ((*store)->GetSetting("nope").error().code, ErrorCode::kNotFound);
  std::filesystem::remove_all(dir);
}

// A lying agent: whatever it sends that breaks the protocol closes the
// connection and fails pending calls, without hanging or crashing coved.
class HostileAgentTest : public ::testing::Test {
 protected:
  // Runs one Request against a peer that answers with `reply_bytes` (and then
  // closes the connection with hang_up).
  Result<Json> RequestAgainst(const std::string& reply_bytes, bool* failure_reported,
                              std::chrono::milliseconds ping = std::chrono::seconds(15), bool hang_up = false) {
    auto dir = std::filesystem::temp_directory_path() / ("cove-agent-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    std::string sock = (dir / "a.sock").string();
    asio::io_context io;
    asio::local::stream_protocol::acceptor acc(io, asio::local::stream_protocol::endpoint(sock));
    std::optional<Result<Json>> result;
    asio::co_spawn(io, [&]() -> Task<void> {
      auto peer = co_await acc.async_accept(asio::use_awaitable);
      // Answer hello properly, then send the hostile bytes on the next channel.
      std::vector<char> buf(4096);
      co_await peer.async_read_some(asio::buffer(buf), asio::use_awaitable);
      std::string hello = agent::EncodeFrame(1, agent::FrameType::kReply, "{\"version\":\"t\"}");
      co_await asio::async_write(peer, asio::buffer(hello), asio::use_awaitable);
      co_await peer.async_read_some(asio::buffer(buf), asio::use_awaitable);
      co_await asio::async_write(peer, asio::buffer(reply_bytes), asio::use_awaitable);
      if (hang_up) co_return;
      asio::steady_timer t(io, std::chrono::seconds(3));
      boost::system::error_code ec;
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }, asio::detached);
    asio::co_spawn(io, [&]() -> Task<void> {
      auto conn = co_await AgentConnection::Connect(io.get_executor(), sock, "t", std::chrono::seconds(2), ping);
      if (!conn.ok()) {
        result = std::move(conn).error();
        io.stop();
        co_return;
      }
      (*conn)->SetFailureHandler([&](const Error&) { *failure_reported = true; });
      Json req = Json::object();
      req["op"] = "exists";
      result = co_await (*conn)->Request(req, std::chrono::seconds(2));
      io.stop();
    }, asio::detached);
    io.run();
    std::filesystem::remove_all(dir);
    return std::move(*result);
  }
};

TEST_F(HostileAgentTest, OversizedFrameFailsTheConnection) {
  std::string huge(agent::kFrameHeaderSize, '\0');
  huge[0] = '\xff';
  huge[1] = '\xff';
  huge[2] = '\xff';
  huge[3] = '\x7f';
  bool failed = false;
  auto r = RequestAgainst(huge, &failed);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(failed);
}

TEST_F(HostileAgentTest, NonJsonPayloadFailsTheConnection) {
  bool failed = false;
  auto r = RequestAgainst(agent::EncodeFrame(2, agent::FrameType::kReply, "not json"), &failed);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(failed);
  // The same answer as for an agent that died (the sandbox is failed), with its own reason.
  EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(r.error().message.find("sandbox t failed: its agent broke the protocol"), std::string::npos)
      << r.error().message;
}

TEST_F(HostileAgentTest, AgentThatHangsUpFailsCallsAsDied) {
  bool failed = false;
  auto r = RequestAgainst("", &failed, std::chrono::seconds(15), /*hang_up=*/true);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(failed);
  EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(r.error().message.find("sandbox t failed: its agent died"), std::string::npos) << r.error().message;
}

TEST_F(HostileAgentTest, DeeplyNestedPayloadFailsTheConnection) {
  // Copying or printing such a value would recurse a million levels deep.
  std::string deep = R"({"error":{"code":"FILE_NOT_FOUND","message":"x","context":{"a":)" +
                     std::string(500000, '[') + std::string(500000, ']') + "}}}";
  bool failed = false;
  auto r = RequestAgainst(agent::EncodeFrame(2, agent::FrameType::kReply, deep), &failed);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(failed);
}

TEST_F(HostileAgentTest, WrongDirectionFrameFailsTheConnection) {
  bool failed = false;
  auto r = RequestAgainst(agent::EncodeFrame(2, agent::FrameType::kRequest, "{}"), &failed);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(failed);
}

TEST_F(HostileAgentTest, SilenceTimesOutWithoutFailingTheConnection) {
  bool failed = false;
  auto r = RequestAgainst("", &failed);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kTimeout);
  EXPECT_FALSE(failed);
}

TEST_F(HostileAgentTest, AgentThatStopsAnsweringPingsFails) {
  // The peer answers hello, then nothing: the request below waits longer than
  // two ping intervals, so the unanswered ping fails the connection first.
  bool failed = false;
  auto r = RequestAgainst("", &failed, std::chrono::milliseconds(200));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(failed);
}

TEST_F(HostileAgentTest, ValidReplyIsDelivered) {
  bool failed = false;
  auto r = RequestAgainst(agent::EncodeFrame(2, agent::FrameType::kReply, "{\"exists\":true}"), &failed);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ((*r)["exists"], true);
  EXPECT_FALSE(failed);
}

// An agent that announces flow control and then floods a call whose consumer
// takes nothing, ignoring its credit: the connection fails (coved's memory is
// never spent on it); a call whose consumer keeps up is not flooding.
// A fake agent that answers hello (naming a window or not, as agents from
// before flow control do), then sends 20 MiB of events on the first call's
// channel, which nobody consumes.
struct FloodOutcome {
  std::string failure;      // the connection's failure, if any
  size_t budget_used = 0;   // the budget taken once the call started
  bool window_sent = false;  // coved granted the call a window
};

FloodOutcome FloodOneCall(bool agent_has_windows) {
  auto dir = std::filesystem::temp_directory_path() / ("cove-flood-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string sock = (dir / "a.sock").string();
  asio::io_context io;
  asio::local::stream_protocol::acceptor acc(io, asio::local::stream_protocol::endpoint(sock));
  auto budget = std::make_shared<FlowBudget>(agent::kChannelWindow);
  const std::string window = agent::EncodeFrame(2, agent::FrameType::kWindow, agent::EncodeWindow(agent::kChannelWindow));
  FloodOutcome out;
  asio::co_spawn(io, [&]() -> Task<void> {
    auto peer = co_await acc.async_accept(asio::use_awaitable);
    std::vector<char> buf(4096);
    co_await peer.async_read_some(asio::buffer(buf), asio::use_awaitable);
    std::string hello = agent::EncodeFrame(1, agent::FrameType::kReply, agent_has_windows
        ? "{\"version\":\"t\",\"window\":" + std::to_string(agent::kChannelWindow) + "}" : "{\"version\":\"t\"}");
    co_await asio::async_write(peer, asio::buffer(hello), asio::use_awaitable);
    std::string received;  // what coved sent after hello: the request (and its window)
    size_t n = co_await peer.async_read_some(asio::buffer(buf), asio::use_awaitable);
    received.append(buf.data(), n);
    if (agent_has_windows)
      for (int i = 0; i < 10 && received.find(window) == std::string::npos; ++i) {
        n = co_await peer.async_read_some(asio::buffer(buf), asio::use_awaitable);
        received.append(buf.data(), n);
      }
    out.window_sent = received.find(window) != std::string::npos;
    std::string event = agent::EncodeFrame(2, agent::FrameType::kEvent,
                                           "{\"type\":\"stdout\",\"data\":\"" + std::string(1 << 20, 'y') + "\"}");
    boost::system::error_code ec;
    for (int i = 0; i < 20 && !ec; ++i)
      co_await asio::async_write(peer, asio::buffer(event), asio::redirect_error(asio::use_awaitable, ec));
    asio::steady_timer t(io, std::chrono::seconds(3));
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }, asio::detached);
  asio::co_spawn(io, [&]() -> Task<void> {
    auto conn = co_await AgentConnection::Connect(io.get_executor(), sock, "t", std::chrono::seconds(2),
                                                  std::chrono::seconds(15), budget);
    if (!conn.ok()) co_return io.stop();
    (*conn)->SetFailureHandler([&](const Error& e) { out.failure = e.message; });
    Json req = Json::object();
    req["op"] = "exec";
    auto call = (*conn)->Start(req);
    out.budget_used = budget->used();
    asio::steady_timer t(io, std::chrono::seconds(2));
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    io.stop();
  }, asio::detached);
  io.run();
  std::filesystem::remove_all(dir);
  return out;
}

TEST(FlowControlTest, AgentBeyondItsCreditFailsTheConnection) {
  FloodOutcome out = FloodOneCall(true);
  EXPECT_EQ(out.budget_used, agent::kChannelWindow) << "the call took its window from the budget";
  EXPECT_TRUE(out.window_sent) << "the window was granted after the request";
  EXPECT_NE(out.failure.find("window"), std::string::npos) << out.failure;
}

// An agent from before flow control, adopted across an upgrade: no windows, and
// it is not held to one (coved pauses reading it instead).
TEST(FlowControlTest, AgentWithoutWindowsIsNotHeldToThem) {
  FloodOutcome out = FloodOneCall(false);
  EXPECT_EQ(out.budget_used, 0u);
  EXPECT_FALSE(out.window_sent);
  EXPECT_EQ(out.failure, "");
}

// An agent that answers hello and then stops reading its socket: coved queues
// at most AgentConnection::kMaxOutboxBytes (plus one request) for it, then
// refuses new calls, and terminal-style data fails its call.
TEST(FlowControlTest, AnAgentThatStopsReadingCostsABoundedQueue) {
  auto dir = std::filesystem::temp_directory_path() / ("cove-deaf-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string sock = (dir / "a.sock").string();
  asio::io_context io;
  asio::local::stream_protocol::acceptor acc(io, asio::local::stream_protocol::endpoint(sock));
  std::optional<asio::local::stream_protocol::socket> peer;
  asio::co_spawn(io, [&]() -> Task<void> {
    peer.emplace(co_await acc.async_accept(asio::use_awaitable));
    std::vector<char> buf(4096);
    co_await peer->async_read_some(asio::buffer(buf), asio::use_awaitable);
    std::string hello = agent::EncodeFrame(1, agent::FrameType::kReply,
                                           "{\"version\":\"t\",\"window\":" + std::to_string(agent::kChannelWindow) + "}");
    co_await asio::async_write(*peer, asio::buffer(hello), asio::use_awaitable);
  }, asio::detached);  // and never reads again
  size_t accepted = 0;
  std::optional<Error> refused, data_failure;
  asio::co_spawn(io, [&]() -> Task<void> {
    auto conn = co_await AgentConnection::Connect(io.get_executor(), sock, "t", std::chrono::seconds(2),
                                                  std::chrono::seconds(15));
    if (!conn.ok()) co_return io.stop();
    Json req = Json::object();
    req["op"] = "write";
    const std::string mib(1 << 20, 'x');
    std::vector<std::shared_ptr<AgentConnection::Call>> calls;
    asio::steady_timer t(io);
    boost::system::error_code ec;
    for (int i = 0; i < 200 && !refused; ++i) {
      auto call = (*conn)->Start(req, mib);
      if (!call.ok()) {
        refused = call.error();
        break;
      }
      calls.push_back(*call);
      ++accepted;
      t.expires_after(std::chrono::milliseconds(1));  // let the writer fill the socket
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!calls.empty()) {
      calls.front()->SendData("input");
      auto m = co_await calls.front()->Next(std::chrono::steady_clock::now() + std::chrono::seconds(1));
      if (!m.ok()) data_failure = m.error();
    }
    io.stop();
  }, asio::detached);
  io.run();
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(refused.has_value()) << "200 MiB queued for an agent that reads nothing";
  EXPECT_EQ(refused->code, ErrorCode::kUnavailable);
  EXPECT_NE(refused->message.find("not reading"), std::string::npos) << refused->message;
  EXPECT_GE(accepted, AgentConnection::kMaxOutboxBytes >> 20) << "the bound, not the socket, refused";
  EXPECT_LE(accepted, (AgentConnection::kMaxOutboxBytes >> 20) + 16) << "only the socket's buffers beyond the bound";
  ASSERT_TRUE(data_failure.has_value());
  EXPECT_NE(data_failure->message.find("not reading"), std::string::npos) << data_failure->message;
}

TEST(FlowControlTest, BudgetQueuesCallsThatDoNotFitInOrder) {
  FlowBudget budget(100);
  std::vector<int> ran;
  EXPECT_TRUE(budget.Take(60, [] {}));
  EXPECT_FALSE(budget.Take(60, [&] { ran.push_back(1); }));
  EXPECT_FALSE(budget.Take(10, [&] { ran.push_back(2); })) << "no overtaking of a waiting call";
  budget.Release(60);
  EXPECT_EQ(ran, (std::vector<int>{1, 2}));
  EXPECT_EQ(budget.used(), 0u);
}

}  // namespace
}  // namespace cove
