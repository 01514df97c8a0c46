// The /ws control transport (ws_transport.h) driven in-process: a scripted
// WebSocket feeds it frames and records what it sends; the handler stands in
// for the routes.
#include "api/ws_transport.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <deque>

#include "api/fields.h"
#include "io/async_signal.h"

namespace cove::api {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

// A WebSocket whose incoming messages the test pushes and whose outgoing ones
// it reads. Single-threaded (the test's io_context).
class ScriptedWebSocket : public WebSocket {
 public:
  explicit ScriptedWebSocket(asio::any_io_executor ex) : arrived_(ex) {}
  void Push(std::string data, bool binary = false) {
    inbox_.push_back(Message{binary, std::move(data)});
    arrived_.Notify();
  }
  // The peer closes: a pending and every later Read() ends.
  void HangUp() {
    closed_ = true;
    arrived_.Notify();
  }
  Task<std::optional<Message>> Read() override {
    while (inbox_.empty() && !closed_) co_await arrived_.Wait();
    if (inbox_.empty()) co_return std::nullopt;
    Message m = std::move(inbox_.front());
    inbox_.pop_front();
    co_return m;
  }
  Task<bool> Write(std::string data, bool) override {
    sent.push_back(Json::parse(data));
    co_return true;
  }
  Task<void> Close() override {
    HangUp();
    co_return;
  }
  std::vector<Json> sent;  // every frame written, parsed

 private:
  std::deque<Message> inbox_;
  bool closed_ = false;
  AsyncSignal arrived_;
};

class WsTransportTest : public ::testing::Test {
 protected:
  WsTransportTest() : ws_(io_.get_executor()), gone_signal_(io_.get_executor()) {
    asio::co_spawn(io_, ServeControlSocket(ws_, [this](HttpRequest& r) { return Handle(r); }, "/v1/sandboxes/s1",
                                           "Bearer tok"),
                   [this](std::exception_ptr) { served_ = true; });
  }
  ~WsTransportTest() override {
    ws_.HangUp();
    RunUntil([&] { return served_; });
  }

  // Runs io until done() (or a generous limit: a failure, not a timing assertion).
  template <typename F>
  bool RunUntil(F done) {
    auto limit = std::chrono::steady_clock::now() + 30s;
    while (!done() && std::chrono::steady_clock::now() < limit) io_.run_one_for(50ms);
    return done();
  }
  // Sends a frame and waits until `frames` frames have been sent back in all.
  [[nodiscard]] bool Exchange(const std::string& frame, size_t frames, bool binary = false) {
    ws_.Push(frame, binary);
    return RunUntil([&] { return ws_.sent.size() >= frames; });
  }

  // The routes: /api/echo answers what it got; /sse streams events in
  // awkwardly split chunks; /big streams a JSON body; /abort fails its
  // stream; /hold streams nothing until its client goes away.
  Task<HttpResponse> Handle(HttpRequest& req) {
    requests_.push_back(req.method + " " + req.path);
    HttpResponse res;
    const std::string route = req.path.substr(std::string("/v1/sandboxes/s1").size());
    if (route == "/api/echo") {
      Json q = Json::object();
      for (auto& [k, v] : req.query) q[k] = v;
      Json body;  // as the routes read it: the frame's body arrives parsed, not as text
      EXPECT_EQ(ParseJsonObject(req, &body), "");
      res.body = Json{{"method", req.method}, {"path", req.path}, {"query", q}, {"custom", req.Header("x-custom")},
                      {"authorization", req.Header("authorization")}, {"body", body}, {"text", req.body}}
                     .dump();
    } else if (route == "/api/text") {
      res.content_type = "text/plain";
      res.body = "{\"not\":\"parsed\"}";
    } else if (route == "/sse") {
      res.content_type = "text/event-stream";
      res.stream = [](BodyStream& out) -> Task<void> {
        co_await out.Write("data: {\"n\":1}\n\ndata: two");
        co_await out.Write("\n\n: a comment\n\ndata: {\"n\":3}\n");
        co_await out.Write("\n");
      };
    } else if (route == "/big") {
      res.stream = [](BodyStream& out) -> Task<void> {
        co_await out.Write("{\"logs\":\"");
        co_await out.Write(std::string(100000, 'x'));
        co_await out.Write("\"}");
      };
    } else if (route == "/abort") {
      res.content_type = req.query.count("sse") ? "text/event-stream" : "application/json";
      res.stream = [](BodyStream& out) -> Task<void> {
        co_await out.Write("data: {\"n\":1}\n\n");
        HttpResponse error;
        error.status = 500;
        error.body = R"({"code":"PROCESS_ERROR","message":"the log file went away"})";
        out.Abort(std::move(error));
      };
    } else if (route == "/hold") {
      res.content_type = "text/event-stream";
      res.stream = [this](BodyStream& out) -> Task<void> {
        bool gone = false;
        out.OnClientGone([&] {
          gone = true;
          gone_signal_.Notify();
        });
        co_await out.Write("data: started\n\n");
        while (!gone) co_await gone_signal_.Wait();
        ++streams_cancelled_;
      };
    } else if (route == "/late-hold") {
      // A streamed route whose handler takes a while before its stream starts.
      while (!late_released_) co_await gone_signal_.Wait();
      res.content_type = "text/event-stream";
      res.stream = [this](BodyStream& out) -> Task<void> {
        bool gone = false;
        out.OnClientGone([&] {
          gone = true;
          gone_signal_.Notify();
        });
        while (!gone) co_await gone_signal_.Wait();
        ++streams_cancelled_;
      };
    } else if (route == "/hold-plain") {
      // A non-streamed route that notices its client going away (ClientLink).
      auto client = req.client;
      bool gone = false;
      client->OnGone([&] {
        gone = true;
        gone_signal_.Notify();
      });
      while (!gone) co_await gone_signal_.Wait();
      ++plain_cancelled_;
      res.status = 499;
    } else {
      res.status = 404;
      res.body = R"({"code":"NOT_FOUND"})";
    }
    co_return res;
  }

