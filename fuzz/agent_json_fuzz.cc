// ParseJson (src/base/json_parse.h): cove-agent's own JSON parser for
// every request payload it receives.
//
// Properties, checked against nlohmann's parser as the reference: what
// ParseJson accepts nlohmann accepts, with an equal value; what it rejects
// nlohmann rejects too, unless the document nests deeper than ParseJson's
// documented limit of 128 or holds a raw NUL (which nlohmann takes for the end
// of the input); an accepted value survives dump + ParseJson.
#include <nlohmann/json.hpp>

#include <string>

#include "base/json_parse.h"
#include "fuzz.h"

namespace {

using json = nlohmann::json;

// Nesting depth of a JSON value (scalars are 0).
size_t Depth(const json& j) {
  size_t d = 0;
  if (j.is_structured())
    for (const auto& v : j) d = std::max(d, Depth(v));
  return j.is_structured() ? d + 1 : 0;
}

// Equal values, where -0.0 == 0.0 but NaN cannot occur (neither parser makes one).
bool Same(const json& a, const json& b) { return a == b; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::optional<json> ours = cove::ParseJson(text);
  json ref = json::parse(text, nullptr, /*allow_exceptions=*/false);

  if (ours) {
    FUZZ_CHECK(text.find('\0') == std::string_view::npos);
    FUZZ_CHECK(!ref.is_discarded());
    FUZZ_CHECK(Same(*ours, ref));
    FUZZ_CHECK(Depth(*ours) <= 129);
    std::string dumped = ours->dump();
    std::optional<json> again = cove::ParseJson(dumped);
    FUZZ_CHECK(again.has_value());
    FUZZ_CHECK(Same(*again, *ours));
  } else if (text.find('\0') != std::string_view::npos) {
    // A raw NUL is never valid JSON (nlohmann takes it for the end of input, so
    // it is no reference here): refused above, nothing more to compare.
  } else if (!ref.is_discarded()) {
    // The only documented reason to refuse valid JSON: nesting beyond 128.
    FUZZ_CHECK(Depth(ref) > 128);
  }
  return 0;
}
