#include "manager/sandbox_id.h"

#include <sys/random.h>

#include <fmt/format.h>

namespace cove {

std::string CheckSandboxId(std::string_view id) {
  if (id.empty() || id.size() > 63)
    return fmt::format("sandbox id must be 1-63 characters long (got {})", id.size());
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return "sandbox id may contain only lower-case letters, digits and '-'";
  return {};
}

std::string NewSandboxId() {
  unsigned char b[6];
  if (getrandom(b, sizeof b, 0) != sizeof b) return "sb-000000000000";
  return fmt::format("sb-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3], b[4], b[5]);
}

}  // namespace cove
