// The HTTP/1 layer: strict head parsing, framing, hop-by-hop headers and the
// chunked-body scanner.
#include <gtest/gtest.h>

#include "http/chunked_scanner.h"
#include "http/http_head.h"

namespace cove::http {
namespace {

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

}  // namespace
}  // namespace cove::http
