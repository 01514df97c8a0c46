// File operations of cove-agent (docs/agent-protocol.md, file.*). Each takes
// its typed op (ops.h: fields already checked against their types and
// rules) and returns the reply JSON (an ErrorReply on failure).
// Paths are resolved lexically against FileCtx::base; the agent runs them
// with its own credentials (root in a sandbox).
#pragma once

#include <sys/types.h>

#include <cstdint>
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

// `op.content` is moved out. With contentInData the raw content is the op's
// data frame (`data_frame`, null until it arrives).
json FileWrite(const FileCtx& ctx, FileWriteOp& op, const std::string* data_frame = nullptr);
// Atomically replaces path (relative to ctx.base) with data.
json WriteFileData(const FileCtx& ctx, const std::string& path, std::string_view data);
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
  Utf8JsonStream text_;
};

}  // namespace cove::agent
