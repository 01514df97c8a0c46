// The byte-level relay over real TCP connections on loopback: bodies arrive
// byte for byte, and what follows a body stays for the next message.
#include "http/message_relay.h"

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
Outcome Relay(std::string buffered, std::string input, Framing framing) {
  asio::io_context io;
  Pair in = Connected(io), out = Connected(io);
  Outcome outcome;
  asio::co_spawn(io, [&]() -> Task<void> {
    io::IoError ec;
    co_await in.near->WriteAll(asio::buffer(input), ec);
    in.near->ShutdownSend();
  }, asio::detached);
  asio::co_spawn(io, [&]() -> Task<void> {
    outcome.ok = co_await RelayBody(*in.far, buffered, *out.near, framing);
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
