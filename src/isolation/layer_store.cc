#include "isolation/layer_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "base/log.h"
#include "base/scope_exit.h"
#include "isolation/validate.h"
#include "sys/btrfs.h"
#include "sys/fs.h"
#include "sys/io.h"
#include "sys/loop_device.h"
#include "sys/project_quota.h"
#include "sys/run_tool.h"

namespace cove::isolation {

namespace {

using sys::MkdirOwned;

constexpr uid_t kUserUid = 1000;  // "user" inside the sandbox

Status EnsureSearchable(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return SysError("stat " + dir);
  if ((st.st_mode & 0001) == 0 && ::chmod(dir.c_str(), (st.st_mode & 07777) | 0111) != 0)
    return SysError("chmod o+x " + dir);
  return OkStatus();
}

bool KernelHasBtrfs() {
  auto fs = sys::ReadFile("/proc/filesystems");
  return fs.ok() && fs->find("\tbtrfs\n") != std::string::npos;
}

// Creates the image file system; returns its type for mount(2).
Result<std::string> CreateImageFs(const std::string& image, uint64_t bytes) {
  std::string tmp = image + ".tmp";
  {
    UniqueFd fd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) return SysError("create " + tmp);
    if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) return SysError("truncate " + tmp);
  }
  // ext4 project quotas need CONFIG_QFMT_V2; btrfs qgroups need nothing but btrfs.
  const bool btrfs = KernelHasBtrfs();
  auto r = btrfs ? sys::RunTool({"mkfs.btrfs", "-q", "-f", "-L", "cove-layers", tmp})
                 : sys::RunTool({"mkfs.ext4", "-q", "-F", "-O", "quota,project", "-m", "0", "-E",
                                 "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0", "-L", "cove-layers", tmp});
  if (!r.ok()) {
    ::unlink(tmp.c_str());
    return std::move(r).error();
  }
  if (::rename(tmp.c_str(), image.c_str()) != 0) return SysError("rename " + tmp);
  return std::string(btrfs ? "btrfs" : "ext4");
}

