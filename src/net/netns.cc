#include "net/netns.h"

#include <fcntl.h>
#include <sched.h>

#include <cstdlib>
#include <cstring>

#include "base/log.h"

namespace cove::net {
namespace {

Result<UniqueFd> OwnNetns() {
  UniqueFd fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!fd) return SysError("open /proc/thread-self/ns/net");
  return fd;
}

void Return(int own) {
  if (::setns(own, CLONE_NEWNET) != 0) {
    log::Error("cannot return a thread to its network namespace: {}", std::strerror(errno));
    std::abort();
  }
}

}  // namespace

Result<UniqueFd> CreateNetns() {
  COVE_ASSIGN_OR_RETURN(UniqueFd own, OwnNetns());
  if (::unshare(CLONE_NEWNET) != 0) return SysError("unshare(CLONE_NEWNET)");
  UniqueFd fresh(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  int err = errno;
  Return(own.get());
  if (!fresh) return SysError("open new network namespace", err);
  return fresh;
}

Status RunInNetns(int netns_fd, const std::function<Status()>& fn) {
  COVE_ASSIGN_OR_RETURN(UniqueFd own, OwnNetns());
  if (::setns(netns_fd, CLONE_NEWNET) != 0) return SysError("setns to a sandbox network namespace");
  Status s = fn();
  Return(own.get());
  return s;
}

}  // namespace cove::net
