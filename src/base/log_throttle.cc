#include "base/log_throttle.h"

namespace cove {

std::optional<uint64_t> LogThrottle::Pass(Clock::time_point now) {
  if (last_line_ && now - *last_line_ < interval_) {
    ++held_;
    return std::nullopt;
  }
  last_line_ = now;
  uint64_t held = held_;
  held_ = 0;
  return held;
}

}  // namespace cove
