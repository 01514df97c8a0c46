// Splitting a request target into its decoded path and query parameters.
#pragma once

#include <map>
#include <string>
#include <string_view>


namespace cove::api {

// %XX-decodes s (and '+' as a space when plus_is_space); malformed escapes are kept as they are.
std::string PercentDecode(std::string_view s, bool plus_is_space);
// Splits a request target into its decoded path and query parameters.
void SplitTarget(std::string_view target, std::string* path, std::map<std::string, std::string>* query);

}  // namespace cove::api
