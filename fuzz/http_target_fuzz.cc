// SplitTarget/PercentDecode (src/api/target.h): every request target sent to
// coved, over HTTP and inside WebSocket request frames, goes through them.
//
// Properties: the decoded path comes from the part before the first '?';
// decoding never lengthens its input; text without '%' and '+' decodes to
// itself; every query parameter's name comes from the query.
#include <string>

#include "api/target.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string target(reinterpret_cast<const char*>(data), size);
  struct {
    std::string path;
    std::map<std::string, std::string> query;
  } req;
  cove::api::SplitTarget(target, &req.path, &req.query);
  std::string before_query = target.substr(0, target.find('?'));
  FUZZ_CHECK(req.path == cove::api::PercentDecode(before_query, false));
  FUZZ_CHECK(req.path.size() <= before_query.size());
  if (target.find('?') == std::string::npos) FUZZ_CHECK(req.query.empty());
  if (target.find_first_of("%+") == std::string::npos) {
    FUZZ_CHECK(cove::api::PercentDecode(target, true) == target);
    for (const auto& [k, v] : req.query) FUZZ_CHECK(target.find(k) != std::string::npos);
  }
  FUZZ_CHECK(cove::api::PercentDecode(target, true).size() <= target.size());
  return 0;
}
