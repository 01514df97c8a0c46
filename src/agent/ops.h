// The typed ops of the coved <-> cove-agent protocol (docs/agent-protocol.md)
// and the typed replies coved reads. Shared by both sides: coved builds an op
// struct and sends ToJson(op); the agent reads a request with ParseOp<XOp> or
// ParseAnyOp. coved reads the agent's events and replies with the Parse*
// readers below.
//
// Each struct lists its fields once (Fields), and both directions follow that
// list: a field of type T is required, std::optional<T> may be absent (or
// null), a bool may be absent (keeping its default). Parsing is strict and
// never throws: a wrong type, a value out of its bounds or a missing required
// field is kInvalidArgument naming the field (in the message, and as the
// error's context "field"; an unknown op has context "op"). Keys not listed are ignored (an
// older peer may send fields a newer one dropped).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/error.h"

namespace cove::agent {

using Json = nlohmann::json;
using EnvVars = std::map<std::string, std::string>;  // names are shell names, values have no NUL
using Strings = std::vector<std::string>;

// What a field's value must be, besides its type.
struct Rule {
  enum Kind { kAny, kId, kPath, kCommand, kRange, kOneOf } kind = kAny;
  int64_t lo = 0, hi = 0;                          // kRange, inclusive
  const std::string_view* options = nullptr;       // kOneOf
  size_t option_count = 0;
};
inline constexpr Rule kAnyValue{};
inline constexpr Rule kId{Rule::kId};            // 1-256 bytes, no NUL
inline constexpr Rule kPath{Rule::kPath};        // non-empty, no NUL
inline constexpr Rule kCommand{Rule::kCommand};  // non-empty, no NUL, at most kMaxCommandBytes
constexpr Rule Range(int64_t lo, int64_t hi) { return Rule{Rule::kRange, lo, hi}; }
template <size_t N>
constexpr Rule OneOf(const std::string_view (&options)[N]) {
  return Rule{Rule::kOneOf, 0, 0, options, N};
}

inline constexpr int64_t kMaxTimeoutMs = int64_t{1} << 40;
inline constexpr std::string_view kEncodings[] = {"utf-8", "utf8", "base64"};
inline constexpr std::string_view kPortModes[] = {"http", "tcp"};

// ---- Ops (coved -> agent) ----

// The agent's version, sessions and window (also coved's ping).
struct HelloOp {
  static constexpr std::string_view kOp = "hello";
  template <class S, class V>
  static void Fields(S&, V&) {}
};

struct ExecOp {
  static constexpr std::string_view kOp = "exec";
  std::string command;
  std::optional<std::string> session_id;
  std::optional<EnvVars> env;
  std::optional<std::string> cwd;
  std::optional<int64_t> timeout_ms;  // absent or 0: no limit
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("command", s.command, kCommand);
    v("sessionId", s.session_id, kId);
    v("env", s.env);
    v("cwd", s.cwd);
    v("timeoutMs", s.timeout_ms, Range(0, kMaxTimeoutMs));
  }
};

struct SessionCreateOp {
  static constexpr std::string_view kOp = "session.create";
  std::string id;
  std::optional<EnvVars> env;
  std::optional<std::string> cwd;
  std::optional<int64_t> command_timeout_ms;
  std::optional<std::string> user;  // "root", "user" or a name in the image's /etc/passwd
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("id", s.id, kId);
    v("env", s.env);
    v("cwd", s.cwd);
    v("commandTimeoutMs", s.command_timeout_ms, Range(0, kMaxTimeoutMs));
    v("user", s.user);
  }
};

struct SessionDeleteOp {
  static constexpr std::string_view kOp = "session.delete";
  std::string id;
  template <class S, class V>
  static void Fields(S& s, V& v) { v("id", s.id, kId); }
};

struct SessionListOp {
  static constexpr std::string_view kOp = "session.list";
  template <class S, class V>
  static void Fields(S&, V&) {}
};

struct FileReadOp {
  static constexpr std::string_view kOp = "file.read";
  std::string path;
  std::optional<std::string> session_id;
  std::optional<std::string> encoding;  // default: by content
  std::optional<int64_t> max_bytes;     // larger files are FILE_TOO_LARGE
  bool raw_data = false;                // the content in Data frames, not chunk events
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("path", s.path, kPath);
    v("sessionId", s.session_id, kId);
    v("encoding", s.encoding, OneOf(kEncodings));
    v("maxBytes", s.max_bytes, Range(0, INT64_MAX));
    v("rawData", s.raw_data);
  }
};

