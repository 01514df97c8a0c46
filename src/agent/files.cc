#include "agent/files.h"

#include <dirent.h>
#include <stdio.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/time.h"

namespace cove::agent {
namespace {

constexpr uint64_t kDefaultMemoryReadLimit = 32ull << 20;

json FsError(int err, const std::string& op, const std::string& path, std::string what = "") {
  std::string msg = what.empty() ? std::string(strerror(err)) + ": " + path
                                 : what + ": " + path + ": " + strerror(err);
  return ErrorReply(FileCodeForErrno(err), msg,
                    json{{"path", path}, {"operation", op}, {"errno", err}});
}

std::string Resolve(const FileCtx& ctx, const std::string& p) { return ResolvePath(ctx.base, p); }

void Chown(const FileCtx& ctx, const std::string& path) {
  if (ctx.owner) {
    if (lchown(path.c_str(), ctx.owner->first, ctx.owner->second) != 0) {
      // Best effort: the agent may not be privileged (tests).
    }
  }
}

// mkdir -p; returns 0 or an errno. Created directories get ctx's owner.
int MkdirAll(const FileCtx& ctx, const std::string& path) {
  if (path == "/") return 0;
  struct stat st;
  if (stat(path.c_str(), &st) == 0) return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
  if (int e = MkdirAll(ctx, DirName(path)); e != 0) return e;
  if (mkdir(path.c_str(), 0755) != 0) {
    if (errno == EEXIST) {
      if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return 0;
      return ENOTDIR;
    }
    return errno;
  }
  Chown(ctx, path);
  return 0;
}

bool WriteAllFd(int fd, std::string_view data, int* err) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), std::min<size_t>(data.size(), 1 << 20));
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Recursive copy preserving modes, times and (best effort) owners. Returns 0 or errno.
int CopyTree(const std::string& src, const std::string& dst) {
  struct stat st;
  if (lstat(src.c_str(), &st) != 0) return errno;
  int e = 0;
  if (S_ISDIR(st.st_mode)) {
    if (mkdir(dst.c_str(), st.st_mode & 07777) != 0) return errno;
    DIR* d = opendir(src.c_str());
    if (!d) return errno;
    while (dirent* ent = readdir(d)) {
      if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..")) continue;
      e = CopyTree(src + "/" + ent->d_name, dst + "/" + ent->d_name);
      if (e != 0) break;
    }
    closedir(d);
    if (e != 0) return e;
  } else if (S_ISLNK(st.st_mode)) {
    std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
    ssize_t n = readlink(src.c_str(), target.data(), target.size());
    if (n < 0) return errno;
    target.resize(static_cast<size_t>(n));
    if (symlink(target.c_str(), dst.c_str()) != 0) return errno;
  } else if (S_ISREG(st.st_mode)) {
    UniqueFd in(open(src.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in) return errno;
    UniqueFd out(open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 07777));
    if (!out) return errno;
    char buf[1 << 16];
    for (;;) {
      ssize_t n = read(in.get(), buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno;
      }
      if (n == 0) break;
      if (!WriteAllFd(out.get(), std::string_view(buf, static_cast<size_t>(n)), &e)) return e;
    }
  } else {
    if (mknod(dst.c_str(), st.st_mode, st.st_rdev) != 0) return errno;
  }
  if (lchown(dst.c_str(), st.st_uid, st.st_gid) != 0) {
    // Best effort.
  }
  if (!S_ISLNK(st.st_mode)) chmod(dst.c_str(), st.st_mode & 07777);
  timespec times[2] = {st.st_atim, st.st_mtim};
  utimensat(AT_FDCWD, dst.c_str(), times, AT_SYMLINK_NOFOLLOW);
  return 0;
}

int RemoveTree(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return errno;
  if (S_ISDIR(st.st_mode)) {
    DIR* d = opendir(path.c_str());
    if (!d) return errno;
    std::vector<std::string> names;
    while (dirent* ent = readdir(d)) {
      if (strcmp(ent->d_name, ".") && strcmp(ent->d_name, "..")) names.push_back(ent->d_name);
    }
    closedir(d);
    for (const auto& n : names) {
      if (int e = RemoveTree(path + "/" + n); e != 0) return e;
    }
    return rmdir(path.c_str()) == 0 ? 0 : errno;
  }
  return unlink(path.c_str()) == 0 ? 0 : errno;
}

