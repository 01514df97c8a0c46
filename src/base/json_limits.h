// JsonWithinLimits: a fast pre-check of untrusted JSON text before a full
// parse. Copying or printing a parsed value recurses once per nesting level,
// so deeply nested input must be refused before it is parsed; and a raw NUL
// byte (never valid JSON) would end nlohmann's input early.
#pragma once

#include <string_view>

namespace cove {

inline constexpr int kMaxJsonDepth = 64;

// False when `text` nests arrays/objects deeper than max_depth or holds a NUL
// byte. Does not validate the JSON otherwise.
bool JsonWithinLimits(std::string_view text, int max_depth = kMaxJsonDepth);

}  // namespace cove