struct FileWriteOp {
  static constexpr std::string_view kOp = "file.write";
  std::string path;
  std::optional<std::string> session_id;
  std::optional<std::string> content;  // or, with content_in_data, Data frames
  std::optional<std::string> encoding;
  bool content_in_data = false;
  // With content_in_data: the content's size, sent in any number of Data
  // frames (written as they arrive); absent, the content is one Data frame.
  std::optional<int64_t> data_size;
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("path", s.path, kPath);
    v("sessionId", s.session_id, kId);
    v("content", s.content);
    v("encoding", s.encoding, OneOf(kEncodings));
    v("contentInData", s.content_in_data);
    v("dataSize", s.data_size, Range(0, INT64_MAX));
  }
};

// file.delete and file.exists.
struct FileDeleteOp {
  static constexpr std::string_view kOp = "file.delete";
  std::string path;
  std::optional<std::string> session_id;
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("path", s.path, kPath);
    v("sessionId", s.session_id, kId);
  }
};
struct FileExistsOp : FileDeleteOp {
  static constexpr std::string_view kOp = "file.exists";
};

struct FileRenameOp {
  static constexpr std::string_view kOp = "file.rename";
  std::string old_path, new_path;
  std::optional<std::string> session_id;
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("oldPath", s.old_path, kPath);
    v("newPath", s.new_path, kPath);
    v("sessionId", s.session_id, kId);
  }
};

struct FileMoveOp {
  static constexpr std::string_view kOp = "file.move";
  std::string source_path, destination_path;
  std::optional<std::string> session_id;
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("sourcePath", s.source_path, kPath);
    v("destinationPath", s.destination_path, kPath);
    v("sessionId", s.session_id, kId);
  }
};

struct FileMkdirOp {
  static constexpr std::string_view kOp = "file.mkdir";
  std::string path;
  bool recursive = false;
  std::optional<std::string> session_id;
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("path", s.path, kPath);
    v("recursive", s.recursive);
    v("sessionId", s.session_id, kId);
  }
};

struct FileListOp {
  static constexpr std::string_view kOp = "file.list";
  std::string path;
  bool recursive = false;
  bool include_hidden = false;
  std::optional<std::string> session_id;
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("path", s.path, kPath);
    v("recursive", s.recursive);
    v("includeHidden", s.include_hidden);
    v("sessionId", s.session_id, kId);
  }
};

struct ProcessStartOp {
  static constexpr std::string_view kOp = "process.start";
  std::string command;
  std::optional<std::string> process_id;
  std::optional<std::string> session_id;
  std::optional<EnvVars> env;
  std::optional<std::string> cwd;
  std::optional<int64_t> timeout_ms;
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("command", s.command, kCommand);
    v("processId", s.process_id, kId);
    v("sessionId", s.session_id, kId);
    v("env", s.env);
    v("cwd", s.cwd);
    v("timeoutMs", s.timeout_ms, Range(0, kMaxTimeoutMs));
  }
};

struct ProcessListOp {
  static constexpr std::string_view kOp = "process.list";
  std::optional<std::string> status;  // only processes in this status
  template <class S, class V>
  static void Fields(S& s, V& v) { v("status", s.status); }
};

// process.get, process.logs and process.stream name one process.
struct ProcessGetOp {
  static constexpr std::string_view kOp = "process.get";
  std::string process_id;
  template <class S, class V>
  static void Fields(S& s, V& v) { v("processId", s.process_id, kId); }
};
struct ProcessLogsOp : ProcessGetOp {
  static constexpr std::string_view kOp = "process.logs";
};
struct ProcessStreamOp : ProcessGetOp {
  static constexpr std::string_view kOp = "process.stream";
};

struct ProcessKillOp {
  static constexpr std::string_view kOp = "process.kill";
  std::string process_id;
  std::optional<int64_t> signal;  // default SIGTERM
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("processId", s.process_id, kId);
    v("signal", s.signal, Range(1, 64));
  }
};

struct ProcessKillAllOp {
  static constexpr std::string_view kOp = "process.killAll";
  template <class S, class V>
  static void Fields(S&, V&) {}
};

