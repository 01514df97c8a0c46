// File-system helpers over paths owned by coved (state, layers, images).
// None of them follow a symlink in the last component unless stated.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "base/error.h"

namespace cove::sys {

// mkdir -p; existing directories are fine (their mode is left alone).
Status MkdirAll(const std::string& path, mode_t mode);
// Removes path and everything below it without following symlinks and
// without crossing into other file systems (a mount below path fails with
// EBUSY and leaves it). A missing path is OK. Uses a constant number of fds
// and no recursion, so hostile deep trees cannot exhaust the caller.
Status RemoveTree(const std::string& path);
// mkdir (an existing directory is fine), then its owner and exact mode (the
// umask does not apply). For paths coved owns: chmod follows a symlink.
Status MkdirOwned(const std::string& path, mode_t mode, uid_t uid, gid_t gid);
// Creates or replaces a regular file (not through a symlink) with the given
// content, mode and owner.
Status WriteFileAs(const std::string& path, std::string_view data, mode_t mode, uid_t uid,
                   gid_t gid);
// Copies a regular file's content to `to` (created with mode; replaced if present).
Status CopyFile(const std::string& from, const std::string& to, mode_t mode);
// lstat(2) says something exists at path.
bool PathExists(const std::string& path);
// True if path is the root of a mount (different device or mount id from its parent).
Result<bool> IsMountPoint(const std::string& path);

}  // namespace cove::sys