// `mv src dst`: into dst when dst is an existing directory; across file
// systems by copy + delete.
json MoveImpl(const FileCtx& ctx, const std::string& src_in, const std::string& dst_in,
              const std::string& op) {
  std::string src = Resolve(ctx, src_in), dst = Resolve(ctx, dst_in);
  struct stat sst, dstst;
  if (lstat(src.c_str(), &sst) != 0) return FsError(errno, op, src);
  std::string final_dst = dst;
  if (stat(dst.c_str(), &dstst) == 0 && S_ISDIR(dstst.st_mode) && dst != src) {
    // mv into the directory, unless src is that same directory entry.
    if (!(dstst.st_dev == sst.st_dev && dstst.st_ino == sst.st_ino)) {
      final_dst = (dst == "/" ? "" : dst) + "/" + BaseName(src);
    }
  }
  if (rename(src.c_str(), final_dst.c_str()) != 0) {
    int err = errno;
    if (err != EXDEV) return FsError(err, op, src, "cannot move to " + final_dst);
    struct stat existing;
    if (lstat(final_dst.c_str(), &existing) == 0) {
      if (S_ISDIR(existing.st_mode)) return FsError(EEXIST, op, final_dst);
      unlink(final_dst.c_str());
    }
    if (int e = CopyTree(src, final_dst); e != 0) {
      RemoveTree(final_dst);
      return FsError(e, op, src, "cannot copy to " + final_dst);
    }
    if (int e = RemoveTree(src); e != 0) return FsError(e, op, src, "copied, but cannot remove");
  }
  return json{{"path", src}, {"newPath", final_dst}};
}

const char* TypeName(mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "directory";
  if (S_ISLNK(m)) return "symlink";
  return "other";
}

struct Lister {
  std::string root;
  bool recursive = false;
  bool hidden = false;
  const EmitFn* emit = nullptr;
  json batch = json::array();
  size_t batch_bytes = 0;
  size_t count = 0;
  bool truncated = false;

  void Add(const std::string& abs, const std::string& name, const struct stat& st) {
    json fi = {
        {"name", name},
        {"absolutePath", abs},
        {"relativePath", abs.substr(root == "/" ? 1 : root.size() + 1)},
        {"type", TypeName(st.st_mode)},
        {"size", static_cast<int64_t>(st.st_size)},
        {"modifiedAt", IsoTimestamp(int64_t{st.st_mtim.tv_sec} * 1000 + st.st_mtim.tv_nsec / 1000000)},
        {"mode", ModeString(st.st_mode)},
        {"permissions",
         {{"readable", (st.st_mode & S_IRUSR) != 0},
          {"writable", (st.st_mode & S_IWUSR) != 0},
          {"executable", (st.st_mode & S_IXUSR) != 0}}},
    };
    batch_bytes += 200 + abs.size() * 2 + name.size();
    batch.push_back(std::move(fi));
    ++count;
    if (batch_bytes > (512 << 10)) {
      (*emit)(Dump(json{{"type", "files"}, {"files", std::move(batch)}}));
      batch = json::array();
      batch_bytes = 0;
    }
  }

  void Walk(const std::string& dir) {
    DIR* d = opendir(dir.c_str());
    if (!d) return;
    std::vector<std::string> names;
    while (dirent* ent = readdir(d)) {
      const char* n = ent->d_name;
      if (!strcmp(n, ".") || !strcmp(n, "..")) continue;
      if (!hidden && n[0] == '.') continue;
      names.emplace_back(n);
    }
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      if (count >= kMaxListEntries) {
        truncated = true;
        break;
      }
      struct stat st;
      if (fstatat(dirfd(d), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      std::string abs = (dir == "/" ? "" : dir) + "/" + n;
      Add(abs, n, st);
      if (recursive && S_ISDIR(st.st_mode)) Walk(abs);
    }
    closedir(d);
  }
};

}  // namespace

