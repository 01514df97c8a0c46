#include "manager/agent_connection.h"

#include <fmt/format.h>

#include "agent/ops.h"
#include "base/json_limits.h"
#include "base/json_parse.h"
#include "base/log.h"

namespace cove {

using agent::FrameType;

namespace {
// The hello request (also the ping), built outside the coroutines.
Json HelloRequest() { return agent::ToJson(agent::HelloOp{}); }
}  // namespace

AgentConnection::Call::Call(std::shared_ptr<AgentConnection> conn, uint32_t channel)
    : conn_(conn), budget_(conn->budget_), channel_(channel), signal_(conn->socket_.get_executor()) {}

AgentConnection::Call::~Call() {
  if (window_open_) budget_->Release(window_);
  if (auto conn = conn_.lock()) {
    if (!replied_ && !error_ && conn->alive_)
      conn->Send(agent::EncodeFrame(channel_, FrameType::kCancel, ""));
    conn->Forget(channel_);
    if (queued_bytes_ > 0) conn->drained_signal_.Notify();
  }
}

void AgentConnection::Call::Cancel() {
  if (cancelled_ || replied_ || error_) return;
  cancelled_ = true;
  if (auto conn = conn_.lock(); conn && conn->alive_)
    conn->Send(agent::EncodeFrame(channel_, FrameType::kCancel, ""));
}

void AgentConnection::Call::SendData(std::string_view bytes) {
  if (replied_ || error_) return;
  auto conn = conn_.lock();
  if (!conn || !conn->alive_) return;
  if (auto full = conn->OutboxFull()) return Fail(*full);
  conn->Send(agent::EncodeFrame(channel_, FrameType::kData, bytes));
}

void AgentConnection::Call::OpenWindow() {
  auto conn = conn_.lock();
  if (window_open_ || replied_ || error_ || !conn || !conn->alive_) return;
  std::weak_ptr<Call> weak = weak_from_this();
  if (!budget_->Take(window_, [weak] {
        if (auto call = weak.lock()) call->OpenWindow();
      }))
    return;
  window_open_ = true;
  SendWindow(window_);
}

void AgentConnection::Call::Grant(size_t consumed) {
  ungranted_ += consumed;
  if (window_open_ && !replied_ && ungranted_ >= window_ / 4) {
    SendWindow(ungranted_);
    ungranted_ = 0;
  }
}

void AgentConnection::Call::SendWindow(size_t bytes) {
  auto conn = conn_.lock();
  if (!conn || !conn->alive_) return;
  conn->Send(agent::EncodeFrame(channel_, FrameType::kWindow, agent::EncodeWindow(static_cast<uint32_t>(bytes))));
  granted_ += bytes;
}

void AgentConnection::Call::Push(Message m) {
  if (m.final) replied_ = true;
  if (!m.final) received_ += m.wire_bytes;
  queued_bytes_ += m.wire_bytes;
  queue_.push_back(std::move(m));
  signal_.Notify();
}

void AgentConnection::Call::Fail(Error e) {
  if (!replied_) error_ = std::move(e);
  signal_.Notify();
}

Task<Result<AgentConnection::Message>> AgentConnection::Call::Next(Clock::time_point deadline) {
  for (;;) {
    if (!queue_.empty()) {
      Message m = std::move(queue_.front());
      queue_.pop_front();
      size_t before = queued_bytes_;
      queued_bytes_ -= std::min(queued_bytes_, m.wire_bytes);
      if (before >= kMaxQueuedPerCall && queued_bytes_ < kMaxQueuedPerCall)
        if (auto conn = conn_.lock()) conn->drained_signal_.Notify();
      if (m.final) {
        finished_ = true;
      } else {
        Grant(m.wire_bytes);
      }
      co_return m;
    }
    if (finished_) co_return MakeError(ErrorCode::kFailedPrecondition, "call already finished");
    if (error_) {
      finished_ = true;
      co_return *error_;
    }
    if (!co_await signal_.Wait(deadline) && queue_.empty() && !error_)
      co_return MakeError(ErrorCode::kTimeout, "agent did not answer in time");
  }
}

AgentConnection::AgentConnection(asio::any_io_executor ex, std::string sandbox_id)
    : socket_(ex), sandbox_id_(std::move(sandbox_id)), outbox_signal_(ex), drained_signal_(ex), ping_timer_(ex) {}

AgentConnection::~AgentConnection() { Close(); }

Task<Result<std::shared_ptr<AgentConnection>>> AgentConnection::Connect(
    asio::any_io_executor ex, std::string socket_path, std::string sandbox_id,
    Clock::duration timeout, Clock::duration ping_interval, std::shared_ptr<FlowBudget> budget) {
  std::shared_ptr<AgentConnection> conn(new AgentConnection(ex, std::move(sandbox_id)));
  conn->ping_interval_ = ping_interval;
  conn->budget_ = budget ? std::move(budget) : std::make_shared<FlowBudget>(SIZE_MAX);
  boost::system::error_code ec;
  co_await conn->socket_.async_connect(asio::local::stream_protocol::endpoint(socket_path),
                                       asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return SysError("connect to agent socket " + socket_path, ec.value());
  asio::co_spawn(ex, conn->ReadLoop(), asio::detached);
  asio::co_spawn(ex, conn->WriteLoop(), asio::detached);
  auto hello = co_await conn->Request(HelloRequest(), timeout);
  if (!hello.ok()) {
    conn->Close();
    co_return Error{hello.error().code, 0, "agent hello failed: " + hello.error().message, {}};
  }
  conn->hello_ = std::move(*hello);
  conn->flow_control_ = conn->hello_.value("window", int64_t{0}) == static_cast<int64_t>(agent::kChannelWindow);
  auto frames = conn->hello_.find("writeFrames");  // hostile input: a wrong type is false, never a throw
  conn->writes_in_frames_ = frames != conn->hello_.end() && frames->is_boolean() && frames->get<bool>();
  asio::co_spawn(ex, conn->PingLoop(), asio::detached);
  co_return conn;
}

Result<std::shared_ptr<AgentConnection::Call>> AgentConnection::Start(const Json& request,
                                                                       std::optional<std::string_view> data,
                                                                       size_t window) {
  if (!alive_) return closed_;
  if (auto full = OutboxFull()) return *full;
  uint32_t channel = next_channel_++;
  if (next_channel_ == 0) next_channel_ = 1;
  std::shared_ptr<Call> call(new Call(shared_from_this(), channel));
  call->window_ = std::min(window, budget_->limit());  // a window over the whole budget would never open
  calls_[channel] = call.get();
  std::string payload = request.dump(-1, ' ', false, Json::error_handler_t::replace);
  std::string frame = agent::EncodeFrame(channel, FrameType::kRequest, payload);
  if (data) agent::EncodeFrame(channel, FrameType::kData, *data, &frame);
  Send(std::move(frame));
  if (flow_control_) call->OpenWindow();
  return call;
}

Task<Result<Json>> AgentConnection::Request(const Json& request, Clock::duration timeout) {
  auto call = Start(request);
  if (!call.ok()) co_return std::move(call).error();
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto m = co_await (*call)->Next(deadline);
    if (!m.ok()) co_return std::move(m).error();
    if (m->final) co_return std::move(m->body);
  }
}

Task<void> AgentConnection::PingLoop() {
  auto self = shared_from_this();
  while (alive_) {
    ping_timer_.expires_after(ping_interval_);
    boost::system::error_code ec;
    co_await ping_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!alive_) break;
    auto pong = co_await Request(HelloRequest(), ping_interval_);
    if (!pong.ok() && pong.error().code == ErrorCode::kTimeout)
      Fail(MakeError(ErrorCode::kTimeout, "its agent stopped answering pings"));
  }
}

