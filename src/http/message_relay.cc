#include "http/message_relay.h"

#include <algorithm>

#include <fmt/format.h>

#include "http/chunked_scanner.h"
#include "io/deadline.h"

namespace cove::http {
namespace {

constexpr size_t kBodyChunk = 64 * 1024;
constexpr size_t kHeadChunk = 16 * 1024;

// Writes the first `n` bytes of `data`; false when the destination failed.
Task<bool> Write(io::ByteStream& to, const char* data, size_t n, const std::function<void()>& progress) {
  io::IoError ec;
  co_await to.WriteAll(asio::buffer(data, n), ec);
  if (ec) co_return false;
  if (progress) progress();
  co_return true;
}

}  // namespace

Task<HeadStatus> ReadHead(io::ByteStream& from, std::string& buf, std::chrono::steady_clock::time_point deadline,
                          size_t max_head, std::string* head) {
  std::string tmp;
  for (;;) {
    if (size_t end = FindHeadEnd(buf); end > 0) {
      if (end > max_head) co_return HeadStatus::kTooLarge;
      *head = buf.substr(0, end);
      buf.erase(0, end);
      co_return HeadStatus::kOk;
    }
    if (buf.size() > max_head) co_return HeadStatus::kTooLarge;
    if (tmp.empty()) tmp.resize(kHeadChunk);
    io::IoError ec;
    size_t n = 0;
    {
      io::Deadline guard(from.socket(), deadline);
      n = co_await from.ReadSome(asio::buffer(tmp), ec);
    }
    if (ec || n == 0) co_return HeadStatus::kClosed;
    buf.append(tmp.data(), n);
  }
}

Task<HeadStatus> ReadResponseHead(io::ByteStream& upstream, std::string& buf, std::chrono::steady_clock::duration wait,
                                  size_t max_head, io::ByteStream& client, HttpHead* head, bool* interim_sent) {
  *interim_sent = false;
  for (;;) {
    std::string text;
    HeadStatus status = co_await ReadHead(upstream, buf, std::chrono::steady_clock::now() + wait, max_head, &text);
    if (status != HeadStatus::kOk) co_return status;
    auto parsed = ParseResponseHead(text);
    if (!parsed.ok()) co_return HeadStatus::kMalformed;
    if (parsed->status >= 200 || parsed->status == 101) {
      *head = std::move(*parsed);
      co_return HeadStatus::kOk;
    }
    StripHopByHop(*parsed, false);
    parsed->version_minor = 1;
    std::string out = parsed->SerializeResponse();
    io::IoError ec;
    co_await client.WriteAll(asio::buffer(out), ec);
    if (ec) co_return HeadStatus::kClosed;
    *interim_sent = true;
  }
}

Task<BodyEnd> RelayBody(io::ByteStream& from, std::string& buf, io::ByteStream& to, Framing framing,
                        std::function<void()> progress) {
  io::IoError ec;
  std::string tmp;
  switch (framing.kind) {
    case BodyKind::kNone:
      co_return BodyEnd::kDone;
    case BodyKind::kLength: {
      uint64_t remaining = framing.length;
      if (!buf.empty()) {
        size_t take = static_cast<size_t>(std::min<uint64_t>(remaining, buf.size()));
        if (!co_await Write(to, buf.data(), take, progress)) co_return BodyEnd::kWriteFailed;
        buf.erase(0, take);
        remaining -= take;
      }
      if (remaining > 0) tmp.resize(static_cast<size_t>(std::min<uint64_t>(remaining, kBodyChunk)));
      while (remaining > 0) {
        size_t want = static_cast<size_t>(std::min<uint64_t>(remaining, tmp.size()));
        size_t n = co_await from.ReadSome(asio::buffer(tmp.data(), want), ec);
        if (ec || n == 0) co_return BodyEnd::kReadFailed;
        if (!co_await Write(to, tmp.data(), n, progress)) co_return BodyEnd::kWriteFailed;
        remaining -= n;
      }
      co_return BodyEnd::kDone;
    }
    case BodyKind::kChunked: {
      ChunkedScanner scanner;
      if (!buf.empty()) {
        auto used = scanner.Feed(buf);
        if (!used.ok()) co_return BodyEnd::kReadFailed;
        size_t take = *used;
        if (!co_await Write(to, buf.data(), take, progress)) co_return BodyEnd::kWriteFailed;
        buf.erase(0, take);
      }
      if (!scanner.done()) tmp.resize(kBodyChunk);
      while (!scanner.done()) {
        size_t n = co_await from.ReadSome(asio::buffer(tmp), ec);
        if (ec || n == 0) co_return BodyEnd::kReadFailed;
        auto used = scanner.Feed(std::string_view(tmp.data(), n));
        if (!used.ok()) co_return BodyEnd::kReadFailed;
        size_t take = *used;
        if (!co_await Write(to, tmp.data(), take, progress)) co_return BodyEnd::kWriteFailed;
        if (take < n) buf.append(tmp.data() + take, n - take);
      }
      co_return BodyEnd::kDone;
    }
    case BodyKind::kUntilClose: {
      if (!buf.empty()) {
        if (!co_await Write(to, buf.data(), buf.size(), progress)) co_return BodyEnd::kWriteFailed;
        buf.clear();
      }
      tmp.resize(kBodyChunk);
      for (;;) {
        size_t n = co_await from.ReadSome(asio::buffer(tmp), ec);
        if (ec == asio::error::eof) co_return BodyEnd::kDone;
        if (ec || n == 0) co_return BodyEnd::kReadFailed;
        if (!co_await Write(to, tmp.data(), n, progress)) co_return BodyEnd::kWriteFailed;
      }
    }
  }
  co_return BodyEnd::kReadFailed;
}

Task<BodyEnd> RelayBodyAsChunked(io::ByteStream& from, std::string& buf, io::ByteStream& to,
                                 std::function<void()> progress) {
  // Room for the size line in front of each piece, so that it goes in one write.
  constexpr size_t kSizeLine = 18;
  std::string chunk(kSizeLine + kBodyChunk + 2, '\0');
  auto send = [&](const char* data, size_t n) -> Task<bool> {
    std::string size = fmt::format("{:x}\r\n", n);
    size_t start = kSizeLine - size.size();
    std::copy(size.begin(), size.end(), chunk.begin() + static_cast<std::ptrdiff_t>(start));
    if (data != chunk.data() + kSizeLine) std::copy(data, data + n, chunk.begin() + kSizeLine);
    chunk[kSizeLine + n] = '\r';
    chunk[kSizeLine + n + 1] = '\n';
    co_return co_await Write(to, chunk.data() + start, kSizeLine - start + n + 2, progress);
  };
  while (!buf.empty()) {
    size_t n = std::min(buf.size(), kBodyChunk);
    if (!co_await send(buf.data(), n)) co_return BodyEnd::kWriteFailed;
    buf.erase(0, n);
  }
  io::IoError ec;
  for (;;) {
    size_t n = co_await from.ReadSome(asio::buffer(chunk.data() + kSizeLine, kBodyChunk), ec);
    if (ec == asio::error::eof) break;
    if (ec || n == 0) co_return BodyEnd::kReadFailed;
    if (!co_await send(chunk.data() + kSizeLine, n)) co_return BodyEnd::kWriteFailed;
  }
  static constexpr char kLast[] = "0\r\n\r\n";
  if (!co_await Write(to, kLast, sizeof kLast - 1, progress)) co_return BodyEnd::kWriteFailed;
  co_return BodyEnd::kDone;
}

}  // namespace cove::http
