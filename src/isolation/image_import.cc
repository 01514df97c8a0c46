#include "isolation/image_import.h"

#include <archive.h>
#include <archive_entry.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include "base/scope_exit.h"
#include "isolation/validate.h"
#include "sys/fs.h"

namespace cove::isolation {

namespace {

std::atomic<unsigned> g_import_seq{0};

Error ArchiveError(archive* a, const std::string& what) {
  const char* msg = archive_error_string(a);
  return Error{ErrorCode::kInvalidArgument, archive_errno(a) > 0 ? archive_errno(a) : 0,
               what + ": " + (msg ? msg : "unknown archive error"), {}};
}

// Normalises an entry name: strips leading "./" and trailing "/"; refuses
// absolute paths and "..". Returns "" for the root entry itself.
Result<std::string> SafeRelative(std::string_view name) {
  if (!name.empty() && name.front() == '/')
    return MakeError(ErrorCode::kInvalidArgument, "absolute path in image: " + std::string(name));
  std::string out;
  size_t i = 0;
  while (i <= name.size()) {
    size_t j = name.find('/', i);
    if (j == std::string_view::npos) j = name.size();
    std::string_view comp = name.substr(i, j - i);
    if (comp == "..") return MakeError(ErrorCode::kInvalidArgument, "'..' in image path: " + std::string(name));
    if (!comp.empty() && comp != ".") {
      if (!out.empty()) out += '/';
      out += comp;
    }
    i = j + 1;
  }
  if (out.size() > 4000) return MakeError(ErrorCode::kInvalidArgument, "image path too long");
  return out;
}

// Refuses rel if any directory on its way (below dest) is a symlink: an
// earlier entry must not redirect a later one out of the image. (libarchive's
// SECURE_SYMLINKS does not check absolute destination paths.)
Status CheckNoSymlinkParents(const std::string& dest, const std::string& rel) {
  size_t pos = 0;
  while ((pos = rel.find('/', pos)) != std::string::npos) {
    std::string p = dest + "/" + rel.substr(0, pos);
    struct stat st;
    if (::lstat(p.c_str(), &st) == 0) {
      if (S_ISLNK(st.st_mode)) return MakeError(ErrorCode::kInvalidArgument, "image path through a symlink: " + rel);
      if (!S_ISDIR(st.st_mode)) return MakeError(ErrorCode::kInvalidArgument, "image path through a non-directory: " + rel);
    } else if (errno == ENOENT) {
      return OkStatus();  // created as a plain directory from here on
    } else {
      return SysError("lstat " + p);
    }
    ++pos;
  }
  return OkStatus();
}

Status CopyData(archive* in, archive* out) {
  const void* buf;
  size_t size;
  la_int64_t offset;
  for (;;) {
    int r = archive_read_data_block(in, &buf, &size, &offset);
    if (r == ARCHIVE_EOF) return OkStatus();
    if (r < ARCHIVE_OK) return ArchiveError(in, "read entry data");
    if (archive_write_data_block(out, buf, size, offset) < ARCHIVE_OK) return ArchiveError(out, "write entry data");
  }
}

// Reads every entry of `in` (positioned before the first header) into dest.
// `strip` is a prefix removed from names first (for directory sources).
Status Extract(archive* in, bool from_disk, const std::string& strip, const std::string& dest) {
  archive* out = archive_write_disk_new();
  struct Free { archive* a; ~Free() { archive_write_free(a); } } free_out{out};
  archive_write_disk_set_options(out, ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                          ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_OWNER |
                                          ARCHIVE_EXTRACT_UNLINK);
  archive_entry* e = archive_entry_new();
  struct FreeEntry { archive_entry* e; ~FreeEntry() { archive_entry_free(e); } } free_e{e};
  for (;;) {
    int r = archive_read_next_header2(in, e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return ArchiveError(in, "read header");
    if (from_disk) archive_read_disk_descend(in);
    const char* raw = archive_entry_pathname(e);
    if (raw == nullptr) return MakeError(ErrorCode::kInvalidArgument, "entry without a name");
    std::string_view name = raw;
    if (from_disk) {
      if (name.substr(0, strip.size()) != strip) return MakeError(ErrorCode::kInternal, "unexpected disk path");
      name.remove_prefix(strip.size());
      while (!name.empty() && name.front() == '/') name.remove_prefix(1);
    }
    COVE_ASSIGN_OR_RETURN(std::string rel, SafeRelative(name));
    mode_t type = archive_entry_filetype(e);
    if (type == AE_IFCHR || type == AE_IFBLK)
      return MakeError(ErrorCode::kInvalidArgument, "device node in image: " + rel);
    if (type == AE_IFSOCK) continue;
    if (rel.empty()) continue;  // the root directory itself
    COVE_TRY(CheckNoSymlinkParents(dest, rel));
    archive_entry_copy_pathname(e, (dest + "/" + rel).c_str());
    if (const char* link = archive_entry_hardlink(e)) {
      std::string_view target = link;
      if (from_disk) {
        if (target.substr(0, strip.size()) == strip) target.remove_prefix(strip.size());
        while (!target.empty() && target.front() == '/') target.remove_prefix(1);
      }
      COVE_ASSIGN_OR_RETURN(std::string trel, SafeRelative(target));
      if (trel.empty()) return MakeError(ErrorCode::kInvalidArgument, "hard link to the root");
      COVE_TRY(CheckNoSymlinkParents(dest, trel));
      archive_entry_copy_hardlink(e, (dest + "/" + trel).c_str());
    }
    if (archive_write_header(out, e) < ARCHIVE_WARN) return ArchiveError(out, "extract " + rel);
    if (archive_entry_size(e) > 0 && archive_entry_hardlink(e) == nullptr) COVE_TRY(CopyData(in, out));
    if (archive_write_finish_entry(out) < ARCHIVE_WARN) return ArchiveError(out, "finish " + rel);
  }
  if (archive_write_close(out) != ARCHIVE_OK) return ArchiveError(out, "close extraction");
  return OkStatus();
}

}  // namespace

Status ValidateImageName(const std::string& name) {
  if (name.empty() || name.size() > 63 || name == "default")
    return MakeError(ErrorCode::kInvalidArgument, "bad image name");
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '.' || c == '_' || c == '-'));
    if (!ok) return MakeError(ErrorCode::kInvalidArgument, "image name must match [a-z0-9][a-z0-9._-]*");
  }
  return OkStatus();
}

