// FileWatches: fs.watch and fs.check (docs/agent-protocol.md, "File
// watches"): native inotify, one inotify fd per watch, read from the event
// loop. Recursive watches add directories as they appear (and scan them
// once, so files created before their watch existed are still reported).
// An fs.watch streams events on its channel and ends with the connection;
// an fs.check watch persists (bounded, evicted when unused) and answers
// "what changed since cursor N".
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/files.h"
#include "agent/part.h"
#include "sys/unique_fd.h"

namespace cove::agent {

class FileWatches : public Part {
 public:
  // file_ctx: the base directory (and owner) an op's paths are relative to.
  FileWatches(const PartEnv& env, FileCtxOf file_ctx);
  ~FileWatches() override;

  void Handle(const Chan& c, AnyOp& any) override;  // fs.watch, fs.check
  void OnConnectionLost() override;  // ends the fs.watch streams
  void OnCredit() override { fs_lagging_ = true; }
  bool Pump() override;

 private:
  struct FsWatch {  // one inotify fd each
    uint64_t num = 0;
    std::string id;          // watchId
    Chan chan;               // fs.watch channel (unused for check watches)
    bool check = false;      // a persistent fs.check watch
    std::string key;         // its key in check_keys_
    int64_t last_used_ns = 0;
    std::string root;        // watched directory (absolute)
    std::string file;        // watching one file: its name in root ("" = directory)
    bool recursive = true;
    uint32_t events = 0;     // bit per event type (kFsEv*)
    std::vector<std::string> include, exclude;
    UniqueFd ifd;
    uint64_t tok = 0;
    std::unordered_map<int, std::string> wds;  // wd -> directory path
    std::unordered_map<std::string, int> dirs; // directory path -> wd
    std::unordered_map<std::string, int64_t> recent;  // coalescing: "type\0path" -> ns
    std::deque<std::string> queue;  // events not yet sent (backpressure)
    uint64_t dropped = 0;
    bool kernel_overflow = false;
    std::vector<uint32_t> temp_cookies;  // renames of file.write's temp files
    uint32_t dir_move_cookie = 0;        // a directory moved away, maybe within the tree
    std::string dir_move_from;
    // fs.check change log: cursor = events seen; changes remembered from floor.
    uint64_t cursor = 0;
    uint64_t floor = 0;  // cursors below this are expired
    std::deque<uint64_t> log;
  };
  void StartFsWatch(const Chan& c, const FsWatchOp& op);
  void FsCheck(const Chan& c, const FsCheckOp& op);
  // Sets up *w from the fields fs.watch and fs.check share (and fs.watch's
  // events), checking what their types do not say; on error returns false
  // and sets *err.
  template <class Op>
  bool SetUpFsWatch(const Op& op, FsWatch* w, json* err);
  bool OpenFsWatch(FsWatch* w, json* err);
  void AddFsDir(FsWatch* w, const std::string& dir, bool scan_events, int depth);
  void RemoveFsDirTree(FsWatch* w, const std::string& dir);
  void RenameFsDirTree(FsWatch* w, const std::string& from, const std::string& to);
  void OnFsReadable(uint64_t num);
  void FsEmit(FsWatch* w, const char* type, const std::string& path, bool is_dir);
  bool PumpFsWatch(FsWatch* w);  // true if held back by backpressure
  void PumpAllFsWatches();
  void FinishFsWatch(uint64_t num, const json* reply);

  FileCtxOf file_ctx_;
  std::map<uint64_t, std::unique_ptr<FsWatch>> fs_watches_;
  std::unordered_map<std::string, uint64_t> check_keys_;  // fs.check key -> watch num
  uint64_t next_fs_watch_ = 1;
  bool fs_lagging_ = false;  // an fs.watch waits for the connection or its channel
};

}  // namespace cove::agent
