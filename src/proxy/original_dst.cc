#include "proxy/original_dst.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>

namespace cove::proxy {
namespace {
// <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h> define
// these; both headers clash with glibc's, so the values are spelled here.
constexpr int kSoOriginalDst = 80;
constexpr int kIp6tSoOriginalDst = 80;
}  // namespace

Result<OriginalDestination> GetOriginalDestination(int fd, int family) {
  OriginalDestination out;
  if (family == AF_INET) {
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    if (getsockopt(fd, SOL_IP, kSoOriginalDst, &sa, &len) != 0) {
      Error e = SysError("getsockopt(SO_ORIGINAL_DST)");
      if (e.sys_errno == ENOENT) e.code = ErrorCode::kNotFound;
      return e;
    }
    out.address.family = AF_INET;
    std::memcpy(out.address.bytes, &sa.sin_addr, 4);
    out.port = ntohs(sa.sin_port);
    return out;
  }
  sockaddr_in6 sa{};
  socklen_t len = sizeof sa;
  if (getsockopt(fd, SOL_IPV6, kIp6tSoOriginalDst, &sa, &len) != 0) {
    Error e = SysError("getsockopt(IP6T_SO_ORIGINAL_DST)");
    if (e.sys_errno == ENOENT) e.code = ErrorCode::kNotFound;
    return e;
  }
  out.address.family = AF_INET6;
  std::memcpy(out.address.bytes, &sa.sin6_addr, 16);
  out.port = ntohs(sa.sin6_port);
  return out;
}

}  // namespace cove::proxy
