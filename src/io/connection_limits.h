// ConnectionLimits: how many connections one listener (or group of listeners
// sharing caps) keeps open, in all and per key (the client address, or the
// sandbox behind it), and the defaults coved derives from its file limit.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cove::io {

struct ConnectionLimits {
  size_t max_connections = 1024;  // in the registry
  size_t max_per_key = 256;       // under one key
};

// The default caps for a process that may open `fd_limit` descriptors
// (RLIMIT_NOFILE): a quarter of them per listener (at least 16), so that a
// flood on one listener leaves the others, the sandboxes' agent connections
// and the state files their descriptors; per key as LimitsForListenerCap.
ConnectionLimits LimitsForFdLimit(uint64_t fd_limit);

// `max_connections` per listener and a quarter of it (at least 4) per key, so
// that one client cannot take a listener's every slot.
ConnectionLimits LimitsForListenerCap(size_t max_connections);

// LimitsForFdLimit of this process's soft RLIMIT_NOFILE.
ConnectionLimits DefaultConnectionLimits();

}  // namespace cove::io
