// Project quotas (ext4 -O quota,project mounted with prjquota, or XFS pquota):
// a directory tree tagged with a project id is limited as one unit.
#pragma once

#include <cstdint>

#include "base/error.h"

namespace cove::sys {

// Tags the directory open at dir_fd with projid and FS_XFLAG_PROJINHERIT, so
// everything created below inherits the project.
Status SetProjectId(int dir_fd, uint32_t projid);
Result<uint32_t> GetProjectId(int fd);

struct ProjectQuota {
  uint64_t bytes_hard = 0;   // 0 = unlimited
  uint64_t inodes_hard = 0;  // 0 = unlimited
};
// Sets the hard limits of projid on the file system that fs_fd lives on
// (quotactl_fd(2), no block device path needed).
Status SetProjectQuota(int fs_fd, uint32_t projid, const ProjectQuota& q);
// Bytes currently charged to projid.
Result<uint64_t> ProjectUsageBytes(int fs_fd, uint32_t projid);

}  // namespace cove::sys

namespace cove::sys {
// True if the file system that fs_fd lives on enforces project quotas.
bool ProjectQuotaEnforced(int fs_fd);
}  // namespace cove::sys
