// ChunkedScanner: finds where a chunked body (RFC 9112 §7.1) ends, without
// changing it, so that the proxy can relay it byte for byte and still know
// where the next message starts. Bounds the size lines, extensions and
// trailers (kInvalidArgument when exceeded or malformed).
#pragma once

#include <cstdint>
#include <string_view>

#include "base/error.h"

namespace cove::http {

class ChunkedScanner {
 public:
  // Consumes a prefix of data: all of it, or up to the end of the body.
  // Returns how many bytes belong to the body.
  Result<size_t> Feed(std::string_view data);
  bool done() const { return state_ == State::kDone; }

 private:
  enum class State { kSize, kExtension, kSizeLf, kData, kDataCr, kDataLf, kTrailerStart, kTrailer, kTrailerLf,
                     kFinalLf, kDone };
  State state_ = State::kSize;
  uint64_t remaining_ = 0;
  int size_digits_ = 0;
  size_t line_bytes_ = 0;     // of the current extension or trailer line
  size_t trailer_bytes_ = 0;  // of all trailers
};

}  // namespace cove::http