json FileWrite(const FileCtx& ctx, FileWriteOp& op) {
  if (op.content_in_data) return ValidationError("contentInData needs its data frames", "contentInData");
  if (!op.content) return ValidationError("missing string field 'content'", "content");
  // Take the (possibly huge) string out of the op instead of copying it.
  std::string content = std::move(*op.content);
  op.content.reset();
  if (op.encoding == "base64") {
    auto d = Base64DecodeLenient(content);
    std::string().swap(content);
    if (!d) return ValidationError("content is not valid base64", "content");
    return WriteFileData(ctx, op.path, *d);
  }
  return WriteFileData(ctx, op.path, content);  // utf-8 (ops.h allows no other encoding)
}

json WriteFileData(const FileCtx& ctx, const std::string& path, std::string_view data) {
  auto opened = FileWriter::Open(ctx, path);
  if (auto* e = std::get_if<json>(&opened)) return std::move(*e);
  auto& w = std::get<0>(opened);
  if (auto e = w->Append(data)) return std::move(*e);
  return w->Commit();
}

std::variant<std::unique_ptr<FileWriter>, json> FileWriter::Open(const FileCtx& ctx, const std::string& path_in) {
  const std::string op = "file.write";
  std::unique_ptr<FileWriter> w(new FileWriter());
  w->path_ = Resolve(ctx, path_in);
  w->target_ = w->path_;
  const std::string& path = w->path_;
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) {
      // Write through the link, like `cat > link`.
      char buf[PATH_MAX];
      if (realpath(path.c_str(), buf)) w->target_ = buf;
    }
    if (stat(w->target_.c_str(), &st) == 0) {
      w->replaces_ = true;
      if (S_ISDIR(st.st_mode)) return FsError(EISDIR, op, path);
    }
  }
  const std::string& target = w->target_;
  if (target == "/") return FsError(EISDIR, op, path);
  std::string dir = DirName(target);
  if (int e = MkdirAll(ctx, dir); e != 0) return FsError(e, op, path, "cannot create parent " + dir);
  std::string tmp = dir + (dir == "/" ? "" : "/") + "." + BaseName(target) + ".cove-XXXXXX";
  w->fd_.Reset(mkostemp(tmp.data(), O_CLOEXEC));
  if (!w->fd_) return FsError(errno, op, path, "cannot create temporary file");
  w->tmp_ = std::move(tmp);
  mode_t mode;
  if (w->replaces_) {
    mode = st.st_mode & 07777;
    if (fchown(w->fd_.get(), st.st_uid, st.st_gid) != 0) {
      // Best effort (unprivileged agent).
    }
  } else {
    mode_t mask = umask(0);
    umask(mask);
    mode = 0666 & ~mask;
    if (ctx.owner && fchown(w->fd_.get(), ctx.owner->first, ctx.owner->second) != 0) {
      // Best effort.
    }
  }
  if (fchmod(w->fd_.get(), mode) != 0) return w->Fail(errno, "cannot chmod temporary file");
  return w;
}

FileWriter::~FileWriter() {
  if (!tmp_.empty()) unlink(tmp_.c_str());
}

json FileWriter::Fail(int err, const char* what) {
  fd_.Reset();
  if (!tmp_.empty()) unlink(tmp_.c_str());
  tmp_.clear();
  return FsError(err, "file.write", path_, what);
}

std::optional<json> FileWriter::Append(std::string_view bytes) {
  if (tmp_.empty() || !fd_) return FsError(EBADF, "file.write", path_, "write already ended");
  int e = 0;
  if (!WriteAllFd(fd_.get(), bytes, &e)) return Fail(e, "cannot write");
  written_ += bytes.size();
  return std::nullopt;
}

json FileWriter::Commit() {
  if (tmp_.empty() || !fd_) return FsError(EBADF, "file.write", path_, "write already ended");
  if (close(fd_.Release()) != 0) return Fail(errno, "cannot write");
  // Replacing an existing file by exchanging the two names, then removing the
  // old one, is as atomic for readers as rename(2), but btrfs's rename over a
  // non-empty file starts writeback of the new one at once (checksums and I/O
  // in this call: ~1/8 of the agent's time on a 1 MiB write); the exchange
  // leaves it to background writeback.
  if (replaces_ && renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, target_.c_str(), RENAME_EXCHANGE) == 0) {
    if (unlink(tmp_.c_str()) == 0) {  // the old file
      tmp_.clear();
      return json{{"path", path_}, {"bytesWritten", written_}};
    }
    int e = errno;  // a directory took the target's place meanwhile (EISDIR): give it back
    renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, target_.c_str(), RENAME_EXCHANGE);
    return Fail(e, "cannot replace");
  }
  // A new file, or a file system without RENAME_EXCHANGE.
  if (rename(tmp_.c_str(), target_.c_str()) != 0) return Fail(errno, "cannot replace");
  tmp_.clear();
  return json{{"path", path_}, {"bytesWritten", written_}};
}

