// ParseJson: a strict, allocation-frugal JSON parser producing nlohmann::json.
//
// nlohmann's own parser keeps two growing copies of every token (its token
// buffer and the raw token string for error messages), so a 44 MB string
// field (a 32 MiB file.write in base64) costs ~200 MB of peak memory. This
// parser sizes each string exactly once. It accepts exactly RFC 8259 JSON
// (UTF-8 validated, no trailing garbage, nesting depth <= max_depth) and returns
// nullopt for anything else. Strings are scanned, validated and unescaped 16
// or 32 bytes at a time, so a large file body in a request costs a few fast
// passes over it.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string_view>

namespace cove {

std::optional<nlohmann::json> ParseJson(std::string_view text, int max_depth = 128);

}  // namespace cove
