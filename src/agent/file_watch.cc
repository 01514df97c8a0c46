#include "agent/file_watch.h"

#include <dirent.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <type_traits>

#include "agent/util.h"
#include "base/log.h"
#include "base/time.h"

namespace cove::agent {
namespace {

constexpr size_t kMaxQueue = 4096;          // unsent events per fs.watch
constexpr int64_t kCoalesceNs = 20'000'000;  // same (type, path) within 20 ms: once
constexpr size_t kMaxCheckWatches = 64;
constexpr size_t kMaxChangeLog = 1024;
constexpr size_t kMaxGlobs = 64;
constexpr int kMaxDepth = 64;
constexpr int64_t kCheckIdleNs = 600'000'000'000;  // fs.check watches unused for 10 min end

// file.write's temp files (".NAME.cove-XXXXXX", files.cc) are not reported;
// renaming one over its target, or exchanging it with its target (then
// removing the old file under the temp name), is reported as `modify` of the
// target.
bool IsWriteTemp(std::string_view n) {
  return n.size() > 13 && n[0] == '.' && n.compare(n.size() - 12, 6, ".cove-") == 0;
}

struct EvType {
  const char* name;
  uint32_t mask;
};
constexpr EvType kEvTypes[] = {
    {"create", IN_CREATE},       {"modify", IN_MODIFY},     {"delete", IN_DELETE},
    {"move_from", IN_MOVED_FROM}, {"move_to", IN_MOVED_TO}, {"attrib", IN_ATTRIB},
};
constexpr uint32_t kAllEvents = (1u << 6) - 1;
constexpr uint32_t kDirMask = IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB |
                              IN_DELETE_SELF | IN_MOVE_SELF | IN_DONT_FOLLOW | IN_EXCL_UNLINK | IN_ONLYDIR;

const std::vector<std::string> kDefaultExclude = {".git", "node_modules", ".DS_Store"};

// Glob: `*` and `?` never match '/', `**` matches anything ("**/" also
// matches nothing).
bool GlobMatch(std::string_view p, std::string_view s, int budget = 10000) {
  while (!p.empty()) {
    if (--budget < 0) return false;
    if (p.substr(0, 2) == "**") {
      std::string_view rest = p.substr(2);
      if (!rest.empty() && rest[0] == '/' && GlobMatch(rest.substr(1), s, budget)) return true;
      for (size_t i = 0; i <= s.size(); ++i)
        if (GlobMatch(rest, s.substr(i), budget - static_cast<int>(i))) return true;
      return false;
    }
    if (p[0] == '*') {
      for (size_t i = 0; i <= s.size(); ++i) {
        if (GlobMatch(p.substr(1), s.substr(i), budget - static_cast<int>(i))) return true;
        if (i < s.size() && s[i] == '/') break;
      }
      return false;
    }
    if (s.empty()) return false;
    if (p[0] == '?' ? s[0] == '/' : p[0] != s[0]) return false;
    p.remove_prefix(1);
    s.remove_prefix(1);
  }
  return s.empty();
}

// A pattern without '/' matches a component (any one if `any`, else the
// last); one with '/' matches the whole relative path.
bool PatternMatches(const std::string& pat, const std::string& rel, bool any) {
  if (pat.find('/') != std::string::npos) return GlobMatch(pat, rel);
  if (!any) {
    size_t slash = rel.rfind('/');
    return GlobMatch(pat, slash == std::string::npos ? rel : rel.substr(slash + 1));
  }
  size_t start = 0;
  for (;;) {
    size_t end = rel.find('/', start);
    if (GlobMatch(pat, std::string_view(rel).substr(start, end == std::string::npos ? end : end - start)))
      return true;
    if (end == std::string::npos) return false;
    start = end + 1;
  }
}

bool Excluded(const std::vector<std::string>& exclude, const std::string& rel) {
  for (auto& p : exclude)
    if (PatternMatches(p, rel, true)) return true;
  return false;
}

// Checks a glob list (absent: *given stays false) and copies it to *out.
bool TakeGlobs(const std::optional<Strings>& globs, const char* key, std::vector<std::string>* out, bool* given,
               json* err) {
  if (!globs) return true;
  if (globs->size() > kMaxGlobs) {
    *err = ValidationError(std::string("field '") + key + "' must be an array of glob strings", key);
    return false;
  }
  for (const std::string& s : *globs) {
    if (s.empty() || s.size() > 1024) {
      *err = ValidationError(std::string("field '") + key + "' must be an array of glob strings", key);
      return false;
    }
    for (char ch : s) {
      if (ch == '[' || ch == ']' || ch == '{' || ch == '}' || ch == '\\' || ch == '\0') {
        *err = ValidationError(std::string("globs in '") + key + "' may only use '*', '**' and '?'", key);
        return false;
      }
    }
    out->push_back(s);
  }
  *given = true;
  return true;
}

std::string Relative(const std::string& root, const std::string& path) {
  if (path.size() <= root.size()) return "";
  return path.substr(root == "/" ? 1 : root.size() + 1);
}

std::string Join(const std::string& dir, std::string_view name) {
  std::string r;
  r.reserve(dir.size() + 1 + name.size());
  if (dir != "/") r.append(dir);
  r.push_back('/');
  r.append(name);
  return r;
}

}  // namespace

template <class Op>
bool FileWatches::SetUpFsWatch(const Op& op, FsWatch* w, json* err) {
  w->recursive = op.recursive;
  bool inc = false, exc = false;
  if (!TakeGlobs(op.include, "include", &w->include, &inc, err) ||
      !TakeGlobs(op.exclude, "exclude", &w->exclude, &exc, err))
    return false;
  if (inc && exc) {
    *err = ValidationError("include and exclude cannot be used together", "include");
    return false;
  }
  if (!exc && !inc) w->exclude = kDefaultExclude;
  w->events = kAllEvents;
  if constexpr (std::is_same_v<Op, FsWatchOp>) {
    if (op.events) {
      if (op.events->empty()) {
        *err = ValidationError("field 'events' must be a non-empty array of event types", "events");
        return false;
      }
      w->events = 0;
      for (const std::string& e : *op.events) {
        int bit = -1;
        for (int i = 0; i < 6; ++i)
          if (e == kEvTypes[i].name) bit = i;
        if (bit < 0) {
          *err = ValidationError(
              "events must be among create, modify, delete, move_from, move_to, attrib", "events");
          return false;
        }
        w->events |= 1u << bit;
      }
    }
  }
  w->root = ResolvePath(file_ctx_(op.session_id).base, op.path);
  return true;
}

bool FileWatches::OpenFsWatch(FsWatch* w, json* err) {
  struct stat st;
  if (stat(w->root.c_str(), &st) != 0) {
    int e = errno;
    *err = ErrorReply(FileCodeForErrno(e), "cannot watch '" + w->root + "': " + strerror(e),
                      json{{"path", w->root}});
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    w->file = BaseName(w->root);
    w->root = DirName(w->root);
    w->recursive = false;
  }
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    *err = ErrorReply("FILESYSTEM_ERROR", std::string("inotify_init1: ") + strerror(e), json{{"path", w->root}});
    return false;
  }
  w->ifd.Reset(fd);
  int wd = inotify_add_watch(fd, w->root.c_str(), kDirMask);
  if (wd < 0) {
    int e = errno;
    *err = ErrorReply(e == ENOSPC ? "RESOURCE_BUSY" : FileCodeForErrno(e),
                      "cannot watch '" + w->root + "': " + strerror(e), json{{"path", w->root}});
    w->ifd.Reset();
    return false;
  }
  w->wds[wd] = w->root;
  w->dirs[w->root] = wd;
  if (w->recursive) AddFsDir(w, w->root, false, 0);
  uint64_t num = w->num;
  w->tok = loop_.Watch(fd, EPOLLIN, [this, num](uint32_t) { OnFsReadable(num); });
  return true;
}