// Removes the finished processes.
struct ProcessCleanupOp {
  static constexpr std::string_view kOp = "process.cleanup";
  template <class S, class V>
  static void Fields(S&, V&) {}
};

struct PortWatchOp {
  static constexpr std::string_view kOp = "port.watch";
  int64_t port = 0;
  std::optional<std::string> mode;  // "http" (default) or "tcp"
  std::optional<std::string> path;  // of the HTTP check, default "/"
  std::optional<int64_t> status_min, status_max;
  std::optional<std::string> process_id;  // ends the watch when it exits
  std::optional<int64_t> interval;        // ms between checks
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("port", s.port, Range(1, 65535));
    v("mode", s.mode, OneOf(kPortModes));
    v("path", s.path);
    v("statusMin", s.status_min, Range(100, 599));
    v("statusMax", s.status_max, Range(100, 599));
    v("processId", s.process_id, kId);
    v("interval", s.interval, Range(0, kMaxTimeoutMs));
  }
};

// fs.watch (events, a stream) and fs.check (one answer).
struct FsWatchOp {
  static constexpr std::string_view kOp = "fs.watch";
  std::string path;
  bool recursive = true;
  std::optional<std::string> session_id;
  std::optional<Strings> include, exclude;  // globs, not both
  std::optional<Strings> events;            // event names, default all
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("path", s.path, kPath);
    v("recursive", s.recursive);
    v("sessionId", s.session_id, kId);
    v("include", s.include);
    v("exclude", s.exclude);
    v("events", s.events);
  }
};

struct FsCheckOp {
  static constexpr std::string_view kOp = "fs.check";
  std::string path;
  bool recursive = true;
  std::optional<std::string> session_id;
  std::optional<Strings> include, exclude;
  std::optional<std::string> since;  // a version from an earlier answer
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("path", s.path, kPath);
    v("recursive", s.recursive);
    v("sessionId", s.session_id, kId);
    v("include", s.include);
    v("exclude", s.exclude);
    v("since", s.since);
  }
};

struct PtyAttachOp {
  static constexpr std::string_view kOp = "pty.attach";
  std::string session_id;
  std::optional<int64_t> cols, rows;  // default 80x24, used when the PTY is created
  std::optional<std::string> shell;
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("sessionId", s.session_id, kId);
    v("cols", s.cols, Range(1, 1000));
    v("rows", s.rows, Range(1, 1000));
    v("shell", s.shell);
  }
};

struct PtyResizeOp {
  static constexpr std::string_view kOp = "pty.resize";
  std::string session_id;
  int64_t cols = 0, rows = 0;
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("sessionId", s.session_id, kId);
    v("cols", s.cols, Range(1, 1000));
    v("rows", s.rows, Range(1, 1000));
  }
};

struct ContextHealthOp {
  static constexpr std::string_view kOp = "context.health";
  template <class S, class V>
  static void Fields(S&, V&) {}
};
struct ContextListOp {
  static constexpr std::string_view kOp = "context.list";
  template <class S, class V>
  static void Fields(S&, V&) {}
};

struct ContextCreateOp {
  static constexpr std::string_view kOp = "context.create";
  std::optional<std::string> language;  // default python
  std::optional<std::string> cwd;
  std::optional<EnvVars> env;
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("language", s.language);
    v("cwd", s.cwd);
    v("env", s.env);
  }
};

struct ContextRunOp {
  static constexpr std::string_view kOp = "context.run";
  std::string context_id;
  std::string code;
  std::optional<std::string> language;
  std::optional<int64_t> timeout_ms;
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("contextId", s.context_id, kId);
    v("code", s.code);
    v("language", s.language);
    v("timeoutMs", s.timeout_ms, Range(0, kMaxTimeoutMs));
  }
};

// context.get, restart, interrupt and delete name one context.
struct ContextGetOp {
  static constexpr std::string_view kOp = "context.get";
  std::string context_id;
  template <class S, class V>
  static void Fields(S& s, V& v) { v("contextId", s.context_id, kId); }
};
struct ContextRestartOp : ContextGetOp {
  static constexpr std::string_view kOp = "context.restart";
};
struct ContextInterruptOp : ContextGetOp {
  static constexpr std::string_view kOp = "context.interrupt";
};
struct ContextDeleteOp : ContextGetOp {
  static constexpr std::string_view kOp = "context.delete";
};

