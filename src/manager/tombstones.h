// Tombstones: which sandbox ids were deleted after a given request arrived.
//
// A DELETE must not be undone by a request that was already on its way: the
// compatible routes create an unknown id on first use (get-or-create), and a
// request that arrived before the DELETE answered but reached the sandbox
// lookup after it would bring the sandbox back. So every request takes an
// Arrival when coved has read its head, every answered DELETE buries its id at
// the next sequence number, and a get-or-create refuses to create an id buried
// after the request's arrival. Requests that arrive after the DELETE answered
// create it again, as Cloudflare's getSandbox does.
//
// Graves are kept only while a request that arrived before them is alive, so
// memory is bounded by what is in flight. Thread-safe (one mutex: requests
// arrive on every io thread); an Arrival may outlive its Tombstones.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <string>

namespace cove {

class Tombstones {
  struct State;

 public:
  // The moment a request arrived; releases its hold on graves when destroyed.
  // A default-constructed Arrival means "now": it is never refused.
  class Arrival {
   public:
    Arrival() = default;
    Arrival(Arrival&& o) noexcept : state_(std::move(o.state_)), seq_(o.seq_) {}
    Arrival& operator=(Arrival&& o) noexcept;
    ~Arrival() { Release(); }
    bool stamped() const { return state_ != nullptr; }

   private:
    friend class Tombstones;
    Arrival(std::shared_ptr<State> state, uint64_t seq) : state_(std::move(state)), seq_(seq) {}
    void Release();
    std::shared_ptr<State> state_;
    uint64_t seq_ = 0;
  };

  Tombstones();
  // Stamps a request arriving now.
  Arrival Arrive();
  // The DELETE of `id` answers now.
  void Bury(const std::string& id);
  // True when `id` was buried after `arrival` (so a get-or-create must not create it).
  bool BuriedSince(const std::string& id, const Arrival& arrival) const;
  // Graves held (tests).
  size_t size() const;

 private:
  struct State {
    std::mutex mu;                           // guards what follows
    uint64_t seq = 0;                        // sequence of the last burial
    std::multiset<uint64_t> live;            // sequences of the arrivals alive
    std::map<std::string, uint64_t> graves;  // id -> sequence of its burial
    std::map<uint64_t, std::string> by_seq;  // the same graves by sequence
    void Prune();                            // drops graves no live arrival predates
  };
  std::shared_ptr<State> state_;
};

}  // namespace cove