// Watches the subdirectories of `dir` (already watched) recursively; with
// scan_events, reports everything found as created.
void FileWatches::AddFsDir(FsWatch* w, const std::string& dir, bool scan_events, int depth) {
  if (depth > kMaxDepth) return;
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  std::vector<std::pair<std::string, bool>> entries;
  while (dirent* e = readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st;
      is_dir = lstat(Join(dir, n).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    }
    entries.emplace_back(std::string(n), is_dir);
  }
  closedir(d);
  for (auto& [name, is_dir] : entries) {
    std::string p = Join(dir, name);
    if (Excluded(w->exclude, Relative(w->root, p))) continue;
    if (scan_events) FsEmit(w, "create", p, is_dir);
    if (!is_dir || w->dirs.count(p)) continue;
    int wd = inotify_add_watch(w->ifd.get(), p.c_str(), kDirMask);
    if (wd < 0) continue;
    auto old = w->wds.find(wd);
    if (old != w->wds.end()) w->dirs.erase(old->second);
    w->wds[wd] = p;
    w->dirs[p] = wd;
    AddFsDir(w, p, scan_events, depth + 1);
  }
}

void FileWatches::RemoveFsDirTree(FsWatch* w, const std::string& dir) {
  std::string prefix = dir + "/";
  for (auto it = w->dirs.begin(); it != w->dirs.end();) {
    if (it->first == dir || it->first.compare(0, prefix.size(), prefix) == 0) {
      inotify_rm_watch(w->ifd.get(), it->second);
      w->wds.erase(it->second);
      it = w->dirs.erase(it);
    } else {
      ++it;
    }
  }
}

