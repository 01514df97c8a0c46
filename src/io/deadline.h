// Deadline: the one way coved bounds a wait. An absolute time point on one
// executor; when it passes, `on_expiry` runs once (by default: cancel an I/O
// object's pending operations, which then complete with operation_aborted and
// so end the coroutine awaiting them). It can be moved nearer or later and
// cleared at any time:
//
//   asio::ip::udp::socket sock(ex);
//   Deadline guard(sock, Clock::now() + 5s);  // declared after the object it cancels
//   co_await sock.async_receive(...);         // operation_aborted once the deadline passed
//
//   Deadline idle(ex, [this] { Close(); });  // an idle timeout: no time yet
//   idle.Set(Clock::now() + 120s);             // on every bit of progress (cheap when later)
//
// Moving it later costs no timer operation (the timer, when it wakes early,
// sleeps again until the new time), so it may be pushed on every read.
// Destroying it disarms it, even when its timer already fired and the
// completion is still queued: `on_expiry` never runs after the destructor, so
// the object it touches may be destroyed right after. Not thread-safe: use on
// the executor's thread only (the thread of the object it cancels).
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "io/asio.h"

namespace cove::io {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr Clock::time_point kNever = Clock::time_point::max();

  // Runs `on_expiry` on `ex` once `at` has passed (never when kNever).
  Deadline(asio::any_io_executor ex, std::function<void()> on_expiry, Clock::time_point at = kNever);
  // Cancels `object`'s pending operations once `at` has passed. `object` must
  // outlive the Deadline (declare the Deadline after it).
  template <typename IoObject>
  Deadline(IoObject& object, Clock::time_point at)
      : Deadline(
            object.get_executor(),
            [&object] {
              boost::system::error_code ignored;
              object.cancel(ignored);
            },
            at) {}
  ~Deadline();
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  // Moves the deadline to `at`, nearer or later (kNever: cleared). After it
  // fired, a new time arms it again.
  void Set(Clock::time_point at);
  void Clear() { Set(kNever); }
  Clock::time_point at() const { return state_->at; }
  // Whether the time has passed (whether or not `on_expiry` ran yet).
  bool passed() const { return Clock::now() >= state_->at; }
  // Whether `on_expiry` ran for the current time point.
  bool fired() const { return state_->fired; }

 private:
  struct State {
    State(asio::any_io_executor ex, std::function<void()> f) : timer(std::move(ex)), on_expiry(std::move(f)) {}
    asio::steady_timer timer;
    std::function<void()> on_expiry;
    Clock::time_point at = kNever;
    uint64_t generation = 0;  // of the wait the timer holds; older completions are stale
    bool waiting = false;     // a wait is pending, for the timer's expiry
    bool fired = false;
    bool alive = true;  // false once the Deadline is destroyed
  };
  static void Arm(const std::shared_ptr<State>& state);

  std::shared_ptr<State> state_;
};

}  // namespace cove::io
