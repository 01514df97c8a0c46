#include "sys/btrfs.h"

#include <dirent.h>
#include <linux/btrfs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstring>

#include "sys/io.h"

namespace cove::sys {

namespace {
constexpr uint64_t kEnableSimpleQuota = 4;  // BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA (6.7+)

Result<std::string> Fsid(int fd) {
  btrfs_ioctl_fs_info_args info;
  std::memset(&info, 0, sizeof info);
  if (::ioctl(fd, BTRFS_IOC_FS_INFO, &info) != 0) return SysError("BTRFS_IOC_FS_INFO");
  char buf[40];
  const unsigned char* u = info.fsid;
  std::snprintf(buf, sizeof buf, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
                u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
  return std::string(buf);
}

Status CopyName(char* dst, size_t cap, const std::string& name) {
  if (name.empty() || name.size() >= cap || name.find('/') != std::string::npos)
    return MakeError(ErrorCode::kInvalidArgument, "bad subvolume name");
  std::memcpy(dst, name.c_str(), name.size() + 1);
  return OkStatus();
}
}  // namespace

bool IsBtrfs(int fd) {
  struct statfs sf;
  return ::fstatfs(fd, &sf) == 0 && sf.f_type == BTRFS_SUPER_MAGIC;
}

Status BtrfsCreateSubvolume(int parent_fd, const std::string& name) {
  btrfs_ioctl_vol_args args;
  std::memset(&args, 0, sizeof args);
  COVE_TRY(CopyName(args.name, sizeof args.name, name));
  if (::ioctl(parent_fd, BTRFS_IOC_SUBVOL_CREATE, &args) != 0) return SysError("create subvolume " + name);
  return OkStatus();
}

Status BtrfsDeleteSubvolume(int parent_fd, const std::string& name) {
  btrfs_ioctl_vol_args args;
  std::memset(&args, 0, sizeof args);
  COVE_TRY(CopyName(args.name, sizeof args.name, name));
  if (::ioctl(parent_fd, BTRFS_IOC_SNAP_DESTROY, &args) != 0) return SysError("delete subvolume " + name);
  return OkStatus();
}

Result<uint64_t> BtrfsSubvolumeId(int fd) {
  btrfs_ioctl_ino_lookup_args args;
  std::memset(&args, 0, sizeof args);
  args.objectid = 256;  // BTRFS_FIRST_FREE_OBJECTID: the subvolume root dir
  if (::ioctl(fd, BTRFS_IOC_INO_LOOKUP, &args) != 0) return SysError("BTRFS_IOC_INO_LOOKUP");
  return static_cast<uint64_t>(args.treeid);
}

Status BtrfsEnableQuota(int fs_fd) {
  btrfs_ioctl_quota_ctl_args args;
  std::memset(&args, 0, sizeof args);
  args.cmd = kEnableSimpleQuota;
  if (::ioctl(fs_fd, BTRFS_IOC_QUOTA_CTL, &args) == 0) return OkStatus();
  args.cmd = BTRFS_QUOTA_CTL_ENABLE;
  if (::ioctl(fs_fd, BTRFS_IOC_QUOTA_CTL, &args) != 0) return SysError("enable btrfs quota");
  return OkStatus();
}

bool BtrfsQuotaEnabled(int fs_fd) {
  auto id = Fsid(fs_fd);
  if (!id.ok()) return false;
  struct stat st;
  return ::stat(("/sys/fs/btrfs/" + *id + "/qgroups").c_str(), &st) == 0;
}

Status BtrfsLimitSubvolume(int subvol_fd, uint64_t max_bytes) {
  btrfs_ioctl_qgroup_limit_args args;
  std::memset(&args, 0, sizeof args);
  args.qgroupid = 0;  // the subvolume subvol_fd is in
  args.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
  args.lim.max_rfer = max_bytes ? max_bytes : static_cast<__u64>(-1);
  if (::ioctl(subvol_fd, BTRFS_IOC_QGROUP_LIMIT, &args) != 0) return SysError("btrfs qgroup limit");
  return OkStatus();
}

Status BtrfsDestroyQgroup(int fs_fd, uint64_t subvol_id) {
  btrfs_ioctl_qgroup_create_args args;
  std::memset(&args, 0, sizeof args);
  args.create = 0;
  args.qgroupid = subvol_id;
  if (::ioctl(fs_fd, BTRFS_IOC_QGROUP_CREATE, &args) != 0 && errno != ENOENT)
    return SysError("destroy qgroup 0/" + std::to_string(subvol_id));
  return OkStatus();
}

Result<uint64_t> BtrfsQgroupReferenced(int fs_fd, uint64_t subvol_id) {
  COVE_ASSIGN_OR_RETURN(std::string id, Fsid(fs_fd));
  COVE_ASSIGN_OR_RETURN(std::string text, ReadFile("/sys/fs/btrfs/" + id + "/qgroups/0_" +
                                                   std::to_string(subvol_id) + "/referenced", 64));
  uint64_t v = 0;
  std::from_chars(text.data(), text.data() + text.size(), v);
  return v;
}

Result<std::vector<uint64_t>> BtrfsLevel0Qgroups(int fs_fd) {
  COVE_ASSIGN_OR_RETURN(std::string id, Fsid(fs_fd));
  std::string dir = "/sys/fs/btrfs/" + id + "/qgroups";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return SysError("opendir " + dir);
  std::vector<uint64_t> out;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n.substr(0, 2) != "0_") continue;
    uint64_t v = 0;
    if (std::from_chars(n.data() + 2, n.data() + n.size(), v).ec == std::errc()) out.push_back(v);
  }
  ::closedir(d);
  return out;
}

}  // namespace cove::sys