  asio::io_context io_;
  ScriptedWebSocket ws_;
  AsyncSignal gone_signal_;
  bool served_ = false;
  std::vector<std::string> requests_;
  int streams_cancelled_ = 0;
  int plain_cancelled_ = 0;
  bool late_released_ = false;
};

TEST_F(WsTransportTest, MalformedFramesGetErrorFramesAndTheSocketKeepsServing) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"not json", "PARSE_ERROR"},
      {"[1,2]", "PARSE_ERROR"},
      {R"({"type":"request","id":"a","method":"GET"})", "INVALID_REQUEST"},
      {R"({"type":"request","id":"b","method":"GET","path":"api/echo"})", "INVALID_REQUEST"},
      {R"({"type":"request","method":"GET","path":"/api/echo"})", "INVALID_REQUEST"},
      {R"({"type":"request","id":"c","method":7,"path":"/api/echo"})", "INVALID_REQUEST"},
      {R"({"type":"bogus","id":"d"})", "INVALID_REQUEST"},
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    ASSERT_TRUE(Exchange(bad[i].first, i + 1)) << bad[i].first;
    const Json& f = ws_.sent[i];
    EXPECT_EQ(f["type"], "error") << bad[i].first;
    EXPECT_EQ(f["code"], bad[i].second) << bad[i].first;
    EXPECT_EQ(f["status"], 400) << bad[i].first;
    EXPECT_TRUE(f["message"].is_string());
  }
  EXPECT_EQ(ws_.sent[2]["id"], "a") << "an error about a request names it";
  EXPECT_FALSE(ws_.sent[0].contains("id"));
  ASSERT_TRUE(Exchange(R"({"type":"request","id":"x"})", bad.size() + 1, /*binary=*/true));
  EXPECT_EQ(ws_.sent.back()["code"], "PARSE_ERROR") << "binary frames are not requests";
  EXPECT_TRUE(requests_.empty());

  ASSERT_TRUE(Exchange(R"({"type":"request","id":"ok","method":"GET","path":"/api/echo"})", bad.size() + 2));
  EXPECT_EQ(ws_.sent.back()["type"], "response");
  EXPECT_EQ(ws_.sent.back()["status"], 200);
  EXPECT_FALSE(served_);
}