// Type of an existing image from its superblock magic.
std::string ImageFsType(const std::string& image) {
  UniqueFd fd(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
  char magic[8] = {};
  if (fd && ::pread(fd.get(), magic, 8, 0x10040) == 8 && std::string_view(magic, 8) == "_BHRfS_M") return "btrfs";
  return "ext4";
}

// A layer dir is a btrfs subvolume iff its inode is the subvolume root (256).
bool IsSubvolume(const std::string& dir) {
  struct stat st;
  return ::lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_ino == 256;
}

std::string DefaultPasswd() {
  return "root:x:0:0:root:/root:/bin/bash\n"
         "user:x:1000:1000:user:/home/user:/bin/bash\n"
         "_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n"
         "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
}
std::string DefaultGroup() {
  return "root:x:0:\ntty:x:5:\nusers:x:100:user\nuser:x:1000:\nnogroup:x:65534:\n";
}
std::string DefaultNsswitch() {
  return "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"
         "protocols: files\nservices: files\nethers: files\nrpc: files\n";
}

Status SeedDefaultLayout(const std::string& upper, uid_t base, const std::string& hostname,
                         const std::string& nameserver) {
  const uid_t r = base, u = base + kUserUid;
  COVE_TRY(MkdirOwned(upper + "/workspace", 0755, r, r));
  COVE_TRY(MkdirOwned(upper + "/tmp", 01777, r, r));
  COVE_TRY(MkdirOwned(upper + "/var", 0755, r, r));
  COVE_TRY(MkdirOwned(upper + "/var/tmp", 01777, r, r));
  COVE_TRY(MkdirOwned(upper + "/run", 0755, r, r));
  COVE_TRY(MkdirOwned(upper + "/root", 0700, r, r));
  COVE_TRY(MkdirOwned(upper + "/home", 0755, r, r));
  COVE_TRY(MkdirOwned(upper + "/home/user", 0755, u, u));
  const std::string etc = upper + "/etc";
  COVE_TRY(MkdirOwned(etc, 0755, r, r));
  COVE_TRY(sys::WriteFileAs(etc + "/passwd", DefaultPasswd(), 0644, r, r));
  COVE_TRY(sys::WriteFileAs(etc + "/group", DefaultGroup(), 0644, r, r));
  COVE_TRY(sys::WriteFileAs(etc + "/hosts",
                            "127.0.0.1\tlocalhost " + hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n",
                            0644, r, r));
  COVE_TRY(sys::WriteFileAs(etc + "/hostname", hostname + "\n", 0644, r, r));
  COVE_TRY(sys::WriteFileAs(etc + "/resolv.conf", "nameserver " + nameserver + "\n", 0644, r, r));
  COVE_TRY(sys::WriteFileAs(etc + "/nsswitch.conf", DefaultNsswitch(), 0644, r, r));
  return OkStatus();
}

// coved's CA for the sandbox's TLS clients (LayerSeed::trusted_ca_pem).
Status SeedTrust(const std::string& upper, uid_t base, const LayerSeed& seed) {
  if (seed.trusted_ca_pem.empty()) return OkStatus();
  const uid_t r = base;
  COVE_TRY(MkdirOwned(upper + "/etc", 0755, r, r));
  COVE_TRY(MkdirOwned(upper + "/etc/cove", 0755, r, r));
  COVE_TRY(sys::WriteFileAs(upper + "/etc/cove/ca.crt", seed.trusted_ca_pem, 0644, r, r));
  COVE_TRY(sys::WriteFileAs(upper + "/etc/cove/ca-bundle.crt", seed.ca_bundle_pem, 0644, r, r));
  if (seed.default_layout) {
    COVE_TRY(MkdirOwned(upper + "/etc/ssl", 0755, r, r));
    COVE_TRY(MkdirOwned(upper + "/etc/ssl/certs", 0755, r, r));
    COVE_TRY(sys::WriteFileAs(upper + "/etc/ssl/certs/ca-certificates.crt", seed.ca_bundle_pem, 0644, r, r));
  }
  return OkStatus();
}

// Layer file systems whose image file was deleted while mounted (a temporary
// state dir removed without LayerStore::Unmount) can never be reused: detach
// them so their loop devices go away. Running sandboxes on them keep working
// until they end (MNT_DETACH).
void DetachOrphanedLayerMounts() {
  auto mi = sys::ReadFile("/proc/self/mountinfo", 4 << 20);
  if (!mi.ok()) return;
  size_t pos = 0;
  while (pos < mi->size()) {
    size_t end = mi->find('\n', pos);
    if (end == std::string::npos) end = mi->size();
    std::string_view line(mi->data() + pos, end - pos);
    pos = end + 1;
    // "... <mount point> <opts> ... - <fstype> /dev/loopN <super opts>"
    size_t dash = line.find(" - ");
    if (dash == std::string_view::npos) continue;
    std::string_view tail = line.substr(dash + 3);
    size_t sp1 = tail.find(' '), sp2 = tail.find(' ', sp1 + 1);
    if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) continue;
    std::string_view source = tail.substr(sp1 + 1, sp2 - sp1 - 1);
    if (source.substr(0, 9) != "/dev/loop") continue;
    size_t f = 0;
    for (int i = 0; i < 4 && f != std::string_view::npos; ++i) f = line.find(' ', f + 1);
    if (f == std::string_view::npos) continue;
    size_t mp_end = line.find(' ', f + 1);
    std::string mount_point(line.substr(f + 1, mp_end - f - 1));
    if (mount_point.size() < 7 || mount_point.compare(mount_point.size() - 7, 7, "/layers") != 0) continue;
    auto backing = sys::ReadFile("/sys/block/" + std::string(source.substr(5)) + "/loop/backing_file", 4096);
    if (!backing.ok()) continue;
    std::string_view b = *backing;
    while (!b.empty() && b.back() == '\n') b.remove_suffix(1);
    constexpr std::string_view kDeleted = "/layers.img (deleted)";
    if (b.size() < kDeleted.size() || b.substr(b.size() - kDeleted.size()) != kDeleted) continue;
    if (::umount2(mount_point.c_str(), MNT_DETACH) == 0)
      log::Info("detached orphaned layer file system {} (its image was deleted)", mount_point);
  }
}

}  // namespace

