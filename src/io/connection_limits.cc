#include "io/connection_limits.h"

#include <sys/resource.h>

#include <algorithm>

namespace cove::io {

ConnectionLimits LimitsForFdLimit(uint64_t fd_limit) {
  constexpr uint64_t kCeiling = uint64_t{1} << 24;  // RLIM_INFINITY and the like
  return LimitsForListenerCap(static_cast<size_t>(std::max<uint64_t>(std::min(fd_limit, kCeiling) / 4, 16)));
}

ConnectionLimits LimitsForListenerCap(size_t max_connections) {
  return ConnectionLimits{max_connections, std::max<size_t>(max_connections / 4, 4)};
}

ConnectionLimits DefaultConnectionLimits() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return LimitsForFdLimit(1024);
  return LimitsForFdLimit(limit.rlim_cur);
}

}  // namespace cove::io