std::optional<Error> AgentConnection::OutboxFull() const {
  if (outbox_bytes_ < kMaxOutboxBytes) return std::nullopt;
  return MakeError(ErrorCode::kUnavailable, fmt::format("sandbox {}: its agent is not reading ({} MiB wait to be sent to it)",
                                                        sandbox_id_, outbox_bytes_ >> 20));
}

void AgentConnection::Send(std::string bytes) {
  outbox_bytes_ += bytes.size();
  outbox_.push_back(std::move(bytes));
  outbox_signal_.Notify();
}

Task<void> AgentConnection::WriteLoop() {
  auto self = shared_from_this();
  while (alive_) {
    if (outbox_.empty()) {
      co_await outbox_signal_.Wait();
      continue;
    }
    std::string bytes = std::move(outbox_.front());
    outbox_.pop_front();
    boost::system::error_code ec;
    co_await asio::async_write(socket_, asio::buffer(bytes),
                               asio::redirect_error(asio::use_awaitable, ec));
    outbox_bytes_ -= bytes.size();
    if (ec) {
      Fail(MakeError(ErrorCode::kUnavailable, "its agent died (writing to it: " + ec.message() + ")"));
      co_return;
    }
  }
}

Task<void> AgentConnection::ReadLoop() {
  auto self = shared_from_this();
  std::vector<char> buf(64 * 1024);
  while (alive_) {
    boost::system::error_code ec;
    size_t n = co_await socket_.async_read_some(asio::buffer(buf),
                                                asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      Fail(MakeError(ErrorCode::kUnavailable, ec == asio::error::eof
                                                  ? std::string("its agent died (it closed the connection)")
                                                  : "its agent died (reading from it: " + ec.message() + ")"));
      co_return;
    }
    if (auto s = decoder_.Feed(std::string_view(buf.data(), n)); !s.ok()) {
      Fail(Error{ErrorCode::kInternal, 0, "its agent broke the protocol: " + s.error().message, {}});
      co_return;
    }
    while (auto frame = decoder_.Next()) {
      bool raw = frame->type == FrameType::kData;
      if (frame->type != FrameType::kEvent && frame->type != FrameType::kReply && !raw) {
        Fail(MakeError(ErrorCode::kInternal, "its agent broke the protocol: unexpected frame type"));
        co_return;
      }
      auto it = calls_.find(frame->channel);
      if (raw && it != calls_.end() && !it->second->accepts_data_) {
        Fail(MakeError(ErrorCode::kInternal, "its agent broke the protocol: data on a call that expects none"));
        co_return;
      }
      Json body;
      if (!raw) {
        // The strict parser: ~3x nlohmann's on output events, bounded depth, no NUL.
        if (auto parsed = ParseJson(frame->payload, kMaxJsonDepth)) body = std::move(*parsed);
        if (!body.is_object()) {
          Fail(MakeError(ErrorCode::kInternal,
                         "its agent broke the protocol: payload is not a JSON object within limits"));
          co_return;
        }
      }
      if (it == calls_.end()) continue;  // a call its owner abandoned
      Call* call = it->second;
      bool final = frame->type == FrameType::kReply;
      size_t wire_bytes = frame->payload.size();
      call->Push(Message{final, std::move(body), wire_bytes, raw, raw ? std::move(frame->payload) : std::string()});
      if (final) calls_.erase(it);
      if (flow_control_ && call->received_ > call->granted_ + agent::kChannelWindow + agent::kMaxAgentFrame) {
        Fail(MakeError(ErrorCode::kInternal, "its agent broke the protocol: events beyond the channel's window"));
        co_return;
      }
      // An agent without flow control: stop reading while this call holds too much unread output.
      while (!flow_control_ && alive_ && final == false && calls_.count(frame->channel) &&
             call->queued_bytes_ >= kMaxQueuedPerCall)
        co_await drained_signal_.Wait();
    }
  }
}

void AgentConnection::Fail(Error e) {
  if (!alive_) return;
  log::Warn("sandbox {}: agent connection failed: {}", sandbox_id_, e.ToString());
  // The failure handler marks the sandbox failed: calls in flight get the
  // answer every later request gets, whatever the cause.
  Close("sandbox " + sandbox_id_ + " failed: " + e.message, ErrorCode::kFailedPrecondition);
  if (on_failure_) on_failure_(e);
}

void AgentConnection::Close(const std::string& reason, ErrorCode code) {
  if (!alive_) return;
  alive_ = false;
  closed_ = MakeError(code, reason);
  boost::system::error_code ec;
  socket_.close(ec);
  outbox_signal_.Notify();
  drained_signal_.Notify();
  ping_timer_.cancel();
  for (auto& [_, call] : calls_) call->Fail(closed_);
  calls_.clear();
}

}  // namespace cove
