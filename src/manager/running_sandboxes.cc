#include "manager/running_sandboxes.h"

namespace cove {

RunningSandboxes::Record RunningSandboxes::ById(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

RunningSandboxes::Record RunningSandboxes::BySlot(uint32_t slot) const {
  std::lock_guard lock(mu_);
  auto it = by_slot_.find(slot);
  return it == by_slot_.end() ? nullptr : it->second;
}

size_t RunningSandboxes::size() const {
  std::lock_guard lock(mu_);
  return by_id_.size();
}

RunningSandboxes::Record RunningSandboxes::Publish(const SandboxRecord& record, const Record& previous) {
  auto copy = std::make_shared<const SandboxRecord>(record);  // copied outside the lock
  std::lock_guard lock(mu_);
  EraseLocked(previous);
  by_id_[copy->id] = copy;
  by_slot_[copy->slot] = copy;
  return copy;
}

void RunningSandboxes::Withdraw(const Record& previous) {
  if (!previous) return;
  std::lock_guard lock(mu_);
  EraseLocked(previous);
}

void RunningSandboxes::EraseLocked(const Record& previous) {
  if (!previous) return;
  if (auto it = by_id_.find(previous->id); it != by_id_.end() && it->second == previous) by_id_.erase(it);
  if (auto it = by_slot_.find(previous->slot); it != by_slot_.end() && it->second == previous) by_slot_.erase(it);
}

}  // namespace cove
