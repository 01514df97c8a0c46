#include "base/log_throttle.h"

#include <gtest/gtest.h>

namespace cove {
namespace {

using namespace std::chrono_literals;

TEST(LogThrottleTest, OneLinePerIntervalWithTheCountHeldBack) {
  LogThrottle throttle(10s);
  LogThrottle::Clock::time_point t0{};
  EXPECT_EQ(throttle.Pass(t0), 0u);  // the first event is written
  for (int i = 1; i <= 1000; ++i) EXPECT_EQ(throttle.Pass(t0 + i * 9ms), std::nullopt);
  EXPECT_EQ(throttle.Pass(t0 + 10s), 1000u);  // the next line says how many were held back
  EXPECT_EQ(throttle.Pass(t0 + 10s + 1ms), std::nullopt);
  EXPECT_EQ(throttle.Pass(t0 + 25s), 1u);
}

TEST(LogThrottleTest, QuietPeriodsStartAfresh) {
  LogThrottle throttle(10s);
  LogThrottle::Clock::time_point t0{};
  EXPECT_EQ(throttle.Pass(t0), 0u);
  EXPECT_EQ(throttle.Pass(t0 + 1h), 0u);
  EXPECT_EQ(throttle.Pass(t0 + 2h), 0u);
}

}  // namespace
}  // namespace cove