void FileWatches::RenameFsDirTree(FsWatch* w, const std::string& from, const std::string& to) {
  std::string prefix = from + "/";
  std::vector<std::pair<std::string, int>> moved;
  for (auto it = w->dirs.begin(); it != w->dirs.end();) {
    if (it->first == from || it->first.compare(0, prefix.size(), prefix) == 0) {
      moved.emplace_back(to + it->first.substr(from.size()), it->second);
      it = w->dirs.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [p, wd] : moved) {
    w->wds[wd] = p;
    w->dirs[p] = wd;
  }
}

void FileWatches::FsEmit(FsWatch* w, const char* type, const std::string& path, bool is_dir) {
  std::string rel = Relative(w->root, path);
  if (!w->file.empty()) {
    if (rel != w->file) return;
  } else {
    if (rel.empty()) return;
    if (Excluded(w->exclude, rel)) return;
    if (!w->include.empty()) {
      bool ok = false;
      for (auto& p : w->include) ok = ok || PatternMatches(p, rel, false);
      if (!ok) return;
    }
  }
  int bit = 0;
  while (bit < 6 && strcmp(kEvTypes[bit].name, type) != 0) ++bit;
  if (!(w->events & (1u << bit))) return;
  int64_t now = MonotonicNs();
  std::string key(type);
  key.push_back('\0');
  key.append(path);
  auto it = w->recent.find(key);
  if (it != w->recent.end() && now - it->second < kCoalesceNs) return;
  if (w->recent.size() > 4096)
    std::erase_if(w->recent, [now](auto& kv) { return now - kv.second >= kCoalesceNs; });
  w->recent[key] = now;
  if (w->check) {
    ++w->cursor;
    w->log.push_back(w->cursor);
    if (w->log.size() > kMaxChangeLog) {
      w->floor = w->log.front();
      w->log.pop_front();
    }
    return;
  }
  if (w->queue.size() >= kMaxQueue) {
    ++w->dropped;
    return;
  }
  w->queue.push_back(Dump(json{{"type", "event"},
                               {"eventType", type},
                               {"path", path},
                               {"isDirectory", is_dir},
                               {"timestamp", IsoNow()}}));
}

void FileWatches::OnFsReadable(uint64_t num) {
  auto wit = fs_watches_.find(num);
  if (wit == fs_watches_.end()) return;
  FsWatch* w = wit->second.get();
  alignas(inotify_event) char buf[64 << 10];
  bool root_gone = false;
  for (int round = 0; round < 16; ++round) {
    ssize_t n = read(w->ifd.get(), buf, sizeof buf);
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      p += sizeof(inotify_event) + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        if (w->check) {
          ++w->cursor;
          w->floor = w->cursor;  // every earlier cursor may have missed changes
          w->log.clear();
        } else {
          w->kernel_overflow = true;
        }
        continue;
      }
      // A rename queues its two events together: anything but the pending
      // directory's move_to means it left the tree, before its events count.
      if (w->dir_move_cookie && !((ev->mask & IN_MOVED_TO) && ev->cookie == w->dir_move_cookie)) {
        RemoveFsDirTree(w, w->dir_move_from);
        w->dir_move_cookie = 0;
      }
      auto dit = w->wds.find(ev->wd);
      if (dit == w->wds.end()) continue;
      std::string dir = dit->second;
      bool is_root = dir == w->root;
      if (ev->mask & IN_IGNORED) {
        w->dirs.erase(dir);
        w->wds.erase(dit);
        if (is_root) root_gone = true;
        continue;
      }
      if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
        if (is_root) root_gone = true;
        continue;
      }
      if (!ev->len) continue;
      std::string path = Join(dir, ev->name);
      bool is_dir = ev->mask & IN_ISDIR;
      if (!is_dir && IsWriteTemp(ev->name)) {
        if ((ev->mask & IN_MOVED_FROM) && ev->cookie) {
          if (w->temp_cookies.size() >= 64) w->temp_cookies.erase(w->temp_cookies.begin());
          w->temp_cookies.push_back(ev->cookie);
        }
        continue;
      }
      if ((ev->mask & IN_MOVED_FROM) && ev->cookie && !is_dir && p < buf + n) {
        // file.write replaces an existing file by exchanging it with its temp
        // file: the target's own move to the temp name is not a change.
        auto* next = reinterpret_cast<inotify_event*>(p);
        if ((next->mask & IN_MOVED_TO) && next->cookie == ev->cookie && next->len && IsWriteTemp(next->name))
          continue;
      }
      if ((ev->mask & IN_MOVED_TO) && ev->cookie && !is_dir) {
        auto tc = std::find(w->temp_cookies.begin(), w->temp_cookies.end(), ev->cookie);
        if (tc != w->temp_cookies.end()) {
          w->temp_cookies.erase(tc);
          FsEmit(w, "modify", path, false);
          continue;
        }
      }
      for (auto& t : kEvTypes) {
        if (!(ev->mask & t.mask)) continue;
        if (w->recursive && is_dir) {
          if (t.mask == IN_MOVED_FROM) {
            // Kept until its move_to (a move within the tree keeps its watches).
            if (w->dir_move_cookie) RemoveFsDirTree(w, w->dir_move_from);
            w->dir_move_cookie = ev->cookie;
            w->dir_move_from = path;
          }
          if (t.mask == IN_MOVED_TO && w->dir_move_cookie && ev->cookie == w->dir_move_cookie) {
            RenameFsDirTree(w, w->dir_move_from, path);
            w->dir_move_cookie = 0;
            FsEmit(w, t.name, path, true);
            continue;
          }
          if ((t.mask == IN_CREATE || t.mask == IN_MOVED_TO) && !Excluded(w->exclude, Relative(w->root, path)) &&
              !w->dirs.count(path)) {
            FsEmit(w, t.name, path, true);
            int wd = inotify_add_watch(w->ifd.get(), path.c_str(), kDirMask);
            if (wd >= 0) {
              w->wds[wd] = path;
              w->dirs[path] = wd;
              AddFsDir(w, path, t.mask == IN_CREATE, 1);
            }
            continue;
          }
        }
        FsEmit(w, t.name, path, is_dir);
        if (!w->file.empty() && Relative(w->root, path) == w->file &&
            (t.mask == IN_DELETE || t.mask == IN_MOVED_FROM))
          root_gone = true;
      }
    }
    if (static_cast<size_t>(n) < sizeof buf / 2) break;
  }
  if (w->dir_move_cookie) {  // moved out of the tree
    RemoveFsDirTree(w, w->dir_move_from);
    w->dir_move_cookie = 0;
  }
  if (w->check) {
    if (root_gone) FinishFsWatch(num, nullptr);
    return;
  }
  PumpFsWatch(w);
  if (root_gone) {
    // Undelivered events are still sent first (unless held back).
    json r{{"type", "stopped"}, {"reason", "deleted"}};
    FinishFsWatch(num, &r);
  }
}