TEST_F(WsTransportTest, RequestIsServedLikeHttpUnderTheSandboxPrefix) {
  ASSERT_TRUE(Exchange(R"({"type":"request","id":7,"method":"POST","path":"/api/echo?x=1&y=%20z",
               "headers":{"X-Custom":"v","Authorization":"Bearer forged"},"body":{"k":"v"}})",
           1));
  const Json& f = ws_.sent[0];
  EXPECT_EQ(f["type"], "response");
  EXPECT_EQ(f["id"], 7) << "a numeric id comes back as a number";
  EXPECT_EQ(f["status"], 200);
  EXPECT_EQ(f["done"], true);
  ASSERT_TRUE(f["body"].is_object()) << "a JSON body is sent as JSON, not as a string: " << f.dump();
  const Json& got = f["body"];
  EXPECT_EQ(got["method"], "POST");
  EXPECT_EQ(got["path"], "/v1/sandboxes/s1/api/echo");
  EXPECT_EQ(got["query"], (Json{{"x", "1"}, {"y", " z"}}));
  EXPECT_EQ(got["custom"], "v") << "header names are lower-cased";
  EXPECT_EQ(got["authorization"], "Bearer tok") << "the upgrade's authorization, never the frame's";
  EXPECT_EQ(got["body"], (Json{{"k", "v"}}));
  EXPECT_EQ(got["text"], "") << "not printed to text to be parsed again";

  ASSERT_TRUE(Exchange(R"({"type":"request","id":"t","method":"GET","path":"/api/text"})", 2));
  EXPECT_EQ(ws_.sent[1]["body"], "{\"not\":\"parsed\"}") << "a non-JSON body is sent as a string";
  ASSERT_TRUE(Exchange(R"({"type":"request","id":"n","method":"GET","path":"/nope"})", 3));
  EXPECT_EQ(ws_.sent[2]["status"], 404);
  EXPECT_EQ(ws_.sent[2]["body"], (Json{{"code", "NOT_FOUND"}}));
}

TEST_F(WsTransportTest, SseBodyBecomesOneStreamFramePerEventThenTheResponse) {
  ASSERT_TRUE(Exchange(R"({"type":"request","id":"s","method":"GET","path":"/sse"})", 4));
  ASSERT_EQ(ws_.sent.size(), 4u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ws_.sent[i]["type"], "stream") << ws_.sent[i].dump();
    EXPECT_EQ(ws_.sent[i]["id"], "s");
  }
  EXPECT_EQ(ws_.sent[0]["data"], "{\"n\":1}");
  EXPECT_EQ(ws_.sent[1]["data"], "two") << "an event split across chunks is sent once, whole";
  EXPECT_EQ(ws_.sent[2]["data"], "{\"n\":3}");
  EXPECT_EQ(ws_.sent[3]["type"], "response");
  EXPECT_EQ(ws_.sent[3]["status"], 200);
  EXPECT_EQ(ws_.sent[3]["done"], true);
  EXPECT_FALSE(ws_.sent[3].contains("body"));
}

TEST_F(WsTransportTest, NonSseStreamedBodyComesWholeInTheResponse) {
  ASSERT_TRUE(Exchange(R"({"type":"request","id":"b","method":"GET","path":"/big"})", 1));
  for (int i = 0; i < 20; ++i) io_.poll();
  ASSERT_EQ(ws_.sent.size(), 1u) << "no stream frames for a non-SSE body";
  EXPECT_EQ(ws_.sent[0]["type"], "response");
  EXPECT_EQ(ws_.sent[0]["status"], 200);
  EXPECT_EQ(ws_.sent[0]["body"], (Json{{"logs", std::string(100000, 'x')}}));
}

TEST_F(WsTransportTest, AbortedStreamAnswersWithTheError) {
  ASSERT_TRUE(Exchange(R"({"type":"request","id":"p","method":"GET","path":"/abort"})", 1));
  EXPECT_EQ(ws_.sent[0]["type"], "response");
  EXPECT_EQ(ws_.sent[0]["id"], "p");
  EXPECT_EQ(ws_.sent[0]["status"], 500);
  EXPECT_EQ(ws_.sent[0]["body"]["code"], "PROCESS_ERROR") << ws_.sent[0].dump();

  // An SSE stream already sent its events: the error is its last frame.
  ASSERT_TRUE(Exchange(R"({"type":"request","id":"q","method":"GET","path":"/abort?sse=1"})", 3));
  EXPECT_EQ(ws_.sent[1]["type"], "stream");
  EXPECT_EQ(ws_.sent[2]["type"], "response");
  EXPECT_EQ(ws_.sent[2]["status"], 500);
  EXPECT_EQ(ws_.sent[2]["body"]["code"], "PROCESS_ERROR");
}