Result<LayerStore> LayerStore::Open(const std::string& state_dir, const LayerStoreOptions& options) {
  COVE_TRY(ValidateAbsolutePath(state_dir));
  COVE_TRY(sys::MkdirAll(state_dir, 0711));
  // The sandbox's root (an unmapped host uid) must be able to walk to its layer.
  COVE_TRY(EnsureSearchable(state_dir));
  LayerStore s;
  s.layers_dir_ = state_dir + "/layers";
  COVE_TRY(sys::MkdirAll(s.layers_dir_, 0711));

  // One opener at a time: creating and mounting the image is not idempotent.
  std::string lock_path = state_dir + "/layers.lock";
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) return SysError("open " + lock_path);
  while (::flock(lock.get(), LOCK_EX) != 0)
    if (errno != EINTR) return SysError("flock " + lock_path);

  DetachOrphanedLayerMounts();
  auto open_fs = [&]() -> Status {
    s.fs_fd_.Reset(::open(s.layers_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!s.fs_fd_) return SysError("open " + s.layers_dir_);
    s.backend_ = QuotaBackend::kNone;
    if (sys::IsBtrfs(s.fs_fd_.get())) {
      if (!sys::BtrfsQuotaEnabled(s.fs_fd_.get())) COVE_TRY(sys::BtrfsEnableQuota(s.fs_fd_.get()));
      s.backend_ = QuotaBackend::kBtrfs;
    } else if (sys::ProjectQuotaEnforced(s.fs_fd_.get())) {
      s.backend_ = QuotaBackend::kProject;
    }
    return OkStatus();
  };
  COVE_ASSIGN_OR_RETURN(bool mounted, sys::IsMountPoint(s.layers_dir_));
  const std::string image = state_dir + "/layers.img";
  if (!mounted) COVE_TRY(open_fs());
  if (mounted) {
    s.uses_image_ = sys::PathExists(image);
    COVE_TRY(open_fs());
  } else if (s.backend_ == QuotaBackend::kNone || options.force_image) {
    std::string fstype;
    if (!sys::PathExists(image)) {
      log::Info("creating layer file system {} ({} GiB sparse)", image, options.image_bytes >> 30);
      COVE_ASSIGN_OR_RETURN(fstype, CreateImageFs(image, options.image_bytes));
    } else {
      fstype = ImageFsType(image);
    }
    COVE_ASSIGN_OR_RETURN(sys::LoopDevice loop, sys::AttachLoopDevice(image, false));
    const char* opts = fstype == "ext4" ? "prjquota" : nullptr;
    if (::mount(loop.path.c_str(), s.layers_dir_.c_str(), fstype.c_str(), MS_NOSUID | MS_NODEV, opts) != 0)
      return SysError("mount " + loop.path + " (" + fstype + ") on " + s.layers_dir_);
    // loop.fd closes here; LO_FLAGS_AUTOCLEAR detaches the device at unmount.
    s.uses_image_ = true;
    COVE_TRY(open_fs());
  }
  COVE_TRY(EnsureSearchable(s.layers_dir_));
  if (s.backend_ == QuotaBackend::kNone)
    log::Warn("layer file system {} enforces no quotas: disk limits are off", s.layers_dir_);
  if (s.backend_ == QuotaBackend::kBtrfs) s.CollectStaleQgroups();
  return s;
}

Result<std::string> LayerStore::CreateLayer(const std::string& id, uint64_t disk_bytes, uid_t host_id_base,
                                            const LayerSeed& seed) const {
  COVE_TRY(ValidateSandboxId(id));
  if (host_id_base == 0) return MakeError(ErrorCode::kInvalidArgument, "host_id_base must not be 0");
  const std::string dir = LayerDir(id);
  if (sys::PathExists(dir)) return Error{ErrorCode::kAlreadyExists, EEXIST, "layer exists: " + dir, {}};
  if (backend_ == QuotaBackend::kBtrfs) {
    if (auto st = sys::BtrfsCreateSubvolume(fs_fd_.get(), id); !st.ok()) {
      if (st.error().sys_errno == EEXIST) return Error{ErrorCode::kAlreadyExists, EEXIST, "layer exists: " + dir, {}};
      return std::move(st).error();
    }
  } else if (::mkdir(dir.c_str(), 0711) != 0) {
    if (errno == EEXIST) return Error{ErrorCode::kAlreadyExists, EEXIST, "layer exists: " + dir, {}};
    return SysError("mkdir " + dir);
  }
  ScopeExit undo([&] { (void)RemoveLayer(id); });
  if (::chmod(dir.c_str(), 0711) != 0) return SysError("chmod " + dir);
  if (backend_ == QuotaBackend::kBtrfs) {
    UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dfd) return SysError("open " + dir);
    COVE_TRY(sys::BtrfsLimitSubvolume(dfd.get(), disk_bytes));
  } else if (backend_ == QuotaBackend::kProject) {
    UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dfd) return SysError("open " + dir);
    COVE_TRY(sys::SetProjectId(dfd.get(), host_id_base));
    sys::ProjectQuota q;
    q.bytes_hard = disk_bytes;
    q.inodes_hard = disk_bytes ? std::max<uint64_t>(65536, disk_bytes / 4096) : 0;
    COVE_TRY(sys::SetProjectQuota(fs_fd_.get(), host_id_base, q));
  }
  const uid_t r = host_id_base;
  COVE_TRY(MkdirOwned(dir + "/upper", 0755, r, r));
  COVE_TRY(MkdirOwned(dir + "/work", 0700, r, r));
  COVE_TRY(MkdirOwned(dir + "/root", 0755, 0, 0));
  COVE_TRY(MkdirOwned(dir + "/lower", 0755, 0, 0));
  if (seed.default_layout) COVE_TRY(SeedDefaultLayout(dir + "/upper", host_id_base, seed.hostname.empty() ? id : seed.hostname, seed.nameserver));
  COVE_TRY(SeedTrust(dir + "/upper", host_id_base, seed));
  undo.Release();
  return dir;
}