bool FileWatches::PumpFsWatch(FsWatch* w) {
  if (!Live(w->chan)) {
    w->queue.clear();
    return false;
  }
  while (!w->queue.empty()) {
    if (Held(w->chan)) {
      fs_lagging_ = true;
      return true;
    }
    Event(w->chan, w->queue.front());
    w->queue.pop_front();
  }
  if (w->dropped || w->kernel_overflow) {
    json ev{{"type", "overflow"}, {"dropped", w->dropped}};
    if (w->kernel_overflow) ev["kernelQueue"] = true;
    Event(w->chan, Dump(ev));
    w->dropped = 0;
    w->kernel_overflow = false;
  }
  return false;
}

void FileWatches::PumpAllFsWatches() {
  fs_lagging_ = false;
  bool lag = false;
  for (auto& [num, w] : fs_watches_)
    if (!w->check && PumpFsWatch(w.get())) lag = true;
  fs_lagging_ = lag;
}

void FileWatches::FinishFsWatch(uint64_t num, const json* reply) {
  auto it = fs_watches_.find(num);
  if (it == fs_watches_.end()) return;
  std::unique_ptr<FsWatch> w = std::move(it->second);
  fs_watches_.erase(it);
  loop_.Unwatch(w->tok);
  w->ifd.Reset();  // removes every inotify watch of it
  if (w->check) {
    auto k = check_keys_.find(w->key);
    if (k != check_keys_.end() && k->second == num) check_keys_.erase(k);
    return;
  }
  if (reply && Live(w->chan)) {
    PumpFsWatch(w.get());  // what is left (the reply closes the channel)
    Reply(w->chan, *reply);
  }
}

