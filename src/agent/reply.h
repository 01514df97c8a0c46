// Error replies with the Cloudflare error codes (reference §2.1), shared by
// the agent's op handlers.
#pragma once

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

// Optional/required string field. On a wrong type or a missing required
// field returns false and sets *err to a VALIDATION_FAILED reply.
inline bool GetString(const json& req, const char* key, bool required, std::string* out, json* err) {
  auto it = req.find(key);
  if (it == req.end() || it->is_null()) {
    if (!required) return true;
    *err = ValidationError(std::string("missing field '") + key + "'", key);
    return false;
  }
  if (!it->is_string()) {
    *err = ValidationError(std::string("field '") + key + "' must be a string", key);
    return false;
  }
  *out = it->get<std::string>();
  return true;
}

inline bool GetBool(const json& req, const char* key, bool* out, json* err) {
  auto it = req.find(key);
  if (it == req.end() || it->is_null()) return true;
  if (!it->is_boolean()) {
    *err = ValidationError(std::string("field '") + key + "' must be a boolean", key);
    return false;
  }
  *out = it->get<bool>();
  return true;
}

// Optional non-negative integer field (JSON number without fraction).
inline bool GetUint(const json& req, const char* key, std::optional<uint64_t>* out, json* err) {
  auto it = req.find(key);
  if (it == req.end() || it->is_null()) return true;
  if (it->is_number_unsigned()) {
    *out = it->get<uint64_t>();
    return true;
  }
  if (it->is_number_integer() && it->get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(it->get<int64_t>());
    return true;
  }
  if (it->is_number_float() && it->get<double>() >= 0 && it->get<double>() < 1e18) {
    *out = static_cast<uint64_t>(it->get<double>());
    return true;
  }
  *err = ValidationError(std::string("field '") + key + "' must be a non-negative number", key);
  return false;
}

// A path field: a required non-empty string without NUL.
inline bool GetPath(const json& req, const char* key, std::string* out, json* err) {
  if (!GetString(req, key, true, out, err)) return false;
  if (out->empty() || out->find('\0') != std::string::npos) {
    *err = ValidationError(std::string("field '") + key + "' must be a non-empty path", key);
    return false;
  }
  return true;
}

// Serialises a reply/event: compact, invalid UTF-8 replaced.
inline std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace cove::agent
