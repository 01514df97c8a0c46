// The byte-level relay over real TCP connections on loopback: bodies arrive
// byte for byte (or re-framed as chunks), what follows a body stays for the
// next message, and interim responses pass before the final head.
#include "http/message_relay.h"

#include "http/chunked_scanner.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace cove::http {
namespace {

using tcp = asio::ip::tcp;

struct Pair {
  std::unique_ptr<io::ByteStream> near, far;
};

Pair Connected(asio::io_context& io) {
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  tcp::socket server = acceptor.accept();
  return {io::MakeTcpStream(std::move(client)), io::MakeTcpStream(std::move(server))};
}

// Sends `input` into a relay of one body framed as `framing` (with `buffered`
// already read ahead), closes the sender, and returns what came out, the
// result and what stayed in the read-ahead buffer.
struct Outcome {
  bool ok = false;
  std::string out, left;
};
Outcome Relay(std::string buffered, std::string input, Framing framing, bool as_chunks = false) {
  asio::io_context io;
  Pair in = Connected(io), out = Connected(io);
  Outcome outcome;
  asio::co_spawn(io, [&]() -> Task<void> {
    io::IoError ec;
    co_await in.near->WriteAll(asio::buffer(input), ec);
    in.near->ShutdownSend();
  }, asio::detached);
  asio::co_spawn(io, [&]() -> Task<void> {
    BodyEnd end = as_chunks ? co_await RelayBodyAsChunked(*in.far, buffered, *out.near)
                            : co_await RelayBody(*in.far, buffered, *out.near, framing);
    outcome.ok = end == BodyEnd::kDone;
    outcome.left = buffered;
    out.near->Close();
  }, asio::detached);
  asio::co_spawn(io, [&]() -> Task<void> {
    std::string chunk(4096, '\0');
    while (true) {
      io::IoError ec;
      size_t n = co_await out.far->ReadSome(asio::buffer(chunk), ec);
      if (ec || n == 0) break;
      outcome.out.append(chunk.data(), n);
    }
  }, asio::detached);
  io.run();
  return outcome;
}

TEST(MessageRelay, BodiesStopAtTheirEnd) {
  struct Case {
    std::string buffered, input;
    Framing framing;
    std::string out, left;
  };
  for (const Case& c : std::vector<Case>{
           // The rest of a length body's stream is never read: nothing stays.
           {"0123", "456789GET /next", Framing{BodyKind::kLength, 10}, "0123456789", ""},
           // A chunked body is relayed as it is; the next message stays.
           {"5\r\nhel", "lo\r\n0\r\n\r\nGET /next HTTP/1.1\r\n", Framing{BodyKind::kChunked, 0},
            "5\r\nhello\r\n0\r\n\r\n", "GET /next HTTP/1.1\r\n"},
           {"ab", "cdef", Framing{BodyKind::kUntilClose, 0}, "abcdef", ""}}) {
    Outcome o = Relay(c.buffered, c.input, c.framing);
    EXPECT_TRUE(o.ok) << c.out;
    EXPECT_EQ(o.out, c.out);
    EXPECT_EQ(o.left, c.left);
  }
}

TEST(MessageRelay, CutShortOrMalformedBodiesFail) {
  EXPECT_FALSE(Relay("", "01234", Framing{BodyKind::kLength, 10}).ok);
  EXPECT_FALSE(Relay("", "zz\r\nhello\r\n", Framing{BodyKind::kChunked, 0}).ok);
}

TEST(MessageRelay, ABodyUntilCloseGoesOnAsChunks) {
  std::string input(200 * 1024, 'x');
  for (size_t i = 0; i < input.size(); i += 1000) input[i] = static_cast<char>('a' + i % 26);
  Outcome o = Relay("head start", input, Framing{BodyKind::kUntilClose, 0}, /*as_chunks=*/true);
  ASSERT_TRUE(o.ok);
  // A well-formed chunked body that ends exactly at the end of the output.
  ChunkedScanner scanner;
  auto used = scanner.Feed(o.out);
  ASSERT_TRUE(used.ok());
  EXPECT_TRUE(scanner.done());
  EXPECT_EQ(*used, o.out.size());
  EXPECT_TRUE(o.out.starts_with("a\r\nhead start\r\n")) << o.out.substr(0, 40);
  EXPECT_TRUE(o.out.ends_with("\r\n0\r\n\r\n"));
  // Its data is the input, in order.
  std::string data;
  std::string_view rest = o.out;
  while (true) {
    size_t line = rest.find("\r\n");
    ASSERT_NE(line, std::string_view::npos);
    size_t size = std::stoul(std::string(rest.substr(0, line)), nullptr, 16);
    if (size == 0) break;
    data.append(rest.substr(line + 2, size));
    rest.remove_prefix(line + 2 + size + 2);
  }
  EXPECT_TRUE(data == "head start" + input);
  // Empty: only the last chunk.
  Outcome empty = Relay("", "", Framing{BodyKind::kUntilClose, 0}, true);
  EXPECT_TRUE(empty.ok);
  EXPECT_EQ(empty.out, "0\r\n\r\n");
}

TEST(MessageRelay, InterimResponsesPassBeforeTheFinalHead) {
  asio::io_context io;
  Pair up = Connected(io), client = Connected(io);
  std::string buf;
  HttpHead head;
  bool interim = false;
  HeadStatus status = HeadStatus::kClosed;
  std::string seen;
  asio::co_spawn(io, [&]() -> Task<void> {
    io::IoError ec;
    std::string sent = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n"
                       "Connection: X-Hop\r\nX-Hop: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    co_await up.near->WriteAll(asio::buffer(sent), ec);
  }, asio::detached);
  asio::co_spawn(io, [&]() -> Task<void> {
    status = co_await ReadResponseHead(*up.far, buf, std::chrono::seconds(5), 1024, *client.near, &head, &interim);
    client.near->Close();
  }, asio::detached);
  asio::co_spawn(io, [&]() -> Task<void> {
    std::string chunk(4096, '\0');
    while (true) {
      io::IoError ec;
      size_t n = co_await client.far->ReadSome(asio::buffer(chunk), ec);
      if (ec || n == 0) break;
      seen.append(chunk.data(), n);
    }
  }, asio::detached);
  io.run();
  ASSERT_EQ(status, HeadStatus::kOk);
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(interim);
  EXPECT_EQ(buf, "ok");
  EXPECT_EQ(seen, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n");

  // A head that does not parse is malformed; nothing reaches the client.
  asio::io_context io2;
  Pair up2 = Connected(io2), client2 = Connected(io2);
  buf = "HTTP/1.1 2x0 OK\r\n\r\n";
  asio::co_spawn(io2, [&]() -> Task<void> {
    status = co_await ReadResponseHead(*up2.far, buf, std::chrono::seconds(5), 1024, *client2.near, &head, &interim);
  }, asio::detached);
  io2.run();
  EXPECT_EQ(status, HeadStatus::kMalformed);
  EXPECT_FALSE(interim);
}

TEST(MessageRelay, ReadHeadSplitsTheHeadFromWhatFollows) {
  asio::io_context io;
  Pair p = Connected(io);
  std::string buf = "HTTP/1.1 200 OK\r\nContent-Le", head;
  HeadStatus status = HeadStatus::kClosed;
  asio::co_spawn(io, [&]() -> Task<void> {
    io::IoError ec;
    std::string rest = "ngth: 2\r\n\r\nok";
    co_await p.near->WriteAll(asio::buffer(rest), ec);
  }, asio::detached);
  asio::co_spawn(io, [&]() -> Task<void> {
    status = co_await ReadHead(*p.far, buf, std::chrono::steady_clock::now() + std::chrono::seconds(5), 1024, &head);
  }, asio::detached);
  io.run();
  EXPECT_EQ(status, HeadStatus::kOk);
  EXPECT_EQ(head, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
  EXPECT_EQ(buf, "ok");
  std::string big(2000, 'a');
  asio::io_context io2;
  Pair q = Connected(io2);
  asio::co_spawn(io2, [&]() -> Task<void> {
    status = co_await ReadHead(*q.far, big, std::chrono::steady_clock::now() + std::chrono::seconds(5), 1024, &head);
  }, asio::detached);
  io2.run();
  EXPECT_EQ(status, HeadStatus::kTooLarge);
}

}  // namespace
}  // namespace cove::http
