#include "proxy/sandbox_directory.h"

#include <cstring>

namespace cove::proxy {

std::optional<SandboxEgress> SandboxDirectory::Lookup(const IpAddress& source) const {
  if (source.family != AF_INET) return std::nullopt;
  in_addr a{};
  std::memcpy(&a, source.bytes, 4);
  uint32_t slot = 0;
  if (!plan_.SlotOfSandboxAddress(a, &slot)) return std::nullopt;
  RunningSandboxes::Record record = running_->BySlot(slot);
  if (!record || record->state != SandboxState::kRunning) return std::nullopt;
  return SandboxEgress{record->id, PolicyOf(*record)};
}

}  // namespace cove::proxy
