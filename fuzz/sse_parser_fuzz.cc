// The cove CLI's SSE parser (cli::SseParser, src/cli/http_client.h) and its
// decoding of error envelopes (cli::ErrorFromResponse): what a server, or
// anything between the CLI and coved, sends back.
//
// Input: byte 0 picks the line limit, byte 1 seeds the chunking, the rest is
// the stream (also used as an error body and as a path segment to escape).
// Properties: the events do not depend on how the stream is cut
// into chunks (CRLF split across chunks included); an event's name holds no
// line break and its data no CR; the line limit is enforced.
#include <cctype>
#include <string>
#include <vector>

#include "cli/http_client.h"
#include "fuzz.h"

using cove::cli::SseEvent;
using cove::cli::SseParser;

namespace {

struct Outcome {
  std::vector<SseEvent> events;
  bool failed = false;
};

Outcome Run(std::string_view stream, size_t max_line, uint32_t seed, bool chunked) {
  Outcome out;
  SseParser parser([&out](SseEvent ev) { out.events.push_back(std::move(ev)); }, max_line);
  cove::fuzz::Chunker chunker(seed);
  for (size_t i = 0; i < stream.size();) {
    size_t n = chunked ? chunker.Next(stream.size() - i) : stream.size() - i;
    if (!parser.Feed(stream.substr(i, n)).ok()) {
      out.failed = true;
      break;
    }
    i += n;
  }
  parser.Finish();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cove::fuzz::Input in(data, size);
  static constexpr size_t kLimits[] = {64u << 20, 8, 64};
  size_t max_line = kLimits[in.Byte() % 3];
  uint32_t seed = in.Byte();
  std::string_view stream = in.Rest();

  Outcome whole = Run(stream, max_line, seed, false);
  Outcome pieces = Run(stream, max_line, seed, true);
  for (const SseEvent& ev : whole.events) {
    FUZZ_CHECK(ev.event.find_first_of("\r\n") == std::string::npos);
    FUZZ_CHECK(ev.data.find('\r') == std::string::npos);
    FUZZ_CHECK(ev.data.size() <= stream.size());
  }
  if (max_line >= stream.size()) {
    FUZZ_CHECK(!whole.failed && !pieces.failed);
  }
  if (!whole.failed && !pieces.failed) {
    FUZZ_CHECK(whole.events.size() == pieces.events.size());
    for (size_t i = 0; i < whole.events.size(); ++i) {
      FUZZ_CHECK(whole.events[i].event == pieces.events[i].event);
      FUZZ_CHECK(whole.events[i].data == pieces.events[i].data);
    }
  }

  // The same bytes as the body of an error answer.
  long status = 400 + static_cast<long>(seed % 200);
  cove::Error e = cove::cli::ErrorFromResponse(status, stream);
  FUZZ_CHECK(!e.message.empty());
  (void)cove::cli::ApiCode(e);

  // EscapeSegment (user input -> one URL path segment): only unreserved
  // characters and %XX, never a dot segment, and it decodes back.
  std::string seg = cove::cli::EscapeSegment(stream);
  FUZZ_CHECK(seg != "." && seg != "..");
  std::string decoded;
  for (size_t i = 0; i < seg.size(); ++i) {
    char c = seg[i];
    if (c == '%') {
      FUZZ_CHECK(i + 2 < seg.size());
      FUZZ_CHECK(isxdigit(static_cast<unsigned char>(seg[i + 1])) && isxdigit(static_cast<unsigned char>(seg[i + 2])));
      decoded.push_back(static_cast<char>(std::stoi(seg.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else {
      FUZZ_CHECK(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '~');
      decoded.push_back(c);
    }
  }
  FUZZ_CHECK(decoded == stream);
  return 0;
}