json FileDelete(const FileCtx& ctx, const FileDeleteOp& op) {
  std::string path = Resolve(ctx, op.path);
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return FsError(errno, "file.delete", path);
  if (S_ISDIR(st.st_mode)) return FsError(EISDIR, "file.delete", path);
  if (unlink(path.c_str()) != 0) return FsError(errno, "file.delete", path);
  return json{{"path", path}};
}

json FileRename(const FileCtx& ctx, const FileRenameOp& op) {
  return MoveImpl(ctx, op.old_path, op.new_path, "file.rename");
}

json FileMove(const FileCtx& ctx, const FileMoveOp& op) {
  return MoveImpl(ctx, op.source_path, op.destination_path, "file.move");
}

json FileMkdir(const FileCtx& ctx, const FileMkdirOp& op) {
  std::string path = Resolve(ctx, op.path);
  if (op.recursive) {
    if (int e = MkdirAll(ctx, path); e != 0) return FsError(e, "file.mkdir", path);
  } else {
    if (mkdir(path.c_str(), 0755) != 0) return FsError(errno, "file.mkdir", path);
    Chown(ctx, path);
  }
  return json{{"path", path}, {"recursive", op.recursive}};
}

json FileList(const FileCtx& ctx, const FileListOp& op, const EmitFn& emit) {
  std::string path = Resolve(ctx, op.path);
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return FsError(errno, "file.list", path);
  if (!S_ISDIR(st.st_mode)) return FsError(ENOTDIR, "file.list", path);
  if (access(path.c_str(), R_OK | X_OK) != 0) return FsError(errno, "file.list", path);
  Lister l;
  l.root = path;
  l.recursive = op.recursive;
  l.hidden = op.include_hidden;
  l.emit = &emit;
  l.Walk(path);
  json reply = {{"path", path}, {"files", std::move(l.batch)}, {"count", l.count}};
  if (l.truncated) reply["truncated"] = true;
  return reply;
}

json FileExists(const FileCtx& ctx, const FileExistsOp& op) {
  std::string path = Resolve(ctx, op.path);
  struct stat st;
  return json{{"path", path}, {"exists", stat(path.c_str(), &st) == 0}};
}

