// API errors: the one place that maps error codes to HTTP statuses and builds
// the error envelope of the Cloudflare container API:
//   {"code","message","context","httpStatus","timestamp"}
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "api/http.h"
#include "base/error.h"

namespace cove::api {

// HTTP status for an error code (reference §2.1 plus cove's native codes).
int StatusForCode(std::string_view code);

HttpResponse ErrorResponse(std::string_view code, std::string message,
                           nlohmann::json context = nlohmann::json::object());
// An internal Error from the manager: picks the API code from its ErrorCode.
HttpResponse ErrorResponse(const Error& error, std::string_view not_found_code = "SANDBOX_NOT_FOUND");
// The SSE-safe JSON body of an error (for streams that already started).
nlohmann::json ErrorBody(std::string_view code, std::string message, nlohmann::json context = nlohmann::json::object());

HttpResponse JsonResponse(const nlohmann::json& body, int status = 200);

}  // namespace cove::api
