#include "io/connection_registry.h"

#include <mutex>

namespace cove::io {

struct ConnectionRegistry::Entry {
  std::string key;
  std::function<void()> close;
  bool counted = true;
  bool idle = false;
  std::list<Entry*>::iterator in_idle;      // State::idle, while idle
  std::list<Entry*>::iterator in_key_idle;  // PerKey::idle, while idle
};

struct ConnectionRegistry::State {
  struct PerKey {
    size_t count = 0;
    std::list<Entry*> idle;  // longest idle first
  };
  mutable std::mutex mu;  // guards everything below, and the entries
  ConnectionLimits limits;
  size_t total = 0;
  std::list<Entry*> idle;  // longest idle first, all keys
  std::unordered_map<std::string, PerKey> keys;

  void MarkIdle(Entry* e) {
    if (!e->counted || e->idle) return;
    e->idle = true;
    e->in_idle = idle.insert(idle.end(), e);
    auto& k = keys[e->key];
    e->in_key_idle = k.idle.insert(k.idle.end(), e);
  }
  void MarkBusy(Entry* e) {
    if (!e->counted || !e->idle) return;
    e->idle = false;
    idle.erase(e->in_idle);
    keys[e->key].idle.erase(e->in_key_idle);
  }
  void Uncount(Entry* e) {
    if (!e->counted) return;
    MarkBusy(e);
    e->counted = false;
    --total;
    auto it = keys.find(e->key);
    if (--it->second.count == 0) keys.erase(it);
  }
  // Uncounts `e` and returns its closer, for the caller to run once it has
  // let go of `mu`: with the books already balanced, whatever it triggers
  // sees the room made (and may use the registry).
  std::function<void()> Shed(Entry* e) {
    Uncount(e);
    auto close = std::move(e->close);
    e->close = nullptr;
    return close;
  }
};

namespace {
void Run(const std::function<void()>& fn) {
  if (fn) fn();
}
}  // namespace

ConnectionRegistry::Slot::Slot(std::shared_ptr<State> state, std::unique_ptr<Entry> entry)
    : state_(std::move(state)), entry_(std::move(entry)) {}

ConnectionRegistry::Slot::Slot(Slot&&) noexcept = default;

ConnectionRegistry::Slot& ConnectionRegistry::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    if (entry_) {
      std::lock_guard lock(state_->mu);
      state_->Uncount(entry_.get());
    }
    state_ = std::move(other.state_);
    entry_ = std::move(other.entry_);
  }
  return *this;
}

ConnectionRegistry::Slot::~Slot() {
  if (!entry_) return;
  std::lock_guard lock(state_->mu);
  state_->Uncount(entry_.get());
}

void ConnectionRegistry::Slot::Idle() {
  if (!entry_) return;
  std::lock_guard lock(state_->mu);
  state_->MarkIdle(entry_.get());
}

void ConnectionRegistry::Slot::Busy() {
  if (!entry_) return;
  std::lock_guard lock(state_->mu);
  state_->MarkBusy(entry_.get());
}

void ConnectionRegistry::Slot::SetCloser(std::function<void()> close) {
  if (!entry_) return;
  std::lock_guard lock(state_->mu);
  if (entry_->counted) entry_->close = std::move(close);
}

bool ConnectionRegistry::Slot::shed() const {
  if (!entry_) return false;
  std::lock_guard lock(state_->mu);
  return !entry_->counted;
}

ConnectionRegistry::ConnectionRegistry(ConnectionLimits limits) : state_(std::make_shared<State>()) {
  state_->limits = limits;
}

ConnectionRegistry::~ConnectionRegistry() = default;

std::optional<ConnectionRegistry::Slot> ConnectionRegistry::Admit(const std::string& key,
                                                                  std::function<void()> close) {
  State& s = *state_;
  std::function<void()> closers[2];  // run once the lock is let go
  std::optional<Slot> slot;
  {
    std::lock_guard lock(s.mu);
    bool room = true;
    if (auto it = s.keys.find(key); it != s.keys.end() && it->second.count >= s.limits.max_per_key) {
      if (it->second.idle.empty()) {
        room = false;
      } else {
        closers[0] = s.Shed(it->second.idle.front());
      }
    }
    if (room && s.total >= s.limits.max_connections) {
      if (s.idle.empty()) {
        room = false;
      } else {
        closers[1] = s.Shed(s.idle.front());
      }
    }
    if (room) {
      auto entry = std::make_unique<Entry>();
      entry->key = key;
      entry->close = std::move(close);
      ++s.total;
      ++s.keys[key].count;
      s.MarkIdle(entry.get());
      slot.emplace(Slot(state_, std::move(entry)));
    }
  }
  for (auto& c : closers) Run(c);
  return slot;
}

bool ConnectionRegistry::ShedOldestIdle() {
  std::function<void()> close;
  {
    std::lock_guard lock(state_->mu);
    if (state_->idle.empty()) return false;
    close = state_->Shed(state_->idle.front());
  }
  Run(close);
  return true;
}

size_t ConnectionRegistry::size() const {
  std::lock_guard lock(state_->mu);
  return state_->total;
}

size_t ConnectionRegistry::idle() const {
  std::lock_guard lock(state_->mu);
  return state_->idle.size();
}

size_t ConnectionRegistry::count(const std::string& key) const {
  std::lock_guard lock(state_->mu);
  auto it = state_->keys.find(key);
  return it == state_->keys.end() ? 0 : it->second.count;
}

const ConnectionLimits& ConnectionRegistry::limits() const { return state_->limits; }

}  // namespace cove::io
