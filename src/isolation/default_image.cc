#include "isolation/default_image.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "base/log.h"
#include "isolation/validate.h"
#include "sys/fs.h"
#include "sys/io.h"
#include "sys/unique_fd.h"

namespace cove::isolation {

namespace {

constexpr const char* kVersion = "cove-default-image 4\n";
// The host's package database: copied into the image, so that apt and dpkg in
// a sandbox know what its /usr holds; the image is rebuilt when it changes.
constexpr const char* kDpkgDir = "/var/lib/dpkg";
constexpr const char* kStamp = ".default.version";  // beside the image, not inside
constexpr const char* kCaBundle = "/etc/ssl/certs/ca-certificates.crt";

// Top-level entries that are symlinks on merged-/usr hosts, or directories to bind.
constexpr const char* kLibDirs[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};
// Empty directories of the skeleton (mount points and FHS places).
constexpr const char* kSkeletonDirs[] = {
    "usr", "proc", "dev", "sys", "etc", "workspace", "tmp", "home", "root", "run", "var",
    "var/tmp", "var/lib", "var/cache", "var/log", "var/spool", "mnt", "opt", "srv", "media"};
// Host /etc entries copied into the image: what programs from /usr need to
// work (dynamic linker cache, alternatives, shells, TLS roots, locale/time),
// nothing that identifies or authenticates the host (no shadow, ssh keys,
// machine-id, hosts, private keys).
constexpr const char* kEtcEntries[] = {
    "alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "bash.bashrc", "profile",
    "profile.d", "inputrc", "localtime", "timezone", "os-release", "debian_version", "shells",
    "login.defs", "mime.types", "nanorc", "environment", "host.conf", "protocols", "services",
    "ethers", "rpc", "networks", "gai.conf", "adduser.conf", "deluser.conf", "issue", "issue.net",
    "skel", "python3", "python3.11", "perl", "vim", "bash_completion.d", "fonts", "magic",
    "magic.mime", "xattr.conf", "locale.alias", "wgetrc", "gitconfig", "mtab", "terminfo",
    "ca-certificates.conf", "mailcap", "papersize", "ucf.conf", "matplotlibrc", "apt", "dpkg",
    "debconf.conf"};
// Directories apt and dpkg expect to find.
constexpr const char* kPackageDirs[] = {"var/lib/apt/lists/partial", "var/cache/apt/archives/partial",
                                        "var/log/apt", "var/cache/debconf"};

// Copies a trusted host tree (files, dirs, symlinks) without following symlinks.
Status CopyTree(const std::string& from, const std::string& to, int depth) {
  if (depth > 16) return OkStatus();
  struct stat st;
  if (::lstat(from.c_str(), &st) != 0) {
    if (errno == ENOENT) return OkStatus();
    return SysError("lstat " + from);
  }
  if (S_ISLNK(st.st_mode)) {
    char target[4096];
    ssize_t n = ::readlink(from.c_str(), target, sizeof target - 1);
    if (n < 0) return SysError("readlink " + from);
    target[n] = '\0';
    if (::symlink(target, to.c_str()) != 0) return SysError("symlink " + to);
    return OkStatus();
  }
  if (S_ISREG(st.st_mode)) {
    if (::access(from.c_str(), R_OK) != 0) return OkStatus();
    return sys::CopyFile(from, to, st.st_mode & 0755);  // never copy setuid/private bits
  }
  if (!S_ISDIR(st.st_mode)) return OkStatus();
  if (::mkdir(to.c_str(), 0755) != 0 && errno != EEXIST) return SysError("mkdir " + to);
  DIR* d = ::opendir(from.c_str());
  if (d == nullptr) return SysError("opendir " + from);
  Status s;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    if (n == "private") continue;  // /etc/ssl/private
    s = CopyTree(from + "/" + n, to + "/" + n, depth + 1);
    if (!s.ok()) break;
  }
  ::closedir(d);
  return s;
}

Status BuildSkeleton(const std::string& dir) {
  for (const char* lib : kLibDirs) {
    std::string host = std::string("/") + lib;
    struct stat st;
    if (::lstat(host.c_str(), &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = ::readlink(host.c_str(), target, sizeof target - 1);
      if (n < 0) return SysError("readlink " + host);
      target[n] = '\0';
      if (::symlink(target, (dir + "/" + lib).c_str()) != 0) return SysError("symlink " + std::string(lib));
    } else if (S_ISDIR(st.st_mode)) {
      if (::mkdir((dir + "/" + lib).c_str(), 0755) != 0) return SysError("mkdir " + std::string(lib));
    }
  }
  for (const char* d : kSkeletonDirs)
    if (::mkdir((dir + "/" + d).c_str(), 0755) != 0) return SysError("mkdir " + std::string(d));
  if (::chmod((dir + "/tmp").c_str(), 01777) != 0 || ::chmod((dir + "/var/tmp").c_str(), 01777) != 0 ||
      ::chmod((dir + "/root").c_str(), 0700) != 0)
    return SysError("chmod skeleton");
  for (const char* e : kEtcEntries) COVE_TRY(CopyTree(std::string("/etc/") + e, dir + "/etc/" + e, 0));
  COVE_TRY(sys::MkdirAll(dir + "/etc/ssl/certs", 0755));
  COVE_TRY(CopyTree("/etc/ssl/certs", dir + "/etc/ssl/certs", 0));
  COVE_TRY(CopyTree("/etc/ssl/openssl.cnf", dir + "/etc/ssl/openssl.cnf", 0));
  COVE_TRY(CopyTree(kDpkgDir, dir + kDpkgDir, 0));
  // The host's owner overrides name the host's users and groups, which a
  // sandbox's /etc does not have (dpkg would refuse to run).
  COVE_TRY(sys::WriteFileAs(dir + kDpkgDir + "/statoverride", "", 0644, 0, 0));
  for (const char* d : kPackageDirs) COVE_TRY(sys::MkdirAll(dir + "/" + d, 0755));
  if (!sys::PathExists(dir + "/etc/mtab")) (void)::symlink("../proc/self/mounts", (dir + "/etc/mtab").c_str());
  return OkStatus();
}

// What identifies the host's installed packages (the dpkg status file's size
// and modification time), or "" without dpkg.
std::string DpkgSignature() {
  struct stat st;
  if (::stat((std::string(kDpkgDir) + "/status").c_str(), &st) != 0) return "";
  return "dpkg-status " + std::to_string(st.st_size) + " " + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec) + "\n";
}

// The bundle is a symlinked file on the host: copy its content if it changed.
Status RefreshCaBundle(const std::string& dir) {
  std::string dst = dir + kCaBundle;
  auto host = sys::ReadFile(kCaBundle, 16 << 20);
  if (!host.ok()) return OkStatus();  // host has no bundle: nothing to offer
  auto cur = sys::ReadFile(dst, 16 << 20);
  if (cur.ok() && *cur == *host) return OkStatus();
  (void)::unlink(dst.c_str());
  return sys::WriteFileAs(dst, *host, 0644, 0, 0);
}

}  // namespace

