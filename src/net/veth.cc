#include "net/veth.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>
#include <memory>

#include "base/scope_exit.h"
#include "net/netns.h"
#include "sys/io.h"
#include "sys/unique_fd.h"

namespace cove::net {
namespace {

struct NlSockDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
using NlSock = std::unique_ptr<nl_sock, NlSockDeleter>;
struct LinkDeleter {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
using Link = std::unique_ptr<rtnl_link, LinkDeleter>;
struct NlAddrDeleter {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
using NlAddr = std::unique_ptr<nl_addr, NlAddrDeleter>;

Error NlError(const std::string& what, int err) {
  // libnl errors are negative NLE_* codes, not errnos.
  ErrorCode code = err == -NLE_EXIST ? ErrorCode::kAlreadyExists
                   : err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV ? ErrorCode::kNotFound
                                                                    : ErrorCode::kInternal;
  return MakeError(code, what + ": " + nl_geterror(err));
}

// A route socket in the calling thread's current network namespace.
Result<NlSock> RouteSocket() {
  NlSock s(nl_socket_alloc());
  if (!s) return MakeError(ErrorCode::kResourceExhausted, "nl_socket_alloc failed");
  if (int err = nl_connect(s.get(), NETLINK_ROUTE); err < 0) return NlError("connect rtnetlink", err);
  return s;
}

Result<NlAddr> ParseAddr(const std::string& text) {
  nl_addr* a = nullptr;
  if (int err = nl_addr_parse(text.c_str(), AF_INET, &a); err < 0) return NlError("parse " + text, err);
  return NlAddr(a);
}

Status SetUp(const char* name) {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return SysError("socket");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) return SysError(std::string("get flags of ") + name);
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0) return SysError(std::string("bring up ") + name);
  return OkStatus();
}

// Writes a sysctl of the calling thread's network namespace.
Status WriteSysctl(const std::string& path, std::string_view value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return SysError("open " + path);
  return sys::WriteAll(fd.get(), value);
}

Status NoIpv6(const std::string& iface) { return WriteSysctl("/proc/sys/net/ipv6/conf/" + iface + "/disable_ipv6", "1"); }

// Address `local`/31 with `peer` on `iface` (in the current namespace).
Status AddAddress(nl_sock* sock, const std::string& iface, const std::string& local) {
  unsigned idx = if_nametoindex(iface.c_str());
  if (idx == 0) return SysError("if_nametoindex " + iface);
  std::unique_ptr<rtnl_addr, void (*)(rtnl_addr*)> a(rtnl_addr_alloc(), rtnl_addr_put);
  if (!a) return MakeError(ErrorCode::kResourceExhausted, "rtnl_addr_alloc failed");
  COVE_ASSIGN_OR_RETURN(NlAddr l, ParseAddr(local + "/31"));
  rtnl_addr_set_ifindex(a.get(), static_cast<int>(idx));
  if (int err = rtnl_addr_set_local(a.get(), l.get()); err < 0) return NlError("set address", err);
  if (int err = rtnl_addr_add(sock, a.get(), 0); err < 0) return NlError("add address " + local + " to " + iface, err);
  return OkStatus();
}

Status AddDefaultRoute(nl_sock* sock, const std::string& iface, const std::string& gateway) {
  unsigned idx = if_nametoindex(iface.c_str());
  if (idx == 0) return SysError("if_nametoindex " + iface);
  std::unique_ptr<rtnl_route, void (*)(rtnl_route*)> r(rtnl_route_alloc(), rtnl_route_put);
  if (!r) return MakeError(ErrorCode::kResourceExhausted, "rtnl_route_alloc failed");
  COVE_ASSIGN_OR_RETURN(NlAddr dst, ParseAddr("0.0.0.0/0"));
  COVE_ASSIGN_OR_RETURN(NlAddr gw, ParseAddr(gateway));
  rtnl_route_set_family(r.get(), AF_INET);
  if (int err = rtnl_route_set_dst(r.get(), dst.get()); err < 0) return NlError("route dst", err);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();  // owned by the route once added to it
  if (!nh) return MakeError(ErrorCode::kResourceExhausted, "rtnl_route_nh_alloc failed");
  rtnl_route_nh_set_ifindex(nh, static_cast<int>(idx));
  rtnl_route_nh_set_gateway(nh, gw.get());
  rtnl_route_add_nexthop(r.get(), nh);
  if (int err = rtnl_route_add(sock, r.get(), NLM_F_CREATE); err < 0) return NlError("add default route", err);
  return OkStatus();
}

Status ConfigureHostSide(const std::string& name, const VethAddresses& addrs) {
  COVE_TRY(NoIpv6(name));
  COVE_ASSIGN_OR_RETURN(NlSock sock, RouteSocket());
  COVE_TRY(AddAddress(sock.get(), name, addrs.HostText()));
  return SetUp(name.c_str());
}

Status ConfigureSandboxSide(int netns_fd, const VethAddresses& addrs) {
  return RunInNetns(netns_fd, [&]() -> Status {
    COVE_TRY(NoIpv6("eth0"));
    COVE_ASSIGN_OR_RETURN(NlSock sock, RouteSocket());
    COVE_TRY(AddAddress(sock.get(), "eth0", addrs.SandboxText()));
    COVE_TRY(SetUp("eth0"));
    return AddDefaultRoute(sock.get(), "eth0", addrs.HostText());
  });
}

}  // namespace

Status PrepareNetns(int netns_fd) {
  return RunInNetns(netns_fd, []() -> Status {
    COVE_TRY(NoIpv6("all"));
    COVE_TRY(NoIpv6("default"));
    return SetUp("lo");
  });
}

Status CreateVeth(int netns_fd, const std::string& host_name, const VethAddresses& addrs) {
  COVE_ASSIGN_OR_RETURN(NlSock sock, RouteSocket());
  Link veth(rtnl_link_veth_alloc());
  if (!veth) return MakeError(ErrorCode::kResourceExhausted, "rtnl_link_veth_alloc failed");
  rtnl_link_set_name(veth.get(), host_name.c_str());
  Link peer(rtnl_link_veth_get_peer(veth.get()));
  rtnl_link_set_name(peer.get(), "eth0");
  rtnl_link_set_ns_fd(peer.get(), netns_fd);
  if (int err = rtnl_link_add(sock.get(), veth.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0)
    return NlError("create veth " + host_name, err);
  ScopeExit remove([&] { (void)DeleteLink(host_name); });
  COVE_TRY(ConfigureHostSide(host_name, addrs));
  COVE_TRY(ConfigureSandboxSide(netns_fd, addrs));
  remove.Release();
  return OkStatus();
}

Status DeleteLink(const std::string& host_name) {
  COVE_ASSIGN_OR_RETURN(NlSock sock, RouteSocket());
  Link link(rtnl_link_alloc());
  if (!link) return MakeError(ErrorCode::kResourceExhausted, "rtnl_link_alloc failed");
  rtnl_link_set_name(link.get(), host_name.c_str());
  if (int err = rtnl_link_delete(sock.get(), link.get()); err < 0) return NlError("delete link " + host_name, err);
  return OkStatus();
}

Result<std::vector<std::string>> ListLinks() {
  std::vector<std::string> names;
  struct if_nameindex* list = ::if_nameindex();
  if (!list) return SysError("if_nameindex");
  for (struct if_nameindex* p = list; p->if_index != 0; ++p) names.emplace_back(p->if_name);
  ::if_freenameindex(list);
  return names;
}

}  // namespace cove::net
