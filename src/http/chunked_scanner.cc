#include "http/chunked_scanner.h"

namespace cove::http {
namespace {

constexpr size_t kMaxLine = 8 * 1024;
constexpr size_t kMaxTrailers = 64 * 1024;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Error Bad(const char* why) { return MakeError(ErrorCode::kInvalidArgument, why); }

}  // namespace

Result<size_t> ChunkedScanner::Feed(std::string_view data) {
  size_t i = 0;
  while (i < data.size() && state_ != State::kDone) {
    char c = data[i];
    switch (state_) {
      case State::kSize: {
        int v = HexValue(c);
        if (v >= 0) {
          if (++size_digits_ > 15) return Bad("chunk size too large");
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(v);
        } else if (size_digits_ == 0) {
          return Bad("chunk size expected");
        } else if (c == ';' || c == ' ' || c == '\t') {
          state_ = State::kExtension;
          line_bytes_ = 0;
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (c == '\n') {
          state_ = remaining_ ? State::kData : State::kTrailerStart;
        } else {
          return Bad("bad chunk size");
        }
        ++i;
        break;
      }
      case State::kExtension:
        if (++line_bytes_ > kMaxLine) return Bad("chunk extension too long");
        if (c == '\n') state_ = remaining_ ? State::kData : State::kTrailerStart;
        else if (c == '\r') state_ = State::kSizeLf;
        ++i;
        break;
      case State::kSizeLf:
        if (c != '\n') return Bad("CR without LF after a chunk size");
        state_ = remaining_ ? State::kData : State::kTrailerStart;
        ++i;
        break;
      case State::kData: {
        uint64_t take = std::min<uint64_t>(remaining_, data.size() - i);
        remaining_ -= take;
        i += take;
        if (remaining_ == 0) state_ = State::kDataCr;
        break;
      }
      case State::kDataCr:
        if (c == '\r') state_ = State::kDataLf;
        else if (c == '\n') state_ = State::kSize, size_digits_ = 0;
        else return Bad("chunk data longer than its size");
        ++i;
        break;
      case State::kDataLf:
        if (c != '\n') return Bad("CR without LF after chunk data");
        state_ = State::kSize;
        size_digits_ = 0;
        ++i;
        break;
      case State::kTrailerStart:
        if (c == '\r') state_ = State::kFinalLf;
        else if (c == '\n') state_ = State::kDone;
        else state_ = State::kTrailer, line_bytes_ = 1, ++trailer_bytes_;
        ++i;
        break;
      case State::kTrailer:
        if (++line_bytes_ > kMaxLine || ++trailer_bytes_ > kMaxTrailers) return Bad("chunked trailers too long");
        if (c == '\n') state_ = State::kTrailerStart;
        else if (c == '\r') state_ = State::kTrailerLf;
        ++i;
        break;
      case State::kTrailerLf:
        if (c != '\n') return Bad("CR without LF in a trailer");
        state_ = State::kTrailerStart;
        ++i;
        break;
      case State::kFinalLf:
        if (c != '\n') return Bad("CR without LF at the end of a chunked body");
        state_ = State::kDone;
        ++i;
        break;
      case State::kDone:
        break;
    }
  }
  return i;
}

}  // namespace cove::http
