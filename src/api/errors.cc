#include "api/errors.h"

#include <array>
#include <utility>

#include "base/time.h"

namespace cove::api {

int StatusForCode(std::string_view code) {
  static constexpr std::pair<std::string_view, int> kTable[] = {
      {"FILE_NOT_FOUND", 404}, {"COMMAND_NOT_FOUND", 404}, {"PROCESS_NOT_FOUND", 404},
      {"PORT_NOT_EXPOSED", 404}, {"GIT_REPOSITORY_NOT_FOUND", 404}, {"GIT_BRANCH_NOT_FOUND", 404},
      {"CONTEXT_NOT_FOUND", 404}, {"WATCH_NOT_FOUND", 404}, {"BACKUP_NOT_FOUND", 404},
      {"SANDBOX_NOT_FOUND", 404}, {"IMAGE_NOT_FOUND", 404}, {"SECRET_NOT_FOUND", 404}, {"NOT_FOUND", 404}, {"UNKNOWN_ERROR", 404},
      {"IS_DIRECTORY", 400}, {"NOT_DIRECTORY", 400}, {"INVALID_COMMAND", 400}, {"INVALID_PORT", 400},
      {"INVALID_PORT_NUMBER", 400}, {"INVALID_GIT_URL", 400}, {"GIT_OPERATION_FAILED", 500}, {"CUSTOM_DOMAIN_REQUIRED", 400},
      {"NAME_TOO_LONG", 400}, {"VALIDATION_FAILED", 400}, {"MISSING_CREDENTIALS", 400},
      {"INVALID_MOUNT_CONFIG", 400}, {"BACKUP_EXPIRED", 400}, {"INVALID_BACKUP_CONFIG", 400},
      {"BAD_REQUEST", 400}, {"UNAUTHORIZED", 401}, {"GIT_AUTH_FAILED", 401},
      {"PERMISSION_DENIED", 403}, {"COMMAND_PERMISSION_DENIED", 403},
      {"PROCESS_PERMISSION_DENIED", 403}, {"READ_ONLY", 403}, {"METHOD_NOT_ALLOWED", 405},
      {"FILE_EXISTS", 409}, {"PORT_ALREADY_EXPOSED", 409}, {"PORT_IN_USE", 409}, {"RESOURCE_BUSY", 409},
      {"SESSION_ALREADY_EXISTS", 409}, {"OPERATION_INTERRUPTED", 409}, {"CONTEXT_CRASHED", 409}, {"CONTEXT_BUSY", 409}, {"SANDBOX_ALREADY_EXISTS", 409},
      {"IMAGE_ALREADY_EXISTS", 409}, {"PROCESS_ALREADY_EXISTS", 409}, {"PTY_NOT_FOUND", 404}, {"SESSION_DESTROYED", 410}, {"SESSION_TERMINATED", 410},
      {"FILE_TOO_LARGE", 413}, {"PAYLOAD_TOO_LARGE", 413}, {"OUTPUT_TOO_LARGE", 413}, {"SERVICE_NOT_RESPONDING", 502},
      {"GIT_NETWORK_ERROR", 502}, {"SANDBOX_FAILED", 502}, {"PYTHON_NOT_AVAILABLE", 501},
      {"JAVASCRIPT_NOT_AVAILABLE", 501}, {"NOT_IMPLEMENTED", 501}, {"INTERPRETER_NOT_READY", 503},
      {"OPENCODE_STARTUP_FAILED", 503}, {"RPC_TRANSPORT_ERROR", 503}, {"CONTAINER_UNAVAILABLE", 503},
      {"TOO_MANY_CONNECTIONS", 503}, {"TOO_MANY_REQUESTS", 429},
      {"PROCESS_READY_TIMEOUT", 408}, {"DISK_QUOTA_EXCEEDED", 507},
  };
  for (const auto& [c, status] : kTable)
    if (c == code) return status;
  return 500;
}

nlohmann::json ErrorBody(std::string_view code, std::string message, nlohmann::json context) {
  int status = StatusForCode(code);
  return {{"code", code}, {"message", std::move(message)}, {"context", std::move(context)},
          {"httpStatus", status}, {"timestamp", IsoNow()}};
}

HttpResponse JsonResponse(const nlohmann::json& body, int status) {
  HttpResponse res;
  res.status = status;
  res.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return res;
}

HttpResponse ErrorResponse(std::string_view code, std::string message, nlohmann::json context) {
  return JsonResponse(ErrorBody(code, std::move(message), std::move(context)), StatusForCode(code));
}

HttpResponse ErrorResponse(const Error& error, std::string_view not_found_code) {
  std::string_view code = "INTERNAL_ERROR";
  switch (error.code) {
    case ErrorCode::kInvalidArgument: code = "VALIDATION_FAILED"; break;
    case ErrorCode::kNotFound: code = not_found_code; break;
    case ErrorCode::kAlreadyExists: code = "SANDBOX_ALREADY_EXISTS"; break;
    case ErrorCode::kPermissionDenied: code = "PERMISSION_DENIED"; break;
    case ErrorCode::kFailedPrecondition: code = "SANDBOX_FAILED"; break;
    case ErrorCode::kUnavailable:
    case ErrorCode::kTimeout: code = "SERVICE_NOT_RESPONDING"; break;
    case ErrorCode::kResourceExhausted: code = "RESOURCE_BUSY"; break;
    case ErrorCode::kCancelled: code = "OPERATION_INTERRUPTED"; break;
    case ErrorCode::kInternal: break;
  }
  nlohmann::json context = nlohmann::json::object();
  for (const auto& [k, v] : error.context) context[k] = v;
  return ErrorResponse(code, error.ToString(), std::move(context));
}

}  // namespace cove::api
