// FlowBudget: the bound on agent output that coved holds for all sandboxes
// together. Each agent call takes one channel window (agent::kChannelWindow)
// from it before it grants the agent any credit, and gives it back when the
// call ends; so output received and not yet consumed, plus output granted and
// not yet received, stays under the limit (each call may overdraw by one
// event). A call that finds the budget spent waits in line: its replies still
// arrive, its events wait until another call ends.
//
// Not thread-safe: coved's io thread only.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>

namespace cove {

class FlowBudget {
 public:
  explicit FlowBudget(size_t limit) : limit_(limit) {}

  // Takes n bytes if they fit and nobody waits before; otherwise queues
  // `retry`, which runs once when bytes are released (and may Take again).
  bool Take(size_t n, std::function<void()> retry) {
    if (waiting_.empty() && used_ + n <= limit_) {
      used_ += n;
      return true;
    }
    waiting_.push_back(std::move(retry));
    return false;
  }

  void Release(size_t n) {
    used_ -= n < used_ ? n : used_;
    auto waiting = std::move(waiting_);  // those that still do not fit queue again
    waiting_.clear();
    for (auto& retry : waiting) retry();
  }

  size_t used() const { return used_; }
  size_t limit() const { return limit_; }

 private:
  size_t limit_;
  size_t used_ = 0;
  std::deque<std::function<void()>> waiting_;
};

}  // namespace cove
