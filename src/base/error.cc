#include "base/error.h"

#include <cstring>

namespace cove {

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kAlreadyExists: return "already exists";
    case ErrorCode::kPermissionDenied: return "permission denied";
    case ErrorCode::kResourceExhausted: return "resource exhausted";
    case ErrorCode::kFailedPrecondition: return "failed precondition";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kCancelled: return "cancelled";
    case ErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

std::string Error::ToString() const {
  std::string s = message;
  if (sys_errno != 0) {
    s += ": ";
    s += std::strerror(sys_errno);
  }
  return s;
}

Error SysError(std::string what) { return SysError(std::move(what), errno); }

Error SysError(std::string what, int err) {
  ErrorCode code = ErrorCode::kInternal;
  switch (err) {
    case ENOENT: code = ErrorCode::kNotFound; break;
    case EEXIST: code = ErrorCode::kAlreadyExists; break;
    case EACCES:
    case EPERM: code = ErrorCode::kPermissionDenied; break;
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EAGAIN: code = ErrorCode::kResourceExhausted; break;
    case EINVAL:
    case ENAMETOOLONG: code = ErrorCode::kInvalidArgument; break;
    case ETIMEDOUT: code = ErrorCode::kTimeout; break;
    default: break;
  }
  return Error{code, err, std::move(what), {}};
}

}  // namespace cove
