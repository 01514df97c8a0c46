#include "manager/tombstones.h"

namespace cove {

Tombstones::Arrival& Tombstones::Arrival::operator=(Arrival&& o) noexcept {
  if (this != &o) {
    Release();
    state_ = std::move(o.state_);
    seq_ = o.seq_;
  }
  return *this;
}

void Tombstones::Arrival::Release() {
  if (!state_) return;
  std::lock_guard lock(state_->mu);
  if (auto it = state_->live.find(seq_); it != state_->live.end()) state_->live.erase(it);
  state_->Prune();
  state_.reset();
}

Tombstones::Tombstones() : state_(std::make_shared<State>()) {}

Tombstones::Arrival Tombstones::Arrive() {
  std::lock_guard lock(state_->mu);
  state_->live.insert(state_->seq);
  return Arrival(state_, state_->seq);
}

void Tombstones::Bury(const std::string& id) {
  std::lock_guard lock(state_->mu);
  uint64_t seq = ++state_->seq;
  if (auto it = state_->graves.find(id); it != state_->graves.end()) {
    state_->by_seq.erase(it->second);
    it->second = seq;
  } else {
    state_->graves.emplace(id, seq);
  }
  state_->by_seq.emplace(seq, id);
  state_->Prune();
}

bool Tombstones::BuriedSince(const std::string& id, const Arrival& arrival) const {
  if (!arrival.stamped()) return false;
  std::lock_guard lock(state_->mu);
  auto it = state_->graves.find(id);
  return it != state_->graves.end() && it->second > arrival.seq_;
}

size_t Tombstones::size() const {
  std::lock_guard lock(state_->mu);
  return state_->graves.size();
}

void Tombstones::State::Prune() {
  // A grave matters only to arrivals older than it; later ones may create the id again.
  const uint64_t oldest = live.empty() ? seq : *live.begin();
  while (!by_seq.empty() && by_seq.begin()->first <= oldest) {
    graves.erase(by_seq.begin()->second);
    by_seq.erase(by_seq.begin());
  }
}

}  // namespace cove
