// Standard base64 (RFC 4648 §4: alphabet A-Z a-z 0-9 + /, '=' padding), the
// one implementation of cove. Pure functions; encoding and decoding run at
// about a byte per cycle (table lookups on whole groups).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace cove {

// Appends the padded base64 of `in` to *out.
void AppendBase64(std::string_view in, std::string* out);
std::string Base64Encode(std::string_view in);

// Strict: length a multiple of 4, padding only at the end (at most two '='),
// no whitespace, no other characters. nullopt on anything else. Unused bits of
// the last group are ignored, as most decoders do.
std::optional<std::string> Base64Decode(std::string_view in);
// As Base64Decode, but ASCII whitespace anywhere is skipped and the padding
// may be missing (what clients that wrap or trim base64 produce).
std::optional<std::string> Base64DecodeLenient(std::string_view in);

// Incremental decoding of a stream (the CLI's of streamed file contents):
// input may be split anywhere, and padded quads may appear mid-stream (a
// server that encodes each chunk on its own). Accepts the URL-safe alphabet
// too and ignores whitespace.
class Base64Decoder {
 public:
  Status Feed(std::string_view in, std::string* out);
  Status Finish(std::string* out);

 private:
  uint32_t acc_ = 0;
  int n_ = 0;
};

}  // namespace cove
