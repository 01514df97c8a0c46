#include "manager/instance_types.h"

namespace cove {
namespace {
constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kGB = 1'000'000'000;
}  // namespace

const std::vector<InstanceType>& InstanceTypes() {
  // Cloudflare Containers' instance types: vCPU share, memory, disk.
  static const std::vector<InstanceType> kTypes = {
      {"lite", {62, 256 * kMiB, 512, 2 * kGB}},
      {"basic", {250, 1 * kGiB, 1024, 4 * kGB}},
      {"standard-1", {500, 4 * kGiB, 2048, 8 * kGB}},
      {"standard-2", {1000, 6 * kGiB, 4096, 12 * kGB}},
      {"standard-3", {2000, 8 * kGiB, 4096, 16 * kGB}},
      {"standard-4", {4000, 12 * kGiB, 8192, 20 * kGB}},
  };
  return kTypes;
}

std::optional<isolation::Limits> LimitsOf(std::string_view instance_type) {
  for (const auto& t : InstanceTypes())
    if (t.name == instance_type) return t.limits;
  return std::nullopt;
}

}  // namespace cove
