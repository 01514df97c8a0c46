// Sandbox ids: 1-63 characters of [a-z0-9-], as a DNS label for preview hostnames.
#pragma once

#include <string>
#include <string_view>

namespace cove {

// Empty when valid; otherwise a message that says what is wrong.
std::string CheckSandboxId(std::string_view id);
// "sb-" followed by 12 random hex digits.
std::string NewSandboxId();

}  // namespace cove