void FileWatches::OnConnectionLost() {
  std::vector<uint64_t> nums;
  for (auto& [num, w] : fs_watches_)
    if (!w->check) nums.push_back(num);
  for (uint64_t n : nums) FinishFsWatch(n, nullptr);
  fs_lagging_ = false;
}

FileWatches::FileWatches(const PartEnv& env, FileCtxOf file_ctx) : Part(env), file_ctx_(std::move(file_ctx)) {}

FileWatches::~FileWatches() = default;

void FileWatches::Handle(const Chan& c, AnyOp& any) {
  if (auto* op = std::get_if<FsWatchOp>(&any)) return StartFsWatch(c, *op);
  if (auto* op = std::get_if<FsCheckOp>(&any)) return FsCheck(c, *op);
  Part::Handle(c, any);
}

bool FileWatches::Pump() {
  if (fs_lagging_) PumpAllFsWatches();
  return false;
}

void FileWatches::StartFsWatch(const Chan& c, const FsWatchOp& op) {
  auto w = std::make_unique<FsWatch>();
  json err;
  if (!SetUpFsWatch(op, w.get(), &err)) return Reply(c, err);
  w->num = next_fs_watch_++;
  w->id = std::to_string(w->num);
  w->id.insert(0, 1, 'w');
  w->chan = c;
  if (!OpenFsWatch(w.get(), &err)) return Reply(c, err);
  uint64_t num = w->num;
  std::string path = w->file.empty() ? w->root : Join(w->root, w->file);
  Event(c, Dump(json{{"type", "watching"}, {"path", path}, {"watchId", w->id}}));
  fs_watches_.emplace(num, std::move(w));
  SetCancel(c, [this, num] {
    json r{{"type", "stopped"}, {"reason", "cancelled"}};
    FinishFsWatch(num, &r);
  });
}

