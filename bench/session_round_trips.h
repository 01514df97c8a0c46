// SessionRoundTrips: session exec round trips per second of one client thread
// per entry of `sandbox_paths` ("/v1/sandboxes/ID"), each running `true` in
// its own session ("c<i>") on its own kept-alive connection, for `seconds`.
// Exits the process if a session does not start.
#pragma once

#include <string>
#include <vector>

#include "bench/bench_daemon.h"

namespace cove::bench {

double SessionRoundTrips(const BenchDaemon& d, const std::vector<std::string>& sandbox_paths, int seconds);

}  // namespace cove::bench
