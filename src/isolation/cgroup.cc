#include "isolation/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <set>
#include <thread>

#include "base/log.h"
#include "isolation/validate.h"
#include "sys/fs.h"
#include "sys/io.h"

namespace cove::isolation {

namespace {

constexpr const char* kV1Wanted[] = {"cpu", "cpuacct", "memory", "pids", "freezer"};
// With a (controller-less) cgroup2 mount beside v1, its cpu.stat gives CPU
// usage and cgroup.kill kills: cpuacct and freezer are then not needed, and
// every hierarchy less is a mkdir, an attach and an rmdir less per sandbox.
bool NeededWithUnified(std::string_view c) { return c == "cpu" || c == "memory" || c == "pids"; }

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(sep, i);
    if (j == std::string_view::npos) j = s.size();
    out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

struct MountEntry {
  std::string root, mount_point, fstype;
  std::vector<std::string> super_opts;
};

std::vector<MountEntry> ParseMountinfo(std::string_view text) {
  std::vector<MountEntry> out;
  for (std::string_view line : Split(text, '\n')) {
    if (line.empty()) continue;
    auto f = Split(line, ' ');
    auto dash = std::find(f.begin(), f.end(), std::string_view("-"));
    if (f.size() < 7 || dash == f.end() || dash + 3 > f.end() || dash - f.begin() < 6) continue;
    MountEntry m;
    m.root = Unescape(f[3]);
    m.mount_point = Unescape(f[4]);
    m.fstype = std::string(*(dash + 1));
    for (auto o : Split(*(dash + 3), ',')) m.super_opts.emplace_back(o);
    out.push_back(std::move(m));
  }
  return out;
}

// Joins a mount point with the process's cgroup path relative to the mount root.
std::string JoinCgroupPath(const MountEntry& m, std::string_view own) {
  std::string_view rel = own;
  if (m.root != "/" && rel.substr(0, m.root.size()) == m.root) rel.remove_prefix(m.root.size());
  std::string out = m.mount_point;
  if (!rel.empty() && rel != "/") {
    if (rel.front() != '/') out += '/';
    out += rel;
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

// Space/newline separated words (cgroup.controllers).
std::vector<std::string> Words(std::string_view text) {
  std::vector<std::string> out;
  for (auto w : Split(text, ' ')) {
    while (!w.empty() && w.back() == '\n') w.remove_suffix(1);
    if (!w.empty()) out.emplace_back(w);
  }
  return out;
}

bool Has(const std::vector<std::string>& v, std::string_view x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

Status WriteCg(const CgroupLayout& layout, const std::string& dir, const char* file,
               std::string_view value) {
  std::string path = dir + "/" + file;
  int flags = O_WRONLY | O_CLOEXEC | (layout.fake_fs ? (O_CREAT | O_TRUNC) : 0);
  UniqueFd fd(::open(path.c_str(), flags, 0644));
  if (!fd) return SysError("open " + path);
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
    return SysError("write " + path + " = " + std::string(value));
  return OkStatus();
}

Result<std::string> ReadCg(const std::string& dir, const char* file) {
  return sys::ReadFile(dir + "/" + file, 1 << 20);
}

uint64_t ParseU64(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

// Value of "key N" in a flat-keyed file such as cpu.stat or memory.events.
uint64_t KeyedValue(std::string_view text, std::string_view key) {
  for (auto line : Split(text, '\n')) {
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ')
      return ParseU64(line.substr(key.size() + 1));
  }
  return 0;
}

std::vector<pid_t> ParsePids(std::string_view text) {
  std::vector<pid_t> out;
  for (auto line : Split(text, '\n')) {
    if (line.empty()) continue;
    pid_t p = 0;
    if (std::from_chars(line.data(), line.data() + line.size(), p).ec == std::errc() && p > 0)
      out.push_back(p);
  }
  return out;
}

}  // namespace

Result<CgroupLayout> ParseCgroupLayout(std::string_view proc_self_cgroup, std::string_view mountinfo,
                                       bool unified_root_has_controllers) {
  std::vector<MountEntry> mounts = ParseMountinfo(mountinfo);
  // hierarchy lines: id:controllers:path
  std::string v2_own;
  std::vector<std::pair<std::vector<std::string>, std::string>> v1_own;
  for (auto line : Split(proc_self_cgroup, '\n')) {
    if (line.empty()) continue;
    size_t a = line.find(':');
    size_t b = line.find(':', a + 1);
    if (a == std::string_view::npos || b == std::string_view::npos) continue;
    std::string_view ctrls = line.substr(a + 1, b - a - 1);
    std::string path(line.substr(b + 1));
    if (line.substr(0, a) == "0" && ctrls.empty()) {
      v2_own = path;
      continue;
    }
    std::vector<std::string> cs;
    for (auto c : Split(ctrls, ',')) cs.emplace_back(c);
    v1_own.emplace_back(std::move(cs), std::move(path));
  }

  const MountEntry* unified = nullptr;
  for (const auto& m : mounts)
    if (m.fstype == "cgroup2" && (unified == nullptr || m.mount_point == "/sys/fs/cgroup")) unified = &m;

  CgroupLayout layout;
  if (unified) {
    layout.unified_mount = unified->mount_point;
    for (const auto& o : unified->super_opts) {
      if (o == "rw" || o == "ro") continue;
      if (!layout.unified_options.empty()) layout.unified_options += ',';
      layout.unified_options += o;
    }
  }
  if (unified && unified->mount_point == "/sys/fs/cgroup" && unified_root_has_controllers &&
      !v2_own.empty()) {
    layout.version = CgroupVersion::kV2;
    layout.hierarchies.push_back({JoinCgroupPath(*unified, v2_own), {}, true});
    return layout;
  }

  layout.version = CgroupVersion::kV1;
  const bool with_unified = unified != nullptr && !v2_own.empty();
  std::set<std::string> seen_mounts;
  for (const char* want : kV1Wanted) {
    const bool required = std::string_view(want) != "freezer";
    if (with_unified && !NeededWithUnified(want)) continue;
    const MountEntry* mount = nullptr;
    for (const auto& m : mounts)
      if (m.fstype == "cgroup" && Has(m.super_opts, want)) { mount = &m; break; }
    const std::string* own = nullptr;
    for (const auto& [cs, path] : v1_own)
      if (Has(cs, want)) { own = &path; break; }
    if (mount == nullptr || own == nullptr) {
      if (required)
        return MakeError(ErrorCode::kFailedPrecondition,
                         std::string("cgroup v1 controller not mounted: ") + want);
      continue;
    }
    if (!seen_mounts.insert(mount->mount_point).second) continue;  // co-mounted (cpu,cpuacct)
    CgroupLayout::Hierarchy h;
    h.parent = JoinCgroupPath(*mount, *own);
    for (const char* c : kV1Wanted)
      if (Has(mount->super_opts, c) && (!with_unified || NeededWithUnified(c) || std::string_view(c) == "cpuacct"))
        h.controllers.emplace_back(c);
    layout.hierarchies.push_back(std::move(h));
  }
  if (with_unified) layout.hierarchies.push_back({JoinCgroupPath(*unified, v2_own), {}, true});
  return layout;
}

Result<CgroupLayout> DetectCgroupLayout() {
  COVE_ASSIGN_OR_RETURN(std::string self, sys::ReadFile("/proc/self/cgroup"));
  COVE_ASSIGN_OR_RETURN(std::string mi, sys::ReadFile("/proc/self/mountinfo", 4 << 20));
  bool controllers = false;
  struct statfs sf;
  if (::statfs("/sys/fs/cgroup", &sf) == 0 && sf.f_type == 0x63677270 /* CGROUP2_SUPER_MAGIC */) {
    auto c = sys::ReadFile("/sys/fs/cgroup/cgroup.controllers");
    controllers = c.ok() && c->find_first_not_of(" \n") != std::string::npos;
  }
  return ParseCgroupLayout(self, mi, controllers);
}

namespace {
// Lets a sandbox that was idle bank one quota (the kernel's most) for its next
// period: a short burst after a pause (a new shell) runs in one period instead
// of several. Kernels before 5.14 have no such file; nothing is lost then.
void WriteBurst(const CgroupLayout& layout, const std::string& dir, const char* file, uint64_t quota_us) {
  if (auto s = WriteCg(layout, dir, file, std::to_string(quota_us)); !s.ok() && s.error().sys_errno != ENOENT)
    log::Debug("{} of {}: {}", file, dir, s.error().ToString());
}
}  // namespace

CpuBandwidth CpuBandwidthFor(uint32_t cpu_millis) {
  constexpr uint64_t kPeriodUs = 10'000;   // the stall bound at the quota
  constexpr uint64_t kMinQuotaUs = 1'000;  // the kernel's minimum quota
  if (cpu_millis == 0) return {};
  uint64_t period = kPeriodUs;
  if (uint64_t{cpu_millis} * period / 1000 < kMinQuotaUs)  // under 0.1 CPU: stretch the period
    period = (kMinQuotaUs * 1000 + cpu_millis - 1) / cpu_millis;
  return {std::max(kMinQuotaUs, uint64_t{cpu_millis} * period / 1000), std::min<uint64_t>(period, 1'000'000)};
}

// ---- SandboxCgroup ----

Status SandboxCgroup::Attach(pid_t pid, bool already_in_clone_into) {
  std::string p = std::to_string(pid);
  for (size_t h = 0; h < dirs_.size(); ++h) {
    if (already_in_clone_into && layout_.hierarchies[h].unified && clone_into_) continue;
    COVE_TRY(WriteCg(layout_, dirs_[h], "cgroup.procs", p));
  }
  return OkStatus();
}

Result<std::vector<pid_t>> SandboxCgroup::Pids() const {
  std::set<pid_t> all;
  for (const auto& d : dirs_) {
    auto t = ReadCg(d, "cgroup.procs");
    if (!t.ok()) {
      if (t.error().sys_errno == ENOENT && !layout_.fake_fs) continue;  // already removed
      if (layout_.fake_fs) continue;
      return std::move(t).error();
    }
    for (pid_t p : ParsePids(*t)) all.insert(p);
  }
  return std::vector<pid_t>(all.begin(), all.end());
}

Status SandboxCgroup::KillAll() {
  bool killed_by_kernel = false;
  for (size_t h = 0; h < dirs_.size(); ++h) {
    if (!layout_.hierarchies[h].unified) continue;
    if (!sys::PathExists(dirs_[h])) continue;
    if (auto s = WriteCg(layout_, dirs_[h], "cgroup.kill", "1"); s.ok()) killed_by_kernel = true;
    else log::Debug("cgroup.kill in {}: {}", dirs_[h], s.error().ToString());
  }
  if (killed_by_kernel) LiftLimits();
  if (layout_.fake_fs) return OkStatus();
  // v1 only, or cgroup.kill missing: freeze (so forks cannot race the kill), kill, thaw.
  const std::string* freezer = nullptr;
  for (size_t h = 0; h < dirs_.size(); ++h)
    if (Has(layout_.hierarchies[h].controllers, "freezer") && sys::PathExists(dirs_[h])) freezer = &dirs_[h];
  for (int round = 0; round < 10; ++round) {
    COVE_ASSIGN_OR_RETURN(std::vector<pid_t> pids, Pids());
    if (pids.empty()) return OkStatus();
    if (killed_by_kernel && round == 0) {
      // cgroup.kill is asynchronous; processes still exiting are listed for a moment.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    if (freezer) (void)WriteCg(layout_, *freezer, "freezer.state", "FROZEN");
    for (pid_t p : pids) ::kill(p, SIGKILL);
    // Lifted only while frozen with a SIGKILL pending (no fork can escape it):
    // what the thaw lets run is the kernel's exit path.
    if (freezer) LiftLimits();
    if (freezer) (void)WriteCg(layout_, *freezer, "freezer.state", "THAWED");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return OkStatus();
}

void SandboxCgroup::LiftLimits() {
  for (size_t h = 0; h < dirs_.size(); ++h) {
    const auto& hi = layout_.hierarchies[h];
    const std::string& d = dirs_[h];
    if (!layout_.fake_fs && !sys::PathExists(d)) continue;
    auto write = [&](const char* file, const char* value) {
      if (auto s = WriteCg(layout_, d, file, value); !s.ok() && s.error().sys_errno != ENOENT)
        log::Debug("lifting {} of a killed sandbox: {}", file, s.error().ToString());
    };
    if (layout_.version == CgroupVersion::kV2) {
      write("cpu.max", "max");
      write("memory.max", "max");
      continue;
    }
    if (Has(hi.controllers, "cpu")) write("cpu.cfs_quota_us", "-1");
    if (Has(hi.controllers, "memory")) {
      // memsw first: the memory limit may never exceed it.
      if (layout_.fake_fs || sys::PathExists(d + "/memory.memsw.limit_in_bytes"))
        write("memory.memsw.limit_in_bytes", "-1");
      write("memory.limit_in_bytes", "-1");
    }
  }
}

Status SandboxCgroup::Remove(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  COVE_TRY(KillAll());
  int spins = 0;
  for (;;) {
    bool all_gone = true;
    for (size_t i = dirs_.size(); i-- > 0;) {
      const std::string& d = dirs_[i];
      if (layout_.fake_fs) {
        COVE_TRY(sys::RemoveTree(d));
        continue;
      }
      if (::rmdir(d.c_str()) == 0 || errno == ENOENT) continue;
      all_gone = false;
      if (errno != EBUSY) return SysError("rmdir " + d);
    }
    if (all_gone) {
      clone_into_.Reset();
      return OkStatus();
    }
    if (std::chrono::steady_clock::now() > deadline)
      return Error{ErrorCode::kTimeout, EBUSY, "cgroup of " + id_ + " did not empty in time", {}};
    if (++spins % 20 == 0) (void)KillAll();
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
}

Result<CgroupUsage> SandboxCgroup::ReadUsage() const {
  CgroupUsage u;
  for (size_t h = 0; h < dirs_.size(); ++h) {
    const auto& hi = layout_.hierarchies[h];
    const std::string& d = dirs_[h];
    if (layout_.version == CgroupVersion::kV2) {
      if (auto t = ReadCg(d, "cpu.stat"); t.ok()) u.cpu_usage_ns = KeyedValue(*t, "usage_usec") * 1000;
      if (auto t = ReadCg(d, "memory.current"); t.ok()) u.memory_current_bytes = ParseU64(*t);
      if (auto t = ReadCg(d, "memory.peak"); t.ok()) u.memory_peak_bytes = ParseU64(*t);
      if (auto t = ReadCg(d, "pids.current"); t.ok()) u.pids_current = ParseU64(*t);
      if (auto t = ReadCg(d, "memory.events"); t.ok()) u.oom_kills = KeyedValue(*t, "oom_kill");
      continue;
    }
    if (hi.unified) {
      if (auto t = ReadCg(d, "cpu.stat"); t.ok()) u.cpu_usage_ns = KeyedValue(*t, "usage_usec") * 1000;
      continue;
    }
    if (Has(hi.controllers, "cpuacct") && u.cpu_usage_ns == 0)
      if (auto t = ReadCg(d, "cpuacct.usage"); t.ok()) u.cpu_usage_ns = ParseU64(*t);
    if (Has(hi.controllers, "memory")) {
      if (auto t = ReadCg(d, "memory.usage_in_bytes"); t.ok()) u.memory_current_bytes = ParseU64(*t);
      if (auto t = ReadCg(d, "memory.max_usage_in_bytes"); t.ok()) u.memory_peak_bytes = ParseU64(*t);
      if (auto t = ReadCg(d, "memory.oom_control"); t.ok()) u.oom_kills = KeyedValue(*t, "oom_kill");
    }
    if (Has(hi.controllers, "pids"))
      if (auto t = ReadCg(d, "pids.current"); t.ok()) u.pids_current = ParseU64(*t);
  }
  return u;
}

// ---- CgroupManager ----

std::string CgroupGroupForState(const std::string& state_dir) {
  std::string dir = state_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir == "/var/lib/cove") return "cove";
  uint64_t h = 1469598103934665603ull;  // FNV-1a: stable across builds and runs
  for (unsigned char c : dir) h = (h ^ c) * 1099511628211ull;
  char buf[32];
  std::snprintf(buf, sizeof buf, "cove-%08x", static_cast<unsigned>(h ^ (h >> 32)));
  return buf;
}

Status CgroupManager::RemoveGroup() const {
  for (size_t h = 0; h < layout_.hierarchies.size(); ++h) {
    std::string dir = CoveDir(h);
    if (layout_.fake_fs) COVE_TRY(sys::RemoveTree(dir));
    else if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) return SysError("rmdir " + dir);
  }
  return OkStatus();
}

Result<CgroupManager> CgroupManager::OpenHost(const std::string& group) {
  COVE_TRY(ValidateSandboxId(group));
  COVE_ASSIGN_OR_RETURN(CgroupLayout layout, DetectCgroupLayout());
  CgroupManager m(std::move(layout), group);
  COVE_TRY(m.Init());
  return m;
}

namespace {
// Remounting cgroup2 replaces all of its root flags: keep the current ones.
Status EnableFavorDynmods(const CgroupLayout& layout) {
  if (layout.unified_mount.empty()) return OkStatus();
  for (auto o : Split(layout.unified_options, ','))
    if (o == "favordynmods") return OkStatus();
  std::string opts = layout.unified_options.empty() ? "favordynmods" : layout.unified_options + ",favordynmods";
  if (::mount(nullptr, layout.unified_mount.c_str(), nullptr, MS_REMOUNT, opts.c_str()) != 0)
    return SysError("remount " + layout.unified_mount + " with " + opts);
  log::Info("cgroup2 at {} now has favordynmods (fast cgroup migration)", layout.unified_mount);
  return OkStatus();
}
}  // namespace

Status CgroupManager::Init(bool tune_host) {
  if (tune_host && !layout_.fake_fs) {
    if (auto s = EnableFavorDynmods(layout_); !s.ok())
      log::Warn("cgroup tuning skipped: {}", s.error().ToString());
  }
  for (size_t h = 0; h < layout_.hierarchies.size(); ++h) {
    const auto& hi = layout_.hierarchies[h];
    if (layout_.version == CgroupVersion::kV2) {
      // Enable what the parent offers of cpu, memory, pids.
      std::string enable;
      auto offered = ReadCg(hi.parent, "cgroup.controllers");
      for (const char* c : {"cpu", "memory", "pids"}) {
        if (!offered.ok() || !Has(Words(*offered), c)) {
          log::Warn("cgroup v2 controller {} not available in {}: its limit is not enforced", c, hi.parent);
          continue;
        }
        if (!enable.empty()) enable += ' ';
        enable += std::string("+") + c;
      }
      if (enable.empty()) return MakeError(ErrorCode::kFailedPrecondition, "no cgroup v2 controllers in " + hi.parent);
      Status s = WriteCg(layout_, hi.parent, "cgroup.subtree_control", enable);
      if (!s.ok() && s.error().sys_errno == EBUSY) {
        // "No internal processes": coved's own cgroup holds processes. Move them to a leaf.
        std::string leaf = hi.parent + "/coved";
        if (::mkdir(leaf.c_str(), 0755) != 0 && errno != EEXIST) return SysError("mkdir " + leaf);
        COVE_ASSIGN_OR_RETURN(std::string procs, ReadCg(hi.parent, "cgroup.procs"));
        for (pid_t p : ParsePids(procs)) (void)WriteCg(layout_, leaf, "cgroup.procs", std::to_string(p));
        s = WriteCg(layout_, hi.parent, "cgroup.subtree_control", enable);
      }
      COVE_TRY(s);
      std::string cove = CoveDir(h);
      if (::mkdir(cove.c_str(), 0755) != 0 && errno != EEXIST) return SysError("mkdir " + cove);
      COVE_TRY(WriteCg(layout_, cove, "cgroup.subtree_control", enable));
      continue;
    }
    std::string cove = CoveDir(h);
    if (::mkdir(cove.c_str(), 0755) != 0 && errno != EEXIST) return SysError("mkdir " + cove);
  }
  return OkStatus();
}

Result<SandboxCgroup> CgroupManager::Create(const std::string& id, const Limits& limits) const {
  COVE_TRY(ValidateSandboxId(id));
  SandboxCgroup cg;
  cg.id_ = id;
  cg.layout_ = layout_;
  cg.dirs_.reserve(layout_.hierarchies.size());
  bool ok = false;
  auto rollback = [&] {
    if (ok) return;
    for (size_t i = cg.dirs_.size(); i-- > 0;) {
      if (layout_.fake_fs) (void)sys::RemoveTree(cg.dirs_[i]);
      else ::rmdir(cg.dirs_[i].c_str());
    }
  };
  struct Guard { decltype(rollback)& f; ~Guard() { f(); } } guard{rollback};

  for (size_t h = 0; h < layout_.hierarchies.size(); ++h) {
    std::string dir = CoveDir(h) + "/" + id;
    if (::mkdir(dir.c_str(), 0755) != 0) {
      if (errno == EEXIST) return Error{ErrorCode::kAlreadyExists, EEXIST, "cgroup exists: " + dir, {}};
      return SysError("mkdir " + dir);
    }
    cg.dirs_.push_back(dir);
    const auto& hi = layout_.hierarchies[h];
    const CpuBandwidth cpu = CpuBandwidthFor(limits.cpu_millis);
    if (layout_.version == CgroupVersion::kV2) {
      COVE_TRY(WriteCg(layout_, dir, "cpu.max",
                       limits.cpu_millis ? fmt::format("{} {}", cpu.quota_us, cpu.period_us)
                                         : std::string("max 100000")));
      if (limits.cpu_millis) WriteBurst(layout_, dir, "cpu.max.burst", cpu.quota_us);
      COVE_TRY(WriteCg(layout_, dir, "memory.max",
                       limits.memory_bytes ? std::to_string(limits.memory_bytes) : "max"));
      if (auto s = WriteCg(layout_, dir, "memory.swap.max", "0"); !s.ok() && s.error().sys_errno != ENOENT)
        return std::move(s).error();
      COVE_TRY(WriteCg(layout_, dir, "pids.max", limits.pids ? std::to_string(limits.pids) : "max"));
      continue;
    }
    if (hi.unified) continue;
    if (Has(hi.controllers, "cpu") && limits.cpu_millis) {
      COVE_TRY(WriteCg(layout_, dir, "cpu.cfs_period_us", std::to_string(cpu.period_us)));
      COVE_TRY(WriteCg(layout_, dir, "cpu.cfs_quota_us", std::to_string(cpu.quota_us)));
      WriteBurst(layout_, dir, "cpu.cfs_burst_us", cpu.quota_us);
    }
    if (Has(hi.controllers, "memory") && limits.memory_bytes) {
      std::string m = std::to_string(limits.memory_bytes);
      COVE_TRY(WriteCg(layout_, dir, "memory.limit_in_bytes", m));
      // No swap beyond the limit (memsw = memory + swap), if swap accounting exists.
      if (layout_.fake_fs || sys::PathExists(dir + "/memory.memsw.limit_in_bytes"))
        COVE_TRY(WriteCg(layout_, dir, "memory.memsw.limit_in_bytes", m));
    }
    if (Has(hi.controllers, "pids") && limits.pids)
      COVE_TRY(WriteCg(layout_, dir, "pids.max", std::to_string(limits.pids)));
  }
  for (size_t h = 0; h < layout_.hierarchies.size(); ++h) {
    if (!layout_.hierarchies[h].unified || layout_.fake_fs) continue;
    cg.clone_into_.Reset(::open(cg.dirs_[h].c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!cg.clone_into_) return SysError("open " + cg.dirs_[h]);
  }
  ok = true;
  return cg;
}

Result<SandboxCgroup> CgroupManager::Adopt(const std::string& id) const {
  COVE_TRY(ValidateSandboxId(id));
  SandboxCgroup cg;
  cg.id_ = id;
  cg.layout_ = layout_;
  bool any = false;
  for (size_t h = 0; h < layout_.hierarchies.size(); ++h) {
    std::string dir = CoveDir(h) + "/" + id;
    any = any || sys::PathExists(dir);
    cg.dirs_.push_back(dir);
  }
  if (!any) return Error{ErrorCode::kNotFound, ENOENT, "no cgroup for sandbox " + id, {}};
  for (size_t h = 0; h < layout_.hierarchies.size(); ++h) {
    if (!layout_.hierarchies[h].unified || layout_.fake_fs) continue;
    cg.clone_into_.Reset(::open(cg.dirs_[h].c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  }
  return cg;
}

Result<std::vector<std::string>> CgroupManager::List() const {
  std::set<std::string> ids;
  for (size_t h = 0; h < layout_.hierarchies.size(); ++h) {
    std::string cove = CoveDir(h);
    DIR* d = ::opendir(cove.c_str());
    if (d == nullptr) {
      if (errno == ENOENT) continue;
      return SysError("opendir " + cove);
    }
    while (dirent* e = ::readdir(d)) {
      if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
      if (ValidateSandboxId(e->d_name).ok()) ids.insert(e->d_name);
    }
    ::closedir(d);
  }
  return std::vector<std::string>(ids.begin(), ids.end());
}

}  // namespace cove::isolation
