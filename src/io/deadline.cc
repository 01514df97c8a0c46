#include "io/deadline.h"

namespace cove::io {

Deadline::Deadline(asio::any_io_executor ex, std::function<void()> on_expiry, Clock::time_point at)
    : state_(std::make_shared<State>(std::move(ex), std::move(on_expiry))) {
  Set(at);
}

Deadline::~Deadline() {
  state_->alive = false;
  state_->on_expiry = nullptr;
  state_->timer.cancel();
}

void Deadline::Set(Clock::time_point at) {
  State& s = *state_;
  s.at = at;
  s.fired = false;
  if (at == kNever) return;  // a pending wait finds kNever and stops
  if (s.waiting && s.timer.expiry() <= at) return;  // it wakes first and sleeps on to `at`
  Arm(state_);
}

void Deadline::Arm(const std::shared_ptr<State>& state) {
  State& s = *state;
  s.timer.expires_at(s.at);  // cancels a wait for a later time: its completion is stale
  s.waiting = true;
  uint64_t generation = ++s.generation;
  s.timer.async_wait([state, generation](const boost::system::error_code& ec) {
    State& s = *state;
    if (!s.alive || generation != s.generation) return;
    s.waiting = false;
    if (ec || s.at == kNever || s.fired) return;
    if (Clock::now() < s.at) {  // moved later while the timer slept
      Arm(state);
      return;
    }
    s.fired = true;
    // A copy: on_expiry may destroy the Deadline (and with it the function).
    std::function<void()> f = s.on_expiry;
    if (f) f();
  });
}

}  // namespace cove::io