Status LayerStore::RemoveLayer(const std::string& id) const {
  COVE_TRY(ValidateSandboxId(id));
  const std::string dir = LayerDir(id);
  if (backend_ == QuotaBackend::kBtrfs && IsSubvolume(dir)) {
    uint64_t subvol = 0;
    if (UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)); dfd) {
      auto sv = sys::BtrfsSubvolumeId(dfd.get());
      if (sv.ok()) subvol = *sv;
    }
    COVE_TRY(sys::BtrfsDeleteSubvolume(fs_fd_.get(), id));
    // The qgroup goes once the cleaner has freed the subvolume; until then
    // this fails with EBUSY and the next Open() collects it.
    if (subvol != 0) (void)sys::BtrfsDestroyQgroup(fs_fd_.get(), subvol);
    return OkStatus();
  }
  uint32_t projid = 0;
  if (backend_ == QuotaBackend::kProject) {
    UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (dfd) {
      auto p = sys::GetProjectId(dfd.get());
      if (p.ok()) projid = *p;
    }
  }
  COVE_TRY(sys::RemoveTree(dir));
  if (projid != 0) COVE_TRY(sys::SetProjectQuota(fs_fd_.get(), projid, {}));
  return OkStatus();
}

void LayerStore::CollectStaleQgroups() const {
  std::set<uint64_t> live;
  if (auto ids = List(); ids.ok()) {
    for (const auto& id : *ids) {
      UniqueFd dfd(::open(LayerDir(id).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!dfd) continue;
      if (auto sv = sys::BtrfsSubvolumeId(dfd.get()); sv.ok()) live.insert(*sv);
    }
  }
  auto groups = sys::BtrfsLevel0Qgroups(fs_fd_.get());
  if (!groups.ok()) return;
  for (uint64_t g : *groups)
    if (g > 5 && !live.count(g)) (void)sys::BtrfsDestroyQgroup(fs_fd_.get(), g);
}

Result<std::vector<std::string>> LayerStore::List() const {
  std::vector<std::string> out;
  DIR* d = ::opendir(layers_dir_.c_str());
  if (d == nullptr) return SysError("opendir " + layers_dir_);
  while (dirent* e = ::readdir(d))
    if (e->d_type == DT_DIR && ValidateSandboxId(e->d_name).ok()) out.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

Result<uint64_t> LayerStore::UsageBytes(const std::string& id) const {
  if (backend_ == QuotaBackend::kNone) return uint64_t{0};
  UniqueFd dfd(::open(LayerDir(id).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dfd) return SysError("open layer " + id);
  if (backend_ == QuotaBackend::kBtrfs) {
    COVE_ASSIGN_OR_RETURN(uint64_t sv, sys::BtrfsSubvolumeId(dfd.get()));
    return sys::BtrfsQgroupReferenced(fs_fd_.get(), sv);
  }
  COVE_ASSIGN_OR_RETURN(uint32_t projid, sys::GetProjectId(dfd.get()));
  return sys::ProjectUsageBytes(fs_fd_.get(), projid);
}

Status LayerStore::Unmount() {
  fs_fd_.Reset();
  if (!uses_image_) return OkStatus();
  if (::umount2(layers_dir_.c_str(), 0) != 0) {
    if (errno == EINVAL) return OkStatus();  // not mounted
    if (errno != EBUSY || ::umount2(layers_dir_.c_str(), MNT_DETACH) != 0)
      return SysError("umount " + layers_dir_);
  }
  return OkStatus();
}

}  // namespace cove::isolation