void FileWatches::FsCheck(const Chan& c, const FsCheckOp& op) {
  auto w = std::make_unique<FsWatch>();
  json err;
  if (!SetUpFsWatch(op, w.get(), &err)) return Reply(c, err);
  const std::string since = op.since.value_or("");
  w->check = true;
  std::string key = Dump(json{{"path", w->root}, {"recursive", w->recursive}, {"include", w->include},
                              {"exclude", w->exclude}});
  // Idle check watches end (their versions then resync as restarted).
  int64_t now = MonotonicNs();
  std::vector<uint64_t> idle;
  for (auto& [kk, n] : check_keys_) {
    auto it = fs_watches_.find(n);
    if (it != fs_watches_.end() && now - it->second->last_used_ns > kCheckIdleNs) idle.push_back(n);
  }
  for (uint64_t n : idle) FinishFsWatch(n, nullptr);
  FsWatch* cur = nullptr;
  auto k = check_keys_.find(key);
  if (k != check_keys_.end()) {
    auto it = fs_watches_.find(k->second);
    if (it != fs_watches_.end()) cur = it->second.get();
  }
  if (cur) {
    OnFsReadable(cur->num);  // everything that happened before this request
    auto it = fs_watches_.find(k->second);
    cur = it == fs_watches_.end() ? nullptr : it->second.get();
  }
  bool created = false;
  if (!cur) {
    w->num = next_fs_watch_++;
    w->id = std::to_string(w->num);
    w->id.insert(0, 1, 'c');
    w->key = key;
    if (!OpenFsWatch(w.get(), &err)) return Reply(c, err);
    if (check_keys_.size() >= kMaxCheckWatches) {  // evict the least recently used
      uint64_t victim = 0;
      int64_t oldest = INT64_MAX;
      for (auto& [kk, n] : check_keys_) {
        auto it = fs_watches_.find(n);
        if (it != fs_watches_.end() && it->second->last_used_ns < oldest) {
          oldest = it->second->last_used_ns;
          victim = n;
        }
      }
      if (victim) FinishFsWatch(victim, nullptr);
    }
    cur = w.get();
    check_keys_[key] = cur->num;
    fs_watches_.emplace(cur->num, std::move(w));
    created = true;
  }
  cur->last_used_ns = MonotonicNs();
  std::string version = cur->id + ":" + std::to_string(cur->cursor);
  json r{{"version", version}, {"timestamp", IsoNow()}};
  if (since.empty()) {
    r["status"] = "unchanged";
    return Reply(c, r);
  }
  size_t colon = since.rfind(':');
  std::string sid = colon == std::string::npos ? since : since.substr(0, colon);
  uint64_t scur = 0;
  bool num_ok = colon != std::string::npos && colon + 1 < since.size() && since.size() - colon <= 20;
  for (size_t i = colon + 1; num_ok && i < since.size(); ++i) {
    if (since[i] < '0' || since[i] > '9') num_ok = false;
    else scur = scur * 10 + static_cast<uint64_t>(since[i] - '0');
  }
  if (created || sid != cur->id || !num_ok || scur > cur->cursor) {
    r["status"] = "resync";
    r["reason"] = "restarted";
  } else if (scur < cur->floor) {
    r["status"] = "resync";
    r["reason"] = "expired";
  } else {
    r["status"] = scur < cur->cursor ? "changed" : "unchanged";
  }
  Reply(c, r);
}

}  // namespace cove::agent