using AnyOp = std::variant<HelloOp, ExecOp, SessionCreateOp, SessionDeleteOp, SessionListOp, FileReadOp, FileWriteOp,
                           FileDeleteOp, FileExistsOp, FileRenameOp, FileMoveOp, FileMkdirOp, FileListOp,
                           ProcessStartOp, ProcessListOp, ProcessGetOp, ProcessLogsOp, ProcessStreamOp,
                           ProcessKillOp, ProcessKillAllOp, ProcessCleanupOp, PortWatchOp, FsWatchOp, FsCheckOp, PtyAttachOp,
                           PtyResizeOp, ContextHealthOp, ContextListOp, ContextCreateOp, ContextRunOp, ContextGetOp,
                           ContextRestartOp, ContextInterruptOp, ContextDeleteOp>;

// The request object of `op`, with "op" set to its name.
template <class Op>
Json ToJson(const Op& op);
Json ToJson(const AnyOp& op);
// A request whose "op" must be Op::kOp.
template <class Op>
Result<Op> ParseOp(const Json& request);
// A request of any op (an unknown "op" is kInvalidArgument with context
// "op"; a missing one, with context "field" "op").
Result<AnyOp> ParseAnyOp(const Json& request);
// The "op" of `op` (its kOp).
std::string_view OpName(const AnyOp& op);

// ---- Replies and events (agent -> coved), untrusted ----

// The "type" of an event or reply; "" when absent or not a string.
std::string_view TypeOf(const Json& message);

// {type:"stdout"|"stderr", data}: output of exec, process.logs, process.stream, context.run.
struct OutputEvent {
  bool is_stderr = false;
  std::string data;
};
// Fails unless `event` is an object of type stdout or stderr with string data.
Result<OutputEvent> ParseOutputEvent(const Json& event);

// The reply of exec: {type:"complete", exitCode, timedOut?, cancelled?, sessionTerminated?, sessionReset?}.
struct ExecReply {
  int64_t exit_code = -1;
  bool timed_out = false, cancelled = false, session_terminated = false, session_reset = false;
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("exitCode", s.exit_code);
    v("timedOut", s.timed_out);
    v("cancelled", s.cancelled);
    v("sessionTerminated", s.session_terminated);
    v("sessionReset", s.session_reset);
  }
};
Result<ExecReply> ParseExecReply(const Json& reply);

// The first event of file.read: {type:"metadata", mimeType, size, isBinary, encoding}.
struct FileMetadata {
  std::string mime_type;
  int64_t size = 0;
  bool is_binary = false;
  std::string encoding;  // "utf-8" or "base64"
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("mimeType", s.mime_type);
    v("size", s.size, Range(0, INT64_MAX));
    v("isBinary", s.is_binary);
    v("encoding", s.encoding, OneOf(kEncodings));
  }
};
Result<FileMetadata> ParseFileMetadata(const Json& event);

// A background process: {id, pid, command, status, startTime, endTime?, exitCode?}.
struct ProcessInfo {
  std::string id;
  std::optional<int64_t> pid;  // null for a process that could not start
  std::string command, status, start_time;
  std::optional<std::string> end_time;
  std::optional<int64_t> exit_code;
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("id", s.id);
    v("pid", s.pid);
    v("command", s.command);
    v("status", s.status);
    v("startTime", s.start_time);
    v("endTime", s.end_time);
    v("exitCode", s.exit_code);
  }
};
Result<ProcessInfo> ParseProcessInfo(const Json& process);

// The reply of process.start: {processId, pid, ...}.
struct ProcessStartReply {
  std::string process_id;
  int64_t pid = 0;
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("processId", s.process_id);
    v("pid", s.pid);
  }
};
Result<ProcessStartReply> ParseProcessStartReply(const Json& reply);

// A code context: {id, language, cwd, status, executionCount, createdAt, pid?, error?}.
struct ContextInfo {
  std::string id, language, cwd, status;
  int64_t execution_count = 0;
  std::string created_at;
  std::optional<int64_t> pid;
  std::optional<std::string> error;
  template <class S, class V>
  static void Fields(S& s, V& v) {
    v("id", s.id);
    v("language", s.language);
    v("cwd", s.cwd);
    v("status", s.status);
    v("executionCount", s.execution_count);
    v("createdAt", s.created_at);
    v("pid", s.pid);
    v("error", s.error);
  }
};
Result<ContextInfo> ParseContextInfo(const Json& context);

}  // namespace cove::agent