std::variant<std::unique_ptr<FileReader>, json> FileReader::Open(const FileCtx& ctx, const FileReadOp& req) {
  std::string encoding = req.encoding.value_or("");  // "", or one of kEncodings (ops.h)
  if (encoding == "utf8") encoding = "utf-8";
  std::optional<uint64_t> max_bytes;  // non-negative (ops.h)
  if (req.max_bytes) max_bytes = static_cast<uint64_t>(*req.max_bytes);
  std::unique_ptr<FileReader> r(new FileReader());
  r->path_ = Resolve(ctx, req.path);
  r->requested_ = encoding;
  r->raw_ = req.raw_data;
  const std::string op = "file.read";
  r->fd_.Reset(open(r->path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!r->fd_) return FsError(errno, op, r->path_);
  struct stat st;
  if (fstat(r->fd_.get(), &st) != 0) return FsError(errno, op, r->path_);
  if (S_ISDIR(st.st_mode)) return FsError(EISDIR, op, r->path_);
  if (!S_ISREG(st.st_mode))
    return ErrorReply("FILESYSTEM_ERROR", "not a regular file: " + r->path_,
                      json{{"path", r->path_}, {"operation", op}});
  r->size_ = static_cast<uint64_t>(st.st_size);
  auto too_large = [&](uint64_t size) {
    return ErrorReply("FILE_TOO_LARGE",
                      "file is larger than " + std::to_string(*max_bytes) + " bytes: " + r->path_,
                      json{{"path", r->path_}, {"operation", op}, {"size", size}, {"maxBytes", *max_bytes}});
  };
  if (max_bytes && r->size_ > *max_bytes) return too_large(r->size_);
  if (r->size_ == 0) {
    // Maybe a pseudo-file (procfs, sysfs): read it whole, bounded.
    uint64_t limit = max_bytes ? *max_bytes : kDefaultMemoryReadLimit;
    char buf[1 << 16];
    for (;;) {
      ssize_t n = read(r->fd_.get(), buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        return FsError(errno, op, r->path_);
      }
      if (n == 0) break;
      r->memory_.append(buf, static_cast<size_t>(n));
      if (r->memory_.size() > limit) {
        if (max_bytes) return too_large(r->memory_.size());
        return ErrorReply("FILE_TOO_LARGE", "pseudo-file too large: " + r->path_,
                          json{{"path", r->path_}, {"operation", op}});
      }
    }
    r->in_memory_ = true;
    r->size_ = r->memory_.size();
  }
  return r;
}

bool FileReader::Read(uint64_t off, size_t n, std::string* out) {
  out->clear();
  if (off >= size_) return true;
  n = static_cast<size_t>(std::min<uint64_t>(n, size_ - off));
  if (in_memory_) {
    out->assign(memory_, static_cast<size_t>(off), n);
    return true;
  }
  out->resize(n);
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd_.get(), out->data() + got, n - got, static_cast<off_t>(off + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (r == 0) break;  // truncated meanwhile
    got += static_cast<size_t>(r);
  }
  out->resize(got);
  return true;
}

std::optional<json> FileReader::Step(const EmitFn& emit, size_t budget, const EmitFn* data) {
  std::string buf;
  size_t spent = 0;
  const bool raw = raw_ && data;
  if (phase_ == Phase::kScan) {
    bool at_end = false;
    while (off_ < size_ && !detector_.binary() && spent < 8 * budget) {
      if (!Read(off_, 1 << 20, &buf)) return FsError(errno, "file.read", path_);
      if (buf.empty()) {
        at_end = true;
        break;
      }
      detector_.Feed(buf);
      off_ += buf.size();
      spent += buf.size();
      if (raw && stashed_ + buf.size() <= kMaxStash && stashed_ == off_ - buf.size()) {
        stashed_ += buf.size();  // sent as it is, not read again
        stash_.push_back(std::move(buf));
        buf = std::string();
      }
    }
    if (off_ < size_ && !detector_.binary() && !at_end) return std::nullopt;  // more to scan
    bool binary = !detector_.Finish();
    base64_ = requested_.empty() ? binary : requested_ == "base64";
    std::string mime = MimeTypeForPath(path_);
    if (mime.empty()) mime = binary ? "application/octet-stream" : "text/plain";
    emit(Dump(json{{"type", "metadata"},
                   {"mimeType", mime},
                   {"size", size_},
                   {"isBinary", binary},
                   {"encoding", base64_ ? "base64" : "utf-8"}}));
    phase_ = Phase::kSend;
    off_ = 0;
    spent = 0;
  }
  if (raw) {
    // The file's bytes as they are: coved encodes them once, into its answer.
    while (spent < budget) {
      if (!stash_.empty()) {
        buf = std::move(stash_.front());
        stash_.pop_front();
      } else if (!Read(off_, 1 << 20, &buf)) {
        return FsError(errno, "file.read", path_);
      }
      if (buf.empty()) return json{{"type", "complete"}, {"bytesRead", off_}};
      off_ += buf.size();
      spent += buf.size();
      (*data)(std::move(buf));
      buf = std::string();
    }
    return std::nullopt;
  }
  while (spent < budget) {
    if (!Read(off_, base64_ ? 49152 : 65536, &buf)) return FsError(errno, "file.read", path_);
    std::string ev = "{\"type\":\"chunk\",\"data\":\"";
    if (buf.empty()) {
      // End of file: flush a split character, then complete.
      if (!base64_ && text_.has_pending()) {
        text_.Finish(&ev);
        ev += "\"}";
        emit(std::move(ev));
      }
      return json{{"type", "complete"}, {"bytesRead", off_}};
    }
    off_ += buf.size();
    spent += buf.size();
    size_t before = ev.size();
    if (base64_) {
      ev += Base64Encode(buf);
    } else {
      text_.Append(buf, &ev);
    }
    if (ev.size() == before) continue;
    ev += "\"}";
    emit(std::move(ev));
  }
  return std::nullopt;
}

}  // namespace cove::agent
