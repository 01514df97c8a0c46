#include "sys/project_quota.h"

#include <linux/fs.h>
#include <linux/dqblk_xfs.h>
#include <linux/quota.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#ifndef SYS_quotactl_fd
#define SYS_quotactl_fd 443
#endif

namespace cove::sys {

namespace {
long QuotactlFd(int fd, unsigned cmd, int id, void* addr) {
  return ::syscall(SYS_quotactl_fd, fd, cmd, id, addr);
}
}  // namespace

Status SetProjectId(int dir_fd, uint32_t projid) {
  fsxattr fa;
  std::memset(&fa, 0, sizeof fa);
  if (::ioctl(dir_fd, FS_IOC_FSGETXATTR, &fa) != 0) return SysError("FS_IOC_FSGETXATTR");
  fa.fsx_projid = projid;
  fa.fsx_xflags |= FS_XFLAG_PROJINHERIT;
  if (::ioctl(dir_fd, FS_IOC_FSSETXATTR, &fa) != 0) return SysError("FS_IOC_FSSETXATTR");
  return OkStatus();
}

Result<uint32_t> GetProjectId(int fd) {
  fsxattr fa;
  std::memset(&fa, 0, sizeof fa);
  if (::ioctl(fd, FS_IOC_FSGETXATTR, &fa) != 0) return SysError("FS_IOC_FSGETXATTR");
  return fa.fsx_projid;
}

Status SetProjectQuota(int fs_fd, uint32_t projid, const ProjectQuota& q) {
  if_dqblk d;
  std::memset(&d, 0, sizeof d);
  // Block limits are in 1 KiB quota blocks; round up so tiny limits are not 0 (= unlimited).
  d.dqb_bhardlimit = (q.bytes_hard + 1023) / 1024;
  d.dqb_bsoftlimit = 0;
  d.dqb_ihardlimit = q.inodes_hard;
  d.dqb_valid = QIF_LIMITS;
  if (QuotactlFd(fs_fd, QCMD(Q_SETQUOTA, PRJQUOTA), static_cast<int>(projid), &d) != 0)
    return SysError("quotactl Q_SETQUOTA prj " + std::to_string(projid));
  return OkStatus();
}

Result<uint64_t> ProjectUsageBytes(int fs_fd, uint32_t projid) {
  if_dqblk d;
  std::memset(&d, 0, sizeof d);
  if (QuotactlFd(fs_fd, QCMD(Q_GETQUOTA, PRJQUOTA), static_cast<int>(projid), &d) != 0)
    return SysError("quotactl Q_GETQUOTA prj " + std::to_string(projid));
  return static_cast<uint64_t>(d.dqb_curspace);
}

}  // namespace cove::sys

namespace cove::sys {
bool ProjectQuotaEnforced(int fs_fd) {
  fs_quota_statv st;
  std::memset(&st, 0, sizeof st);
  st.qs_version = FS_QSTATV_VERSION1;
  if (::syscall(SYS_quotactl_fd, fs_fd, QCMD(Q_XGETQSTATV, PRJQUOTA), 0, &st) != 0) return false;
  return (st.qs_flags & FS_QUOTA_PDQ_ENFD) != 0;
}
}  // namespace cove::sys
