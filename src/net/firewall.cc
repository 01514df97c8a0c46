#include "net/firewall.h"

#include <arpa/inet.h>
#include <nftables/libnftables.h>

#include <fmt/format.h>

namespace cove::net {
namespace {

std::string Element(const SandboxLink& l) {
  char a[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &l.address, a, sizeof a);
  return fmt::format("\"{}\" . {}", l.host_if, a);
}

std::string ElementsScript(const char* verb, const std::string& table, const SandboxLink& l) {
  return fmt::format("{0} element inet {1} links {{ \"{2}\" }}\n{0} element inet {1} sources {{ {3} }}\n", verb, table,
                     l.host_if, Element(l));
}

}  // namespace

// Input: sandboxes reach coved's proxy and DNS ports only, nothing else on
// the host; nobody else connects to those ports. Replies are exempt from that
// last rule: a host socket whose own (ephemeral) port happens to equal one of
// them must still get its answers. And the rule drops only what would reach a
// socket bound to the wildcard address, as coved's listeners are (0.0.0.0):
// a table outlives a coved that was killed, and its port numbers go back to
// the kernel's pool, so a program that later listens on 127.0.0.1 at one of
// them (a test's server) must not have its connections dropped.
// Every packet on the host passes these hooks, loopback included: each hook
// tests membership of `links` once and jumps to a chain of the sandbox rules,
// so the host's own traffic pays one set lookup per hook, not one per rule.
std::string FirewallScript(const std::string& table, const FirewallConfig& p, const std::vector<SandboxLink>& links) {
  std::string s = fmt::format(
      "add table inet {0}\n"
      "delete table inet {0}\n"
      "table inet {0} {{\n"
      "  set links {{ type ifname; }}\n"
      "  set sources {{ type ifname . ipv4_addr; }}\n"
      "  chain sandbox_nat {{\n"
      "    udp dport 53 redirect to :{3}\n"
      "    tcp dport 53 redirect to :{3}\n"
      "    tcp dport != {2} redirect to :{1}\n"
      "  }}\n"
      "  chain prerouting {{\n"
      "    type nat hook prerouting priority dstnat; policy accept;\n"
      "    iifname @links jump sandbox_nat\n"
      "  }}\n"
      "  chain from_sandbox {{\n"
      "    meta nfproto != ipv4 drop\n"
      "    iifname . ip saddr != @sources drop\n"
      "    ct direction reply accept\n"
      "    tcp dport {{ {1}, {2}, {3} }} accept\n"
      "    udp dport {3} accept\n"
      "    drop\n"
      "  }}\n"
      "  chain input {{\n"
      "    type filter hook input priority filter; policy accept;\n"
      "    iifname @links jump from_sandbox\n"
      "    ct direction reply accept\n"
      "    tcp dport {{ {1}, {2}, {3} }} socket wildcard 1 drop\n"
      "    udp dport {3} socket wildcard 1 drop\n"
      "  }}\n"
      "  chain forward {{\n"
      "    type filter hook forward priority filter; policy accept;\n"
      "    iifname @links drop\n"
      "    oifname @links drop\n"
      "  }}\n"
      "  chain output {{\n"
      "    type filter hook output priority filter; policy accept;\n"
      "    oifname @links meta skuid != 0 drop\n"
      "    meta mark {4:#x} fib daddr type {{ local, broadcast, multicast }} reject\n"
      "    meta mark {4:#x} ip daddr {5} reject\n"
      "  }}\n"
      "}}\n",
      table, p.transparent_proxy, p.explicit_proxy, p.dns, p.upstream_mark, p.subnet);
  for (const auto& l : links) s += ElementsScript("add", table, l);
  return s;
}

Result<std::unique_ptr<Firewall>> Firewall::Install(std::string table, FirewallConfig ports,
                                                    const std::vector<SandboxLink>& links) {
  nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!ctx) return MakeError(ErrorCode::kInternal, "nft_ctx_new failed");
  nft_ctx_buffer_output(ctx);
  nft_ctx_buffer_error(ctx);
  std::unique_ptr<Firewall> fw(new Firewall(std::move(table), ctx));
  COVE_TRY(fw->Run(FirewallScript(fw->table_, ports, links)));
  return fw;
}

Firewall::~Firewall() { nft_ctx_free(ctx_); }

Status Firewall::Run(const std::string& script) {
  std::lock_guard lock(mu_);
  if (nft_run_cmd_from_buffer(ctx_, script.c_str()) != 0) {
    std::string err = nft_ctx_get_error_buffer(ctx_);
    while (!err.empty() && err.back() == '\n') err.pop_back();
    return MakeError(ErrorCode::kInternal, "nftables (table " + table_ + "): " + err);
  }
  return OkStatus();
}

Status Firewall::Add(const SandboxLink& link) { return Run(ElementsScript("add", table_, link)); }

Status Firewall::Remove(const SandboxLink& link) {
  // "destroy" (idempotent delete) is newer than nftables 1.0.6: re-adding
  // first makes the delete succeed whether or not the element was there.
  return Run(ElementsScript("add", table_, link) + ElementsScript("delete", table_, link));
}

Status Firewall::Uninstall() { return Run(fmt::format("add table inet {0}\ndelete table inet {0}\n", table_)); }

}  // namespace cove::net
