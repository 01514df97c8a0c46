// Clocks and timestamps.
#pragma once

#include <cstdint>
#include <string>

namespace cove {

// Milliseconds since the Unix epoch (wall clock).
int64_t NowUnixMs();
// Monotonic nanoseconds, for measuring durations.
int64_t MonotonicNs();
// ISO 8601 UTC with milliseconds, e.g. "2026-11-27T01:40:14.123Z".
std::string IsoTimestamp(int64_t unix_ms);
inline std::string IsoNow() { return IsoTimestamp(NowUnixMs()); }

}  // namespace cove