Result<Image> ImportImage(const std::string& images_dir_in, const std::string& name, const std::string& source) {
  COVE_TRY(ValidateImageName(name));
  COVE_TRY(sys::MkdirAll(images_dir_in, 0711));
  char real[PATH_MAX];
  if (::realpath(images_dir_in.c_str(), real) == nullptr) return SysError("realpath " + images_dir_in);
  const std::string images_dir = real;
  const std::string final_dir = images_dir + "/" + name;
  if (sys::PathExists(final_dir)) return Error{ErrorCode::kAlreadyExists, EEXIST, "image exists: " + name, {}};

  struct stat st;
  if (::stat(source.c_str(), &st) != 0) return SysError("stat " + source);
  const std::string tmp = images_dir + "/.import-" + name + "-" + std::to_string(::getpid()) + "-" +
                          std::to_string(g_import_seq.fetch_add(1));
  if (::mkdir(tmp.c_str(), 0755) != 0) return SysError("mkdir " + tmp);
  ScopeExit remove_tmp([&] { (void)sys::RemoveTree(tmp); });

  if (S_ISDIR(st.st_mode)) {
    char src_real[PATH_MAX];
    if (::realpath(source.c_str(), src_real) == nullptr) return SysError("realpath " + source);
    archive* in = archive_read_disk_new();
    struct Free { archive* a; ~Free() { archive_read_free(a); } } free_in{in};
    archive_read_disk_set_symlink_physical(in);
    archive_read_disk_set_behavior(in, ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS | ARCHIVE_READDISK_NO_XATTR |
                                           ARCHIVE_READDISK_NO_ACL | ARCHIVE_READDISK_NO_FFLAGS);
    if (archive_read_disk_open(in, src_real) != ARCHIVE_OK) return ArchiveError(in, "open " + source);
    COVE_TRY(Extract(in, true, src_real, tmp));
  } else if (S_ISREG(st.st_mode)) {
    archive* in = archive_read_new();
    struct Free { archive* a; ~Free() { archive_read_free(a); } } free_in{in};
    archive_read_support_filter_all(in);
    archive_read_support_format_all(in);
    if (archive_read_open_filename(in, source.c_str(), 1 << 16) != ARCHIVE_OK)
      return ArchiveError(in, "open " + source);
    COVE_TRY(Extract(in, false, "", tmp));
  } else {
    return MakeError(ErrorCode::kInvalidArgument, "image source must be a directory or an archive file");
  }
  if (::chmod(tmp.c_str(), 0755) != 0) return SysError("chmod " + tmp);
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0) return SysError("rename into " + final_dir);
  remove_tmp.Release();
  Image image;
  image.lower_dirs = {final_dir};
  return image;
}

}  // namespace cove::isolation
