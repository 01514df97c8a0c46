// Base64Decode/Base64Encode (src/base/base64.h): coved decodes the content of
// /api/write with encoding "base64" from API clients.
//
// Properties: decoding accepts only padded input whose length is a multiple of
// 4, of the standard alphabet; it yields 3 bytes per 4 characters minus the
// padding; encode -> decode is the identity; decode -> encode gives back the
// input up to the unused low bits of the last character.
#include <string>

#include "base/base64.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::optional<std::string> out = cove::Base64Decode(in);
  if (out) {
    FUZZ_CHECK(in.size() % 4 == 0);
    size_t pad = 0;
    while (pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
    FUZZ_CHECK(pad <= 2);
    FUZZ_CHECK(out->size() == in.size() / 4 * 3 - pad);
    for (size_t i = 0; i < in.size() - pad; ++i) {
      char c = in[i];
      FUZZ_CHECK((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/');
    }
    std::string again = cove::Base64Encode(*out);
    FUZZ_CHECK(again.size() == in.size());
    // Equal except possibly the last data character (its unused low bits).
    size_t same = pad == 0 ? in.size() : in.size() - pad - 1;
    FUZZ_CHECK(again.compare(0, same, in, 0, same) == 0);
    FUZZ_CHECK(again.compare(same + (pad ? 1 : 0), std::string::npos, in.substr(same + (pad ? 1 : 0))) == 0);
  }
  std::string enc = cove::Base64Encode(in);
  FUZZ_CHECK(enc.size() == (in.size() + 2) / 3 * 4);
  std::optional<std::string> round = cove::Base64Decode(enc);
  FUZZ_CHECK(round.has_value() && *round == in);
  return 0;
}
