// LogThrottle: lets at most one log line through per interval and counts the
// events it held back in between, so that a failure repeating in a loop (an
// accept that fails, a sandbox that keeps being denied) writes one line per
// interval instead of one per event:
//
//   if (auto held = throttle.Pass())
//     log::Warn("accept failed: {} ({} more since the last line)", ec.message(), *held);
//
// Not thread-safe: use from one thread (coved's io thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace cove {

class LogThrottle {
 public:
  using Clock = std::chrono::steady_clock;

  explicit LogThrottle(Clock::duration interval) : interval_(interval) {}

  // Counts one event at `now`. When its line may be written (the first
  // event, or the first one an interval after the last line that passed):
  // the number of events held back since that line; otherwise nullopt.
  std::optional<uint64_t> Pass(Clock::time_point now = Clock::now());

 private:
  Clock::duration interval_;
  std::optional<Clock::time_point> last_line_;
  uint64_t held_ = 0;
};

}  // namespace cove
