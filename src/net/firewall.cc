#include "net/firewall.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <nftables/libnftables.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "base/json_parse.h"
#include "sys/fs.h"

namespace cove::net {
namespace {

// Table names double as lock file names: nothing that could leave lock_dir.
bool PlainName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

std::string LockPath(const std::string& lock_dir, std::string_view table) {
  return lock_dir + "/" + std::string(table) + ".lock";
}

// The flock of `table`'s lock file, or kAlreadyExists while someone holds it.
// An owner that uninstalls its table unlinks the file while it holds the
// lock: a lock won on an unlinked file is no lock (without `create`:
// kNotFound, the table is gone; with it, a new file is made).
Result<UniqueFd> LockTable(const std::string& lock_dir, std::string_view table, bool create) {
  std::string path = LockPath(lock_dir, table);
  for (;;) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600));
    if (!fd) return SysError("open " + path);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK)
        return Error{ErrorCode::kAlreadyExists, EWOULDBLOCK,
                     "firewall table " + std::string(table) + " is owned by a running process", {}};
      return SysError("flock " + path);
    }
    struct stat held {}, named {};
    if (::fstat(fd.get(), &held) != 0) return SysError("fstat " + path);
    if (::stat(path.c_str(), &named) == 0 && named.st_dev == held.st_dev && named.st_ino == held.st_ino) return fd;
    if (!create) return MakeError(ErrorCode::kNotFound, path + " was removed");
  }
}

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
                                                    const std::vector<SandboxLink>& links,
                                                    const std::string& lock_dir) {
  if (!PlainName(table))
    return MakeError(ErrorCode::kInvalidArgument, "firewall table name '" + table + "' is not letters, digits and _");
  COVE_TRY(sys::MkdirAll(lock_dir, 0700));
  // Another coved may hold the lock for a moment, removing the table as a
  // dead owner's; a live owner holds it for good.
  auto lock = LockTable(lock_dir, table, true);
  for (int i = 0; i < 200 && !lock.ok() && lock.error().code == ErrorCode::kAlreadyExists; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    lock = LockTable(lock_dir, table, true);
  }
  if (!lock.ok()) return std::move(lock).error();
  nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!ctx) return MakeError(ErrorCode::kInternal, "nft_ctx_new failed");
  nft_ctx_buffer_output(ctx);
  nft_ctx_buffer_error(ctx);
  std::unique_ptr<Firewall> fw(new Firewall(std::move(table), lock_dir, ctx));
  fw->lock_ = std::move(*lock);
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

Status Firewall::Uninstall() {
  COVE_TRY(Run(fmt::format("add table inet {0}\ndelete table inet {0}\n", table_)));
  // Unlinked while still locked (LockTable checks for that), so lock files
  // do not pile up in lock_dir, one per state dir ever used.
  if (lock_) ::unlink(LockPath(lock_dir_, table_).c_str());
  return OkStatus();
}

Result<std::vector<std::string>> Firewall::InetTables() {
  std::lock_guard lock(mu_);
  unsigned flags = nft_ctx_output_get_flags(ctx_);
  nft_ctx_output_set_flags(ctx_, flags | NFT_CTX_OUTPUT_JSON);
  int rc = nft_run_cmd_from_buffer(ctx_, "list tables inet");
  nft_ctx_output_set_flags(ctx_, flags);
  std::string out = nft_ctx_get_output_buffer(ctx_);
  if (rc != 0)
    return MakeError(ErrorCode::kInternal, std::string("nftables: list tables: ") + nft_ctx_get_error_buffer(ctx_));
  auto json = ParseJson(out);
  if (!json || !json->is_object() || !json->contains("nftables") || !(*json)["nftables"].is_array())
    return MakeError(ErrorCode::kInternal, "nftables: list tables: unexpected output");
  std::vector<std::string> names;
  for (const auto& item : (*json)["nftables"]) {
    if (!item.is_object() || !item.contains("table")) continue;
    const auto& t = item["table"];
    if (t.is_object() && t.contains("name") && t["name"].is_string()) names.push_back(t["name"].get<std::string>());
  }
  return names;
}

Result<std::vector<std::string>> Firewall::RemoveTablesOfDeadOwners(std::string_view prefix) {
  COVE_ASSIGN_OR_RETURN(std::vector<std::string> tables, InetTables());
  std::vector<std::string> removed;
  for (const auto& name : tables) {
    if (name == table_ || !name.starts_with(prefix) || !PlainName(name)) continue;
    // No lock file: an owner that does not take the lock (an older coved); a
    // held one: a live owner.
    auto lock = LockTable(lock_dir_, name, false);
    if (!lock.ok()) continue;
    COVE_TRY(Run(fmt::format("add table inet {0}\ndelete table inet {0}\n", name)));
    removed.push_back(name);
  }
  return removed;
}

}  // namespace cove::net
