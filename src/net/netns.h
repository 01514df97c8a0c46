// Network namespaces made by coved in the host's user namespace, so that root
// inside a sandbox (which lives in its own user namespace) holds no
// CAP_NET_ADMIN over its network. setns(CLONE_NEWNET) is per thread: these
// helpers move only the calling thread, and always move it back.
#pragma once

#include <functional>

#include "base/error.h"
#include "sys/unique_fd.h"

namespace cove::net {

// A new, empty network namespace (loopback down); the calling thread stays
// in its own.
Result<UniqueFd> CreateNetns();

// Runs fn with the calling thread inside `netns_fd`, then returns the thread
// to its own namespace (sockets fn opens stay in `netns_fd`). A thread that
// cannot return aborts the process: it would act in the wrong network.
Status RunInNetns(int netns_fd, const std::function<Status()>& fn);

}  // namespace cove::net
