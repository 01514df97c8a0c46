#include "sys/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "sys/io.h"
#include "sys/unique_fd.h"

namespace cove::sys {

Status MkdirOwned(const std::string& path, mode_t mode, uid_t uid, gid_t gid) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return SysError("mkdir " + path);
  if (::lchown(path.c_str(), uid, gid) != 0) return SysError("chown " + path);
  if (::chmod(path.c_str(), mode) != 0) return SysError("chmod " + path);  // mkdir applies umask
  return OkStatus();
}

Status MkdirAll(const std::string& path, mode_t mode) {
  if (path.empty()) return MakeError(ErrorCode::kInvalidArgument, "empty path");
  size_t pos = 0;
  for (;;) {
    pos = path.find('/', pos + 1);
    std::string part = path.substr(0, pos);
    if (!part.empty() && ::mkdir(part.c_str(), mode) != 0 && errno != EEXIST)
      return SysError("mkdir " + part);
    if (pos == std::string::npos) break;
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return SysError("stat " + path);
  if (!S_ISDIR(st.st_mode)) return SysError("mkdir " + path, ENOTDIR);
  return OkStatus();
}

namespace {

// Empties the directory open at fd by one pass; returns the name of a
// non-empty subdirectory to descend into in `descend`, or empty if done.
Status SweepOnce(int fd, dev_t dev, std::string* descend) {
  descend->clear();
  int dup_fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return SysError("dup");
  DIR* d = ::fdopendir(dup_fd);
  if (d == nullptr) {
    ::close(dup_fd);
    return SysError("fdopendir");
  }
  ::rewinddir(d);
  Status st;
  while (dirent* e = ::readdir(d)) {
    const char* n = e->d_name;
    if (std::strcmp(n, ".") == 0 || std::strcmp(n, "..") == 0) continue;
    struct stat sb;
    if (::fstatat(fd, n, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      st = SysError(std::string("stat ") + n);
      break;
    }
    if (!S_ISDIR(sb.st_mode)) {
      if (::unlinkat(fd, n, 0) != 0 && errno != ENOENT) {
        st = SysError(std::string("unlink ") + n);
        break;
      }
      continue;
    }
    if (sb.st_dev != dev) {
      st = SysError(std::string("refusing to cross mount at ") + n, EBUSY);
      break;
    }
    if (::unlinkat(fd, n, AT_REMOVEDIR) == 0 || errno == ENOENT) continue;
    if (errno != ENOTEMPTY && errno != EEXIST) {
      st = SysError(std::string("rmdir ") + n);
      break;
    }
    *descend = n;
    break;
  }
  ::closedir(d);
  return st;
}

}  // namespace

Status RemoveTree(const std::string& path) {
  struct stat root;
  if (::lstat(path.c_str(), &root) != 0) {
    if (errno == ENOENT) return OkStatus();
    return SysError("stat " + path);
  }
  if (!S_ISDIR(root.st_mode)) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return SysError("unlink " + path);
    return OkStatus();
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return SysError("open " + path);
  int depth = 0;
  std::string sub;
  for (;;) {
    if (auto s = SweepOnce(fd.get(), root.st_dev, &sub); !s.ok())
      return std::move(s).error().With("path", path);
    if (!sub.empty()) {
      UniqueFd child(::openat(fd.get(), sub.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!child) {
        // A directory we cannot open (e.g. mode 000): make it accessible and retry.
        if (::fchmodat(fd.get(), sub.c_str(), 0700, 0) != 0) return SysError("open " + sub);
        continue;
      }
      fd = std::move(child);
      ++depth;
      continue;
    }
    if (depth == 0) break;
    UniqueFd parent(::openat(fd.get(), "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!parent) return SysError("open ..");
    fd = std::move(parent);
    --depth;
  }
  fd.Reset();
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT) return SysError("rmdir " + path);
  return OkStatus();
}

Status WriteFileAs(const std::string& path, std::string_view data, mode_t mode, uid_t uid,
                   gid_t gid) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return SysError("unlink " + path);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) return SysError("create " + path);
  COVE_TRY(WriteAll(fd.get(), data));
  if (::fchown(fd.get(), uid, gid) != 0) return SysError("chown " + path);
  if (::fchmod(fd.get(), mode) != 0) return SysError("chmod " + path);
  return OkStatus();
}

Status CopyFile(const std::string& from, const std::string& to, mode_t mode) {
  UniqueFd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return SysError("open " + from);
  if (::unlink(to.c_str()) != 0 && errno != ENOENT) return SysError("unlink " + to);
  UniqueFd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!out) return SysError("create " + to);
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(in.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysError("read " + from);
    }
    if (n == 0) break;
    COVE_TRY(WriteAll(out.get(), std::string_view(buf, static_cast<size_t>(n))));
  }
  if (::fchmod(out.get(), mode) != 0) return SysError("chmod " + to);
  return OkStatus();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

Result<bool> IsMountPoint(const std::string& path) {
  struct statx a, b;
  if (::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &a) != 0)
    return SysError("statx " + path);
  std::string parent = path + "/..";
  if (::statx(AT_FDCWD, parent.c_str(), 0, STATX_MNT_ID, &b) != 0)
    return SysError("statx " + parent);
  if (a.stx_dev_major != b.stx_dev_major || a.stx_dev_minor != b.stx_dev_minor) return true;
  if ((a.stx_mask & STATX_MNT_ID) && (b.stx_mask & STATX_MNT_ID)) return a.stx_mnt_id != b.stx_mnt_id;
  return false;
}

}  // namespace cove::sys
