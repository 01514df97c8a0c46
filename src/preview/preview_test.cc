// Unit tests of the preview router's parsers: host routes, heads, chunked bodies.
#include <gtest/gtest.h>

#include "manager/sandbox_record.h"
#include "preview/chunked_scanner.h"
#include "preview/host_route.h"
#include "preview/http_head.h"

namespace cove::preview {
namespace {

TEST(HostRoute, ParsesIdsWithDashes) {
  auto r = ParseHost("8080-my-sandbox-1-abc_123.localhost:7071", "localhost");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->port, 8080);
  EXPECT_EQ(r->sandbox_id, "my-sandbox-1");
  EXPECT_EQ(r->token, "abc_123");
  auto upper = ParseHost("8080-SB-TOK.Preview.Example.COM", "preview.example.com");
  ASSERT_TRUE(upper);
  EXPECT_EQ(upper->sandbox_id, "sb");
}

TEST(HostRoute, RejectsOthers) {
  for (const char* h : {"localhost", "8080-sb.localhost", "8080--tok.localhost", "x-sb-tok.localhost",
                        "0-sb-tok.localhost", "70000-sb-tok.localhost", "8080-sb-tok.evil.localhost",
                        "8080-sb-tok.localhost.evil", "8080-sb-tok-.localhost", "08080-sb-tok.localhost",
                        "8080-sb-tok.localhost:x", "8080-sb-toooooooooooooooolong.localhost"})
    EXPECT_FALSE(ParseHost(h, "localhost")) << h;
}

TEST(HostRoute, UrlAndTokens) {
  EXPECT_EQ(PreviewUrl(false, "localhost", 7071, 8000, "sb-1", "abc"), "http://8000-sb-1-abc.localhost:7071");
  EXPECT_EQ(PreviewUrl(true, "example.com", 443, 8000, "sb", "abc"), "https://8000-sb-abc.example.com");
  std::string t = RandomToken();
  EXPECT_EQ(t.size(), 16u);
  EXPECT_TRUE(ValidToken(t));
  EXPECT_FALSE(ValidToken(""));
  EXPECT_FALSE(ValidToken("a-b"));
  EXPECT_FALSE(ValidToken("ABC"));
}

TEST(HttpHead, ParsesRequest) {
  std::string text = "GET /x?y HTTP/1.1\r\nHost: a.localhost\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
                     "Content-Length: 5\r\n\r\nhello";
  size_t end = FindHeadEnd(text);
  ASSERT_EQ(text.substr(end), "hello");
  auto head = ParseRequestHead(text.substr(0, end));
  ASSERT_TRUE(head.ok()) << head.error().message;
  EXPECT_EQ(head->method, "GET");
  EXPECT_EQ(head->target, "/x?y");
  auto f = RequestFraming(*head);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->kind, BodyKind::kLength);
  EXPECT_EQ(f->length, 5u);
  StripHopByHop(*head, false);
  EXPECT_FALSE(head->Has("connection"));
  EXPECT_FALSE(head->Has("x-secret"));
  EXPECT_EQ(head->SerializeRequest(), "GET /x?y HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 5\r\n\r\n");
}

TEST(HttpHead, RejectsSmuggling) {
  for (const char* t : {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
                        // The variants of issue #10 (a body read as the next request):
                        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
                        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
                        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n",
                        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
                        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
                        "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"}) {
    auto head = ParseRequestHead(t);
    ASSERT_TRUE(head.ok()) << t;
    EXPECT_FALSE(RequestFraming(*head).ok()) << t;
  }
  for (const char* t : {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n",
                        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"}) {
    auto head = ParseRequestHead(t);
    ASSERT_TRUE(head.ok()) << t;
    EXPECT_TRUE(RequestFraming(*head).ok()) << t;
  }
  for (const char* t : {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
                        "GET / HTTP/2.0\r\nHost: a\r\n\r\n", "GET  HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nA\rB: c\r\n\r\n"})
    EXPECT_FALSE(ParseRequestHead(t).ok()) << t;
}

TEST(HttpHead, ResponseFraming) {
  auto r = ParseResponseHead("HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(ResponseFraming(*r, "GET")->kind, BodyKind::kUntilClose);
  EXPECT_EQ(ResponseFraming(*r, "HEAD")->kind, BodyKind::kNone);
  EXPECT_FALSE(KeepAlive(*r));
  auto c = ParseResponseHead("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(ResponseFraming(*c, "GET")->kind, BodyKind::kChunked);
  EXPECT_TRUE(KeepAlive(*c));
  auto s = ParseResponseHead("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->status, 101);
  EXPECT_EQ(s->reason, "Switching Protocols");
}

TEST(ChunkedScanner, FindsTheEnd) {
  std::string body = "5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\nGET /next";
  for (size_t split = 0; split <= body.size(); ++split) {
    ChunkedScanner s;
    auto a = s.Feed(std::string_view(body).substr(0, split));
    ASSERT_TRUE(a.ok());
    size_t used = *a;
    if (!s.done()) {
      auto b = s.Feed(std::string_view(body).substr(split));
      ASSERT_TRUE(b.ok());
      used += *b;
    }
    EXPECT_TRUE(s.done());
    EXPECT_EQ(body.substr(used), "GET /next") << split;
  }
}

TEST(ChunkedScanner, RejectsGarbage) {
  for (const char* t : {"x\r\n", "5\r\nhelloX", "fffffffffffffffff\r\n"}) {
    ChunkedScanner s;
    EXPECT_FALSE(s.Feed(t).ok()) << t;
  }
}

TEST(SandboxRecord, ExposedPortsRoundTrip) {
  SandboxRecord r;
  r.id = "sb";
  r.ports.push_back({8000, "web", "tok_1", 1234});
  r.ports.push_back({9000, "", "abc", 5678});
  auto back = SandboxRecord::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok()) << back.error().message;
  ASSERT_EQ(back->ports.size(), 2u);
  EXPECT_EQ(back->ports[0].port, 8000);
  EXPECT_EQ(back->ports[0].name, "web");
  EXPECT_EQ(back->ports[0].token, "tok_1");
  EXPECT_EQ(back->ports[1].created_ms, 5678);
  auto old = r.ToJson();
  old.erase("ports");  // records of older versions
  auto legacy = SandboxRecord::FromJson(old);
  ASSERT_TRUE(legacy.ok());
  EXPECT_TRUE(legacy->ports.empty());
}

}  // namespace
}  // namespace cove::preview
