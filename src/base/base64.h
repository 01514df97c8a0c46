// Standard base64 (RFC 4648 §4: alphabet A-Z a-z 0-9 + /, '=' padding), the
// one implementation of cove. Pure functions; encoding and decoding run at
// about a byte per cycle (table lookups on whole groups).
#pragma once

#include <optional>
#include <string>
#include <string_view>

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

}  // namespace cove
