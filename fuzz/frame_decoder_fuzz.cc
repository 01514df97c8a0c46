// agent::FrameDecoder (src/agent/frame.h): the byte stream each side of the
// coved <-> cove-agent connection reads from an untrusted peer.
//
// Input: byte 0 picks the payload limit, bytes 1-4 seed the chunking, the rest
// is the stream. Properties: returned frames respect the limit and have a known
// type; re-encoding them gives back exactly the stream's prefix they came
// from; feeding the stream in random chunks (with ShrinkIfIdle in between)
// gives the same frames and the same verdict as feeding it at once; once
// failed, the decoder stays failed and returns nothing more.
#include <string>
#include <vector>

#include "agent/frame.h"
#include "fuzz.h"

using cove::agent::Frame;
using cove::agent::FrameDecoder;

namespace {

struct Outcome {
  std::vector<Frame> frames;
  bool failed = false;
};

void Drain(FrameDecoder& d, size_t limit, Outcome* out) {
  while (auto f = d.Next()) {
    FUZZ_CHECK(f->payload.size() <= limit);
    auto t = static_cast<uint8_t>(f->type);
    FUZZ_CHECK(t >= 1 && t <= 5);
    out->frames.push_back(std::move(*f));
    FUZZ_CHECK(out->frames.size() <= (1u << 20));
  }
}

Outcome Run(std::string_view stream, size_t limit, uint32_t seed, bool chunked) {
  FrameDecoder d(limit);
  Outcome out;
  cove::fuzz::Chunker chunker(seed);
  size_t i = 0;
  while (i < stream.size() && !out.failed) {
    size_t n = chunked ? chunker.Next(stream.size() - i) : stream.size() - i;
    if (!d.Feed(stream.substr(i, n)).ok()) out.failed = true;
    i += n;
    Drain(d, limit, &out);
    if (chunked && (seed & 1)) d.ShrinkIfIdle();
  }
  // A bad header found by Next() is reported by the next Feed.
  if (!out.failed && !d.Feed({}).ok()) out.failed = true;
  if (out.failed) {
    FUZZ_CHECK(!d.Feed("x").ok());
    FUZZ_CHECK(!d.Next().has_value());
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cove::fuzz::Input in(data, size);
  static constexpr size_t kLimits[] = {0, 1, 5, 16, 255, cove::agent::kMaxAgentFrame, cove::agent::kMaxCovedFrame};
  size_t limit = kLimits[in.Byte() % (sizeof kLimits / sizeof kLimits[0])];
  uint32_t seed = in.U32();
  std::string_view stream = in.Rest();

  Outcome whole = Run(stream, limit, seed, false);
  Outcome pieces = Run(stream, limit, seed, true);

  std::string reencoded;
  for (const Frame& f : whole.frames) cove::agent::EncodeFrame(f.channel, f.type, f.payload, &reencoded);
  FUZZ_CHECK(reencoded.size() <= stream.size());
  FUZZ_CHECK(stream.substr(0, reencoded.size()) == reencoded);

  FUZZ_CHECK(whole.failed == pieces.failed);
  FUZZ_CHECK(whole.frames.size() == pieces.frames.size());
  for (size_t i = 0; i < whole.frames.size(); ++i) {
    FUZZ_CHECK(whole.frames[i].channel == pieces.frames[i].channel);
    FUZZ_CHECK(whole.frames[i].type == pieces.frames[i].type);
    FUZZ_CHECK(whole.frames[i].payload == pieces.frames[i].payload);
  }
  return 0;
}
