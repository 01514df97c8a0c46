#include "api/serve_on.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "io/shards.h"

namespace cove::api {
namespace {

// The connection's side of a streamed answer: records where it was used.
class RecordingStream : public BodyStream {
 public:
  Task<bool> Write(std::string data) override {
    threads.push_back(std::this_thread::get_id());
    chunks.push_back(std::move(data));
    co_return true;
  }
  void OnClientGone(std::function<void()> fn) override { on_gone = std::move(fn); }
  void Abort(HttpResponse error) override {
    abort_thread = std::this_thread::get_id();
    aborted = error.status;
  }
  std::vector<std::thread::id> threads;
  std::vector<std::string> chunks;
  std::function<void()> on_gone;
  std::thread::id abort_thread;
  int aborted = 0;
};

struct Fixture {
  asio::io_context conn{1};
  io::Shards shards{conn, 2};
  std::thread::id conn_thread = std::this_thread::get_id();
  Fixture() { shards.Start(); }
  ~Fixture() { shards.Stop(); }
};

TEST(ServeOnTest, TheHandlerAndItsStreamRunThereAndTheirWritesRunOnTheConnection) {
  Fixture f;
  std::thread::id handler_thread, stream_thread;
  Handler handler = [&](HttpRequest&) -> Task<HttpResponse> {
    handler_thread = std::this_thread::get_id();
    HttpResponse res;
    res.stream = [&](BodyStream& out) -> Task<void> {
      stream_thread = std::this_thread::get_id();
      co_await out.Write("one");
      co_await out.Write("two");
      out.Abort(HttpResponse{.status = 502});
    };
    co_return res;
  };
  RecordingStream out;
  asio::co_spawn(f.conn, [&]() -> Task<void> {
    HttpRequest req;
    HttpResponse res = co_await ServeOn(f.shards.at(1), req, handler);
    co_await res.stream(out);
  }, asio::detached);
  f.conn.run();
  EXPECT_NE(handler_thread, f.conn_thread);
  EXPECT_EQ(stream_thread, handler_thread);
  ASSERT_EQ(out.chunks, (std::vector<std::string>{"one", "two"}));
  for (auto t : out.threads) EXPECT_EQ(t, f.conn_thread);
  EXPECT_EQ(out.aborted, 502);
  EXPECT_EQ(out.abort_thread, f.conn_thread);
}

TEST(ServeOnTest, TheClientGoingAwayReachesTheHandlerThere) {
  Fixture f;
  std::atomic<std::thread::id> gone_thread{};
  std::atomic<bool> gone{false};
  Handler handler = [&](HttpRequest& req) -> Task<HttpResponse> {
    req.client->OnGone([&] {
      gone_thread = std::this_thread::get_id();
      gone = true;
    });
    co_return HttpResponse{};
  };
  asio::co_spawn(f.conn, [&]() -> Task<void> {
    HttpRequest req;
    auto client = req.client;
    co_await ServeOn(f.shards.at(1), req, handler);
    EXPECT_EQ(req.client, client);  // the connection's link again
    client->SetGone();
    // The handler's side hears it on its own thread.
    for (int i = 0; i < 1000 && !gone; ++i) co_await io::RunOn(f.shards.at(1), []() -> Task<void> { co_return; }());
  }, asio::detached);
  f.conn.run();
  EXPECT_TRUE(gone);
  EXPECT_NE(gone_thread, f.conn_thread);
}

// Records the thread that destroys it.
struct DestroyProbe {
  std::atomic<std::thread::id>* where;
  ~DestroyProbe() { where->store(std::this_thread::get_id()); }
};

TEST(ServeOnTest, WhatTheAnswerHoldsDiesThereEvenIfItsStreamNeverRuns) {
  Fixture f;
  std::atomic<std::thread::id> destroyed{};
  std::thread::id handler_thread;
  Handler handler = [&](HttpRequest&) -> Task<HttpResponse> {
    handler_thread = std::this_thread::get_id();
    auto held = std::make_shared<DestroyProbe>(&destroyed);  // as an agent call would be
    HttpResponse res;
    res.stream = [held](BodyStream&) -> Task<void> { co_return; };
    co_return res;
  };
  asio::co_spawn(f.conn, [&]() -> Task<void> {
    HttpRequest req;
    HttpResponse res = co_await ServeOn(f.shards.at(1), req, handler);
    res = HttpResponse{};  // the client went away before the stream started
    for (int i = 0; i < 1000 && destroyed.load() == std::thread::id(); ++i)
      co_await io::RunOn(f.shards.at(1), []() -> Task<void> { co_return; }());
  }, asio::detached);
  f.conn.run();
  EXPECT_EQ(destroyed.load(), handler_thread);
  EXPECT_NE(destroyed.load(), f.conn_thread);
}

TEST(ServeOnTest, OnTheConnectionsOwnExecutorTheHandlerIsCalledInPlace) {
  Fixture f;
  std::thread::id handler_thread;
  Handler handler = [&](HttpRequest&) -> Task<HttpResponse> {
    handler_thread = std::this_thread::get_id();
    co_return HttpResponse{.status = 204};
  };
  int status = 0;
  asio::co_spawn(f.conn, [&]() -> Task<void> {
    HttpRequest req;
    status = (co_await ServeOn(f.shards.at(0), req, handler)).status;
  }, asio::detached);
  f.conn.run();
  EXPECT_EQ(status, 204);
  EXPECT_EQ(handler_thread, f.conn_thread);
}

}  // namespace
}  // namespace cove::api
