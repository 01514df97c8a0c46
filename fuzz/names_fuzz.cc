// Name and path checks on caller-supplied strings before anything touches the
// kernel: isolation::ValidateImageName (image names become directory names),
// isolation::ValidateSandboxId and cove::CheckSandboxId (ids become hostnames,
// cgroup and layer names), isolation::ValidateAbsolutePath.
//
// Properties: whatever is accepted is safe as one path component (no '/',
// no NUL, not "." or "..") and within its length and alphabet; accepted
// absolute paths have no "." or ".." component; the isolation layer's id
// check is at least as strict as the API's.
#include <string>

#include "fuzz.h"
#include "isolation/image_import.h"
#include "isolation/validate.h"
#include "manager/sandbox_id.h"

namespace {

bool SafeComponent(std::string_view s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string_view::npos &&
         s.find('\0') == std::string_view::npos;
}

bool Lower(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string s(reinterpret_cast<const char*>(data), size);

  if (cove::isolation::ValidateImageName(s).ok()) {
    FUZZ_CHECK(SafeComponent(s) && s.size() <= 63 && s != "default");
    FUZZ_CHECK(Lower(s[0]));
    for (char c : s) FUZZ_CHECK(Lower(c) || c == '.' || c == '_' || c == '-');
  }

  bool iso_ok = cove::isolation::ValidateSandboxId(s).ok();
  std::string api_why = cove::CheckSandboxId(s);
  if (iso_ok) {
    FUZZ_CHECK(SafeComponent(s) && s.size() <= 63 && s[0] != '-');
    for (char c : s) FUZZ_CHECK(Lower(c) || c == '-');
    FUZZ_CHECK(api_why.empty());
  }
  if (api_why.empty()) {
    FUZZ_CHECK(SafeComponent(s) && s.size() <= 63);
  }

  if (cove::isolation::ValidateAbsolutePath(s).ok()) {
    FUZZ_CHECK(!s.empty() && s[0] == '/' && s.size() <= 1024);
    FUZZ_CHECK(s.find('\0') == std::string::npos);
    std::string_view rest(s);
    while (!rest.empty()) {
      size_t slash = rest.find('/');
      std::string_view comp = rest.substr(0, slash);
      FUZZ_CHECK(comp != "." && comp != "..");
      if (slash == std::string_view::npos) break;
      rest.remove_prefix(slash + 1);
    }
  }
  return 0;
}
