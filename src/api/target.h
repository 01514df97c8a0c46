// Splitting a request target into its decoded path and query parameters.
#pragma once

#include <string>
#include <string_view>

#include "api/http.h"

namespace cove::api {

// %XX-decodes s (and '+' as a space when plus_is_space); malformed escapes are kept as they are.
std::string PercentDecode(std::string_view s, bool plus_is_space);
// Fills req.path and req.query from req.target.
void SplitTarget(HttpRequest& req);

}  // namespace cove::api