Result<Image> EnsureDefaultImage(const std::string& images_dir) {
  COVE_TRY(ValidateAbsolutePath(images_dir));
  COVE_TRY(sys::MkdirAll(images_dir, 0711));
  struct stat st;
  if (::stat(images_dir.c_str(), &st) == 0 && (st.st_mode & 0001) == 0)
    (void)::chmod(images_dir.c_str(), (st.st_mode & 07777) | 0111);
  const std::string dir = images_dir + "/default";

  std::string lock_path = images_dir + "/.default.lock";
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) return SysError("open " + lock_path);
  while (::flock(lock.get(), LOCK_EX) != 0)
    if (errno != EINTR) return SysError("flock " + lock_path);

  const std::string stamp_path = images_dir + "/" + kStamp;
  const std::string want = kVersion + DpkgSignature();
  auto stamp = sys::ReadFile(stamp_path);
  if (!stamp.ok() || *stamp != want) {
    std::string tmp = images_dir + "/.default-build-" + std::to_string(::getpid());
    COVE_TRY(sys::RemoveTree(tmp));
    if (::mkdir(tmp.c_str(), 0755) != 0) return SysError("mkdir " + tmp);
    if (auto s = BuildSkeleton(tmp); !s.ok()) {
      (void)sys::RemoveTree(tmp);
      return std::move(s).error();
    }
    std::string old = images_dir + "/.default-old-" + std::to_string(::getpid());
    bool had_old = sys::PathExists(dir);
    if (had_old && ::rename(dir.c_str(), old.c_str()) != 0) return SysError("rename " + dir);
    if (::rename(tmp.c_str(), dir.c_str()) != 0) return SysError("rename " + tmp);
    if (had_old) (void)sys::RemoveTree(old);
    COVE_TRY(sys::WriteFileAs(stamp_path, want, 0644, 0, 0));
    log::Info("built default image in {}", dir);
  }
  COVE_TRY(RefreshCaBundle(dir));

  Image image;
  image.lower_dirs = {dir};
  image.host_dirs.push_back({"/usr", "/usr"});
  for (const char* lib : kLibDirs) {
    std::string host = std::string("/") + lib;
    if (::lstat(host.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) image.host_dirs.push_back({host, host});
  }
  return image;
}

}  // namespace cove::isolation
