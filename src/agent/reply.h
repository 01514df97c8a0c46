// Error replies with the Cloudflare error codes (reference §2.1), shared by
// the agent's op handlers.
#pragma once

#include <nlohmann/json.hpp>

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>

namespace cove::agent {

using json = nlohmann::json;

// {"error": {"code", "message", "context"}}.
inline json ErrorReply(std::string_view code, std::string message, json context = json::object()) {
  return json{{"error", {{"code", code}, {"message", std::move(message)}, {"context", std::move(context)}}}};
}

inline bool IsError(const json& reply) { return reply.is_object() && reply.contains("error"); }

// Cloudflare code for a failed file-system call.
inline const char* FileCodeForErrno(int err) {
  switch (err) {
    case ENOENT: return "FILE_NOT_FOUND";
    case EISDIR: return "IS_DIRECTORY";
    case ENOTDIR: return "NOT_DIRECTORY";
    case EACCES:
    case EPERM: return "PERMISSION_DENIED";
    case EROFS: return "READ_ONLY";
    case EEXIST:
    case ENOTEMPTY: return "FILE_EXISTS";
    case EFBIG: return "FILE_TOO_LARGE";
    case ENAMETOOLONG: return "NAME_TOO_LONG";
    case EBUSY: return "RESOURCE_BUSY";
    case EDQUOT:
    case ENOSPC: return "DISK_QUOTA_EXCEEDED";  // the sandbox's disk limit (or the host's disk) is full
    default: return "FILESYSTEM_ERROR";
  }
}

inline json ValidationError(std::string message, std::string_view field) {
  return ErrorReply("VALIDATION_FAILED", std::move(message), json{{"field", field}});
}

// Serialises a reply/event: compact, invalid UTF-8 replaced.
inline std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace cove::agent
