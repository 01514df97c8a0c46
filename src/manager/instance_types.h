// Instance types: named limit sets, Cloudflare's table by default.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "isolation/spec.h"

namespace cove {

struct InstanceType {
  std::string name;
  isolation::Limits limits;
};

const std::vector<InstanceType>& InstanceTypes();
std::optional<isolation::Limits> LimitsOf(std::string_view instance_type);
inline constexpr std::string_view kDefaultInstanceType = "basic";

}  // namespace cove
