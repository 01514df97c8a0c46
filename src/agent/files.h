// File operations of cove-agent (docs/agent-protocol.md, file.*). Each takes
// its typed op (ops.h: fields already checked against their types and
// rules) and returns the reply JSON (an ErrorReply on failure).
// Paths are resolved lexically against FileCtx::base; the agent runs them
// with its own credentials (root in a sandbox).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "agent/ops.h"
#include "agent/reply.h"
#include "agent/util.h"
#include "sys/unique_fd.h"

namespace cove::agent {

struct FileCtx {
  std::string base;  // absolute directory for relative paths
  // Owner for files and directories the op creates (a non-root session).
  std::optional<std::pair<uid_t, gid_t>> owner;
};
// The FileCtx of an op's sessionId (absent: no session).
using FileCtxOf = std::function<FileCtx(const std::optional<std::string>& session_id)>;

// Emits one event payload (a serialised JSON object) on the op's channel.
using EmitFn = std::function<void(std::string payload)>;

// `op.content` is moved out (an op without contentInData).
json FileWrite(const FileCtx& ctx, FileWriteOp& op);
// Atomically replaces path (relative to ctx.base) with data.
json WriteFileData(const FileCtx& ctx, const std::string& path, std::string_view data);

// One file write in progress: a temporary file beside the target that takes
// the content as it arrives and replaces the target at Commit, so no reader
// ever sees a partial file. Destroying it before Commit (a cancel, a lost
// connection, a failed append) removes the temporary file. No fsync: the
// replacement is atomic, not durable across a host crash (docs/architecture.md).
class FileWriter {
 public:
  // Checks the target (not a directory), creates its parents and the
  // temporary file; on failure returns the error reply.
  static std::variant<std::unique_ptr<FileWriter>, json> Open(const FileCtx& ctx, const std::string& path);
  ~FileWriter();
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;

  // Writes the next bytes; on failure (a full disk: DISK_QUOTA_EXCEEDED)
  // returns the error reply and the writer is spent (the temporary is gone).
  std::optional<json> Append(std::string_view bytes);
  // Replaces the target with what was written: the reply {path, bytesWritten}
  // or an error. The writer is spent either way.
  json Commit();
  uint64_t written() const { return written_; }

 private:
  FileWriter() = default;
  json Fail(int err, const char* what);

  UniqueFd fd_;
  std::string path_;    // as resolved, for replies
  std::string target_;  // what is replaced (a symlink's target)
  std::string tmp_;     // "" once renamed or removed
  bool replaces_ = false;  // the target existed when opened
  uint64_t written_ = 0;
};
json FileDelete(const FileCtx& ctx, const FileDeleteOp& op);
json FileRename(const FileCtx& ctx, const FileRenameOp& op);
json FileMove(const FileCtx& ctx, const FileMoveOp& op);
json FileMkdir(const FileCtx& ctx, const FileMkdirOp& op);
// Large listings are sent in {type:"files", files:[...]} events first.
json FileList(const FileCtx& ctx, const FileListOp& op, const EmitFn& emit);
json FileExists(const FileCtx& ctx, const FileExistsOp& op);

// Largest total of entries one file.list returns (then truncated:true).
inline constexpr size_t kMaxListEntries = 200000;

// file.read, produced incrementally so a large file never blocks the agent
// or buffers unboundedly: Step() emits up to about `budget` bytes of events.
class FileReader {
 public:
  // Opens the file of `op`; on failure returns the error reply.
  static std::variant<std::unique_ptr<FileReader>, json> Open(const FileCtx& ctx, const FileReadOp& op);
  // Emits metadata/chunk events; returns the final reply once done.
  // With `op.raw_data` and `data` given, the content goes to
  // `data` as raw bytes (a Data frame each) instead of chunk events.
  std::optional<json> Step(const EmitFn& emit, size_t budget, const EmitFn* data = nullptr);

 private:
  FileReader() = default;
  bool Read(uint64_t off, size_t n, std::string* out);

  UniqueFd fd_;
  std::string path_;
  std::string memory_;  // whole content for files whose st_size is 0 (procfs)
  bool in_memory_ = false;
  uint64_t size_ = 0;
  std::string requested_;  // "", "utf-8" or "base64"
  enum class Phase { kScan, kSend } phase_ = Phase::kScan;
  uint64_t off_ = 0;
  TextDetector detector_;
  bool base64_ = false;
  bool raw_ = false;  // rawData requested
  // rawData: the first bytes read by the scan, kept to be sent without a
  // second read (a file up to kMaxStash is read once).
  static constexpr size_t kMaxStash = 4 << 20;
  std::deque<std::string> stash_;
  uint64_t stashed_ = 0;
  Utf8JsonStream text_;
};

}  // namespace cove::agent
