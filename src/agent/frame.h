// The framed stream between coved and cove-agent (one per sandbox).
//
// Wire format, little-endian:  u32 size | u32 channel | u8 type | payload
// where size counts channel+type+payload (so size >= 5). A channel is one
// request and everything that answers it; coved picks channel numbers.
// See docs/agent-protocol.md for the messages carried in payloads.
//
// FrameDecoder never trusts its input: a frame larger than its limit, or a
// size below the header size, poisons the decoder and it reports an error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace cove::agent {

enum class FrameType : uint8_t {
  kRequest = 1,  // coved -> agent: JSON request, opens a channel
  kEvent = 2,    // agent -> coved: JSON event, channel stays open
  kReply = 3,    // agent -> coved: JSON final answer, closes the channel
  kCancel = 4,   // coved -> agent: abandon the channel (kill what it runs)
  kData = 5,     // raw bytes on an open channel: coved -> agent for uploads; agent -> coved for
                 // a file.read with rawData:true (counted against the channel's credit)
  kWindow = 6,   // coved -> agent: u32 LE, bytes the channel may send more (credit)
};

struct Frame {
  uint32_t channel = 0;
  FrameType type = FrameType::kRequest;
  std::string payload;
};

inline constexpr size_t kFrameHeaderSize = 9;
// Largest payload the agent may send to coved (a rich result of a code context
// with a large image is the biggest single message).
inline constexpr size_t kMaxAgentFrame = 16 << 20;
// Largest payload coved sends to the agent (a whole 32 MiB file write in JSON).
inline constexpr size_t kMaxCovedFrame = 64 << 20;

// Flow control per channel, as HTTP/2 and SSH channels have: the agent may send
// Event payloads on a channel while its credit is positive (one event may
// overdraw it); each channel starts with kChannelWindow of credit and coved
// returns credit with Window frames as its consumer takes the events. Replies
// need no credit. So one slow consumer stalls only its own producer.
inline constexpr size_t kChannelWindow = 256 << 10;

// Window frame payload.
std::string EncodeWindow(uint32_t bytes);
// The credit a Window frame grants, or nullopt if its payload is malformed.
std::optional<uint32_t> DecodeWindow(std::string_view payload);

// Appends the encoded frame to out.
void EncodeFrame(uint32_t channel, FrameType type, std::string_view payload, std::string* out);
std::string EncodeFrame(uint32_t channel, FrameType type, std::string_view payload);

class FrameDecoder {
 public:
  explicit FrameDecoder(size_t max_payload) : max_payload_(max_payload) {}

  // Appends received bytes. Returns an error (and stays failed) on a
  // malformed header.
  Status Feed(std::string_view bytes);
  // The next complete frame, if any.
  std::optional<Frame> Next();
  // Releases the buffer's memory when nothing is buffered (after a large frame).
  void ShrinkIfIdle();
  // Bytes buffered but not yet returned as frames.
  size_t buffered() const { return buf_.size() - pos_ + (large_ ? kFrameHeaderSize + large_->payload.size() : 0); }

 private:
  Status Check();
  void StartLarge();

  size_t max_payload_;
  std::string buf_;
  size_t pos_ = 0;
  bool failed_ = false;
  // A frame larger than kDirectPayload whose header has arrived: the rest of
  // its payload is received straight into it (not through buf_, then copied).
  std::optional<Frame> large_;
  size_t large_size_ = 0;  // its payload's size
};

}  // namespace cove::agent