TEST_F(WsTransportTest, CancelFrameCancelsOnlyItsRequest) {
  ASSERT_TRUE(Exchange(R"({"type":"request","id":"h1","method":"GET","path":"/hold"})", 1));
  ASSERT_TRUE(Exchange(R"({"type":"request","id":"h2","method":"GET","path":"/hold"})", 2));
  EXPECT_EQ(ws_.sent[0]["data"], "started");
  ws_.Push(R"({"type":"cancel","id":"nobody"})");
  ws_.Push(R"({"type":"cancel","id":"h2"})");
  ASSERT_TRUE(RunUntil([&] { return streams_cancelled_ == 1; }));
  ASSERT_TRUE(RunUntil([&] { return ws_.sent.size() == 3; }));
  EXPECT_EQ(ws_.sent[2]["type"], "response");
  EXPECT_EQ(ws_.sent[2]["id"], "h2");

  ASSERT_TRUE(Exchange(R"({"type":"request","id":"c","method":"GET","path":"/hold-plain"})", 3));
  ws_.Push(R"({"type":"cancel","id":"c"})");
  ASSERT_TRUE(RunUntil([&] { return plain_cancelled_ == 1; })) << "a non-streamed request is cancelled too";
  ASSERT_TRUE(RunUntil([&] { return ws_.sent.size() == 4; }));
  EXPECT_EQ(ws_.sent[3]["id"], "c");
  EXPECT_EQ(streams_cancelled_, 1) << "h1 still runs";
}

TEST_F(WsTransportTest, CancelBeforeTheStreamStartsIsNotLost) {
  ws_.Push(R"({"type":"request","id":"l","method":"GET","path":"/late-hold"})");
  ASSERT_TRUE(RunUntil([&] { return requests_.size() == 1; }));
  ws_.Push(R"({"type":"cancel","id":"l"})");
  for (int i = 0; i < 20; ++i) io_.poll();
  late_released_ = true;
  gone_signal_.Notify();
  ASSERT_TRUE(RunUntil([&] { return streams_cancelled_ == 1; })) << "the stream learns of the earlier cancel";
  ASSERT_TRUE(RunUntil([&] { return ws_.sent.size() == 1; }));
  EXPECT_EQ(ws_.sent[0]["type"], "response");
}

TEST_F(WsTransportTest, IdsOfRequestsInFlightAreUniqueAndTyped) {
  ASSERT_TRUE(Exchange(R"({"type":"request","id":"dup","method":"GET","path":"/hold"})", 1));
  ASSERT_TRUE(Exchange(R"({"type":"request","id":"dup","method":"GET","path":"/hold"})", 2));
  EXPECT_EQ(ws_.sent[1]["type"], "error") << "a second request under an id in flight is refused";
  EXPECT_EQ(ws_.sent[1]["id"], "dup");
  EXPECT_EQ(requests_.size(), 1u);
  // 1 and "1" are different ids: cancelling one leaves the other running.
  ASSERT_TRUE(Exchange(R"({"type":"request","id":1,"method":"GET","path":"/hold"})", 3));
  ASSERT_TRUE(Exchange(R"({"type":"request","id":"1","method":"GET","path":"/hold"})", 4));
  ws_.Push(R"({"type":"cancel","id":1})");
  ASSERT_TRUE(RunUntil([&] { return ws_.sent.size() == 5; }));
  EXPECT_EQ(ws_.sent[4]["type"], "response");
  EXPECT_EQ(ws_.sent[4]["id"], 1);
  EXPECT_EQ(streams_cancelled_, 1);
  // Closing the socket still ends every stream ("dup" and "1").
  ws_.HangUp();
  ASSERT_TRUE(RunUntil([&] { return served_; }));
  EXPECT_EQ(streams_cancelled_, 3);
}

TEST_F(WsTransportTest, ClosingTheSocketCancelsWhatRunsAndWaitsForIt) {
  ASSERT_TRUE(Exchange(R"({"type":"request","id":"h","method":"GET","path":"/hold"})", 1));
  ASSERT_TRUE(Exchange(R"({"type":"request","id":"p","method":"GET","path":"/hold-plain"})", 1));
  ws_.HangUp();
  ASSERT_TRUE(RunUntil([&] { return served_; }));
  EXPECT_EQ(streams_cancelled_, 1);
  EXPECT_EQ(plain_cancelled_, 1);
}

}  // namespace
}  // namespace cove::api
