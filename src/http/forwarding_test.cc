// The rules every relay applies to the heads it passes on (forwarding.h).
#include "http/forwarding.h"

#include <gtest/gtest.h>

namespace cove::http {
namespace {

HttpHead Request(const std::string& text) {
  auto head = ParseRequestHead(text);
  EXPECT_TRUE(head.ok()) << text;
  return head.ok() ? *head : HttpHead{};
}

HttpHead Response(const std::string& text) {
  auto head = ParseResponseHead(text);
  EXPECT_TRUE(head.ok()) << text;
  return head.ok() ? *head : HttpHead{};
}

TEST(Forwarding, RequestsLoseHopByHopFieldsAndCarryTheClientsKeepAlive) {
  HttpHead keep = Request("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nTE: trailers\r\n"
                          "Proxy-Authorization: Basic eA==\r\n\r\n");
  PrepareRequest(keep, false, true);
  EXPECT_EQ(keep.SerializeRequest(), "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  HttpHead close = Request("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  PrepareRequest(close, false, false);
  EXPECT_EQ(close.SerializeRequest(), "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  HttpHead old = Request("GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
  PrepareRequest(old, false, KeepAlive(old));
  EXPECT_EQ(old.SerializeRequest(), "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
}

TEST(Forwarding, AnUpgradeIsCarriedOn) {
  HttpHead ws = Request("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
  ASSERT_TRUE(WantsUpgrade(ws));
  PrepareRequest(ws, true, true);
  EXPECT_EQ(ws.SerializeRequest(), "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
  EXPECT_FALSE(WantsUpgrade(Request("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n")));
  EXPECT_FALSE(WantsUpgrade(Request("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n")));
  HttpHead switched = Response("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
                               "Keep-Alive: timeout=5\r\n\r\n");
  ASSERT_TRUE(PrepareSwitch(switched));
  EXPECT_EQ(switched.SerializeResponse(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
  HttpHead unnamed = Response("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n");
  EXPECT_FALSE(PrepareSwitch(unnamed));
}

TEST(Forwarding, ResponsesAreDelimitedForTheClient) {
  // Delimited: both connections stay.
  HttpHead length = Response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\n");
  auto plan = PrepareResponse(length, "GET", 1, true);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->framing.kind, BodyKind::kLength);
  EXPECT_TRUE(plan->keep_client && plan->keep_upstream && !plan->rechunk);
  EXPECT_EQ(length.SerializeResponse(), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
  // Until close: re-chunked for an HTTP/1.1 client, the upstream ends.
  HttpHead eof = Response("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n");
  plan = PrepareResponse(eof, "GET", 1, true);
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->rechunk && plan->keep_client && !plan->keep_upstream);
  EXPECT_EQ(eof.SerializeResponse(), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n");
  // ... and for an HTTP/1.0 client the connection ends with the body.
  HttpHead eof10 = Response("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
  plan = PrepareResponse(eof10, "GET", 0, true);
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(!plan->rechunk && !plan->keep_client);
  EXPECT_EQ(eof10.SerializeResponse(), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
  // A coding other than chunked: chunked goes last; Content-Length never beside it.
  HttpHead gzip = Response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 9\r\n\r\n");
  plan = PrepareResponse(gzip, "GET", 1, true);
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->rechunk);
  EXPECT_EQ(gzip.SerializeResponse(), "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
  HttpHead both = Response("HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n");
  plan = PrepareResponse(both, "GET", 1, true);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->framing.kind, BodyKind::kChunked);
  EXPECT_EQ(both.SerializeResponse(), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  // HEAD, 204 and 304 answers have no body whatever they say; a client
  // that closes gets "Connection: close"; HTTP/1.0 keep-alive is said.
  for (auto [text, method] : {std::pair{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD"},
                              std::pair{"HTTP/1.1 204 No Content\r\n\r\n", "GET"},
                              std::pair{"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n", "GET"}}) {
    HttpHead head = Response(text);
    plan = PrepareResponse(head, method, 1, true);
    ASSERT_TRUE(plan.ok()) << text;
    EXPECT_EQ(plan->framing.kind, BodyKind::kNone) << text;
    EXPECT_TRUE(plan->keep_client && plan->keep_upstream) << text;
  }
  HttpHead closing = Response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  plan = PrepareResponse(closing, "GET", 1, false);
  EXPECT_EQ(closing.Get("connection"), "close");
  HttpHead old = Response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  plan = PrepareResponse(old, "GET", 0, true);
  EXPECT_EQ(old.Get("connection"), "keep-alive");
  HttpHead bad = Response("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n");
  EXPECT_FALSE(PrepareResponse(bad, "GET", 1, true).ok());
}

}  // namespace
}  // namespace cove::http
