// Standard base64 (RFC 4648, with padding).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace cove {

std::string Base64Encode(std::string_view in);
// nullopt if `in` is not valid base64 (whitespace is not allowed).
std::optional<std::string> Base64Decode(std::string_view in);

}  // namespace cove
