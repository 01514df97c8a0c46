#include "agent/frame.h"

#include <algorithm>
#include <cstring>

namespace cove::agent {
namespace {

void PutU32(uint32_t v, std::string* out) {
  char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
               static_cast<char>(v >> 24)};
  out->append(b, 4);
}

uint32_t GetU32(const char* p) {
  auto u = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{u[0]} | uint32_t{u[1]} << 8 | uint32_t{u[2]} << 16 | uint32_t{u[3]} << 24;
}

}  // namespace

void EncodeFrame(uint32_t channel, FrameType type, std::string_view payload, std::string* out) {
  PutU32(static_cast<uint32_t>(payload.size() + 5), out);
  PutU32(channel, out);
  out->push_back(static_cast<char>(type));
  out->append(payload);
}

std::string EncodeFrame(uint32_t channel, FrameType type, std::string_view payload) {
  std::string out;
  out.reserve(kFrameHeaderSize + payload.size());
  EncodeFrame(channel, type, payload, &out);
  return out;
}

std::string EncodeWindow(uint32_t bytes) {
  std::string out;
  PutU32(bytes, &out);
  return out;
}

std::optional<uint32_t> DecodeWindow(std::string_view payload) {
  if (payload.size() != 4) return std::nullopt;
  return GetU32(payload.data());
}

Status FrameDecoder::Feed(std::string_view bytes) {
  if (failed_) return MakeError(ErrorCode::kInvalidArgument, "frame stream already failed");
  if (large_) {
    size_t take = std::min(bytes.size(), large_size_ - large_->payload.size());
    large_->payload.append(bytes.data(), take);
    bytes.remove_prefix(take);
    if (bytes.empty()) return OkStatus();
  }
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > (1 << 20) && pos_ > buf_.size() / 2) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
  Status st = Check();
  if (st.ok() && !large_) StartLarge();
  if (st.ok() && !large_ && buf_.size() - pos_ >= 4) {
    // A frame over 64 KiB: grow the buffer once to its final size, not by doubling.
    size_t need = pos_ + 4 + GetU32(buf_.data() + pos_);
    if (need > buf_.capacity() && need - pos_ > (64 << 10)) buf_.reserve(need);
  }
  return st;
}

void FrameDecoder::StartLarge() {
  constexpr size_t kDirectPayload = 256 << 10;
  size_t have = buf_.size() - pos_;
  if (have < kFrameHeaderSize) return;
  uint32_t size = GetU32(buf_.data() + pos_);  // Check() has accepted it and the type
  size_t payload = size - 5;
  if (payload <= kDirectPayload || have >= 4 + size) return;  // small, or already whole
  Frame f;
  f.channel = GetU32(buf_.data() + pos_ + 4);
  f.type = static_cast<FrameType>(buf_[pos_ + 8]);
  f.payload.reserve(payload);
  f.payload.append(buf_, pos_ + kFrameHeaderSize, std::string::npos);
  buf_.clear();
  pos_ = 0;
  large_ = std::move(f);
  large_size_ = payload;
}

Status FrameDecoder::Check() {
  if (buffered() < 4) return OkStatus();
  uint32_t size = GetU32(buf_.data() + pos_);
  if (size < 5 || size - 5 > max_payload_) {
    failed_ = true;
    return MakeError(ErrorCode::kInvalidArgument, "bad frame size " + std::to_string(size));
  }
  if (buffered() >= 9) {
    auto type = static_cast<uint8_t>(buf_[pos_ + 8]);
    if (type < 1 || type > 6) {
      failed_ = true;
      return MakeError(ErrorCode::kInvalidArgument, "bad frame type " + std::to_string(type));
    }
  }
  return OkStatus();
}

void FrameDecoder::ShrinkIfIdle() {
  if (buffered() == 0 && buf_.capacity() > (1 << 20)) {
    std::string().swap(buf_);
    pos_ = 0;
  }
}

std::optional<Frame> FrameDecoder::Next() {
  if (large_) {  // it came before anything in buf_
    if (large_->payload.size() < large_size_) return std::nullopt;
    std::optional<Frame> f = std::move(large_);
    large_.reset();
    return f;
  }
  if (failed_ || buffered() < kFrameHeaderSize) return std::nullopt;
  uint32_t size = GetU32(buf_.data() + pos_);
  if (buffered() < 4 + size) return std::nullopt;
  Frame f;
  f.channel = GetU32(buf_.data() + pos_ + 4);
  f.type = static_cast<FrameType>(buf_[pos_ + 8]);
  if (buf_.size() == pos_ + 4 + size && size > (1 << 20)) {
    // The buffer ends with this large frame: hand it over instead of copying.
    f.payload = std::move(buf_);
    f.payload.erase(0, pos_ + kFrameHeaderSize);
    buf_ = std::string();
    pos_ = 0;
    return f;
  }
  f.payload.assign(buf_.data() + pos_ + 9, size - 5);
  pos_ += 4 + size;
  if (!Check().ok()) return f;  // the next header is bad; Feed will report it
  return f;
}

}  // namespace cove::agent
