#include "http/message_relay.h"

#include <algorithm>

#include "http/chunked_scanner.h"
#include "io/cancel_at.h"

namespace cove::http {
namespace {

constexpr size_t kBodyChunk = 64 * 1024;

}  // namespace

Task<HeadStatus> ReadHead(io::ByteStream& from, std::string& buf, std::chrono::steady_clock::time_point deadline,
                          size_t max_head, std::string* head) {
  std::string tmp(16 * 1024, '\0');
  for (;;) {
    if (size_t end = FindHeadEnd(buf); end > 0) {
      if (end > max_head) co_return HeadStatus::kTooLarge;
      *head = buf.substr(0, end);
      buf.erase(0, end);
      co_return HeadStatus::kOk;
    }
    if (buf.size() > max_head) co_return HeadStatus::kTooLarge;
    io::IoError ec;
    size_t n = 0;
    {
      io::CancelAt guard(from.socket(), deadline);
      n = co_await from.ReadSome(asio::buffer(tmp), ec);
    }
    if (ec || n == 0) co_return HeadStatus::kClosed;
    buf.append(tmp.data(), n);
  }
}

Task<bool> RelayBody(io::ByteStream& from, std::string& buf, io::ByteStream& to, Framing framing) {
  io::IoError ec;
  std::string tmp(kBodyChunk, '\0');
  switch (framing.kind) {
    case BodyKind::kNone:
      co_return true;
    case BodyKind::kLength: {
      uint64_t remaining = framing.length;
      if (!buf.empty()) {
        size_t take = static_cast<size_t>(std::min<uint64_t>(remaining, buf.size()));
        co_await to.WriteAll(asio::buffer(buf.data(), take), ec);
        if (ec) co_return false;
        buf.erase(0, take);
        remaining -= take;
      }
      while (remaining > 0) {
        size_t want = static_cast<size_t>(std::min<uint64_t>(remaining, tmp.size()));
        size_t n = co_await from.ReadSome(asio::buffer(tmp.data(), want), ec);
        if (ec || n == 0) co_return false;
        co_await to.WriteAll(asio::buffer(tmp.data(), n), ec);
        if (ec) co_return false;
        remaining -= n;
      }
      co_return true;
    }
    case BodyKind::kChunked: {
      ChunkedScanner scanner;
      if (!buf.empty()) {
        auto used = scanner.Feed(buf);
        if (!used.ok()) co_return false;
        size_t take = *used;
        co_await to.WriteAll(asio::buffer(buf.data(), take), ec);
        if (ec) co_return false;
        buf.erase(0, take);
      }
      while (!scanner.done()) {
        size_t n = co_await from.ReadSome(asio::buffer(tmp), ec);
        if (ec || n == 0) co_return false;
        auto used = scanner.Feed(std::string_view(tmp.data(), n));
        if (!used.ok()) co_return false;
        size_t take = *used;
        co_await to.WriteAll(asio::buffer(tmp.data(), take), ec);
        if (ec) co_return false;
        if (take < n) buf.append(tmp.data() + take, n - take);
      }
      co_return true;
    }
    case BodyKind::kUntilClose: {
      if (!buf.empty()) {
        co_await to.WriteAll(asio::buffer(buf), ec);
        if (ec) co_return false;
        buf.clear();
      }
      for (;;) {
        size_t n = co_await from.ReadSome(asio::buffer(tmp), ec);
        if (ec == asio::error::eof) co_return true;
        if (ec || n == 0) co_return false;
        co_await to.WriteAll(asio::buffer(tmp.data(), n), ec);
        if (ec) co_return false;
      }
    }
  }
  co_return false;
}

}  // namespace cove::http
