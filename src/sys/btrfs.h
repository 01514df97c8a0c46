// Btrfs subvolumes and quota groups, through ioctls (no btrfs-progs needed
// at run time). A subvolume with a qgroup limit is a directory tree whose
// writes fail with EDQUOT once it references more than the limit; deleting it
// is O(1) for the caller (the kernel's cleaner frees the space later).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"

namespace cove::sys {

bool IsBtrfs(int fd);
// Creates parent_fd/name as a subvolume.
Status BtrfsCreateSubvolume(int parent_fd, const std::string& name);
// Deletes the subvolume parent_fd/name with everything in it.
Status BtrfsDeleteSubvolume(int parent_fd, const std::string& name);
// Id of the subvolume that fd lives in.
Result<uint64_t> BtrfsSubvolumeId(int fd);
// Enables quota groups on the file system of fs_fd: simple quotas (6.7+,
// cheaper accounting) if the kernel has them, else full qgroups.
Status BtrfsEnableQuota(int fs_fd);
bool BtrfsQuotaEnabled(int fs_fd);
// Limits the referenced bytes of the subvolume that subvol_fd lives in (0 = none).
Status BtrfsLimitSubvolume(int subvol_fd, uint64_t max_bytes);
// Removes the level-0 qgroup of a deleted subvolume (EBUSY while the kernel
// still frees it; harmless to leave for later).
Status BtrfsDestroyQgroup(int fs_fd, uint64_t subvol_id);
// Ids of all level-0 qgroups (from sysfs).
Result<std::vector<uint64_t>> BtrfsLevel0Qgroups(int fs_fd);
// Bytes referenced by the subvolume's qgroup (from sysfs).
Result<uint64_t> BtrfsQgroupReferenced(int fs_fd, uint64_t subvol_id);

}  // namespace cove::sys
