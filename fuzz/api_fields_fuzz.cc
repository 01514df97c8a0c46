// api::ParseJsonObject and api::Fields (src/api/fields.h): every JSON request
// body of coved's HTTP API goes through them.
//
// The body is parsed, then read the way the routes read it (native create
// with its nested "limits", exec, file and session routes). Properties:
// ParseJsonObject accepts exactly the JSON objects (and blank bodies); a
// value returned by Int is within its bounds and a returned string is the
// field's; the first problem is kept, and is never empty once reported. The
// raw input, as an id: IdProblem accepts only 1-256 bytes of valid UTF-8
// (nlohmann agrees) without C0 controls or DEL.
#include <string>

#include "api/fields.h"
#include "fuzz.h"

using cove::api::Fields;
using cove::api::Json;

namespace {

void CheckInt(Fields& f, const Json& o, const char* key, int64_t min, int64_t max) {
  bool was_ok = f.ok();
  std::optional<int64_t> v = f.Int(key, min, max);
  if (v) {
    FUZZ_CHECK(*v >= min && *v <= max);
    FUZZ_CHECK(o.contains(key) && o[key].is_number());
  }
  if (was_ok && !v && o.contains(key) && !o[key].is_null()) FUZZ_CHECK(!f.ok());
}

void CheckStr(Fields& f, const Json& o, const char* key, bool required) {
  bool was_ok = f.ok();
  std::string s = f.Str(key, required, "fallback");
  auto it = o.find(key);
  bool good = it != o.end() && it->is_string() && !(required && it->get_ref<const std::string&>().empty());
  if (good) FUZZ_CHECK(s == it->get_ref<const std::string&>());
  else FUZZ_CHECK(s == "fallback");
  if (was_ok) FUZZ_CHECK(f.ok() == (good || ((it == o.end() || it->is_null()) && !required)));
}

// An accepted id is bounded, valid UTF-8 and free of ASCII controls.
void CheckId(std::string_view id) {
  if (!cove::api::IdProblem("id", id).empty()) return;
  FUZZ_CHECK(!id.empty() && id.size() <= cove::api::kMaxIdBytes);
  for (char c : id) FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
  bool valid = true;
  try {
    (void)Json(std::string(id)).dump();
  } catch (const Json::type_error&) {
    valid = false;
  }
  FUZZ_CHECK(valid);
}

void ReadLikeRoutes(const Json& body) {
  Fields f(body);
  CheckStr(f, body, "id", false);
  CheckStr(f, body, "command", true);
  CheckStr(f, body, "path", true);
  if (auto id = f.Id("sessionId"); id && !id->empty()) {
    FUZZ_CHECK(*id == body["sessionId"].get_ref<const std::string&>());
    CheckId(*id);
  }
  (void)f.OptStr("cwd");
  (void)f.OptStr("encoding");
  (void)f.Bool("background");
  (void)f.Bool("recursive");
  CheckInt(f, body, "timeoutMs", 1, int64_t{1} << 40);
  CheckInt(f, body, "commandTimeoutMs", 1, int64_t{1} << 40);
  for (const char* key : {"env", "labels"}) {
    auto m = f.StrMap(key);
    for (const auto& [k, v] : m) {
      FUZZ_CHECK(body[key].is_object() && body[key].contains(k));
      FUZZ_CHECK(body[key][k].is_string() && body[key][k].get_ref<const std::string&>() == v);
    }
  }
  {
    Fields ef(body);  // environment names: only [A-Za-z_][A-Za-z0-9_]{0,254}, values without NUL
    for (const auto& [k, v] : ef.EnvMap("env")) {
      FUZZ_CHECK(!k.empty() && k.size() <= 255 && !(k[0] >= '0' && k[0] <= '9'));
      for (char c : k) FUZZ_CHECK(c == '_' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'));
      FUZZ_CHECK(v.find('\0') == std::string::npos);
    }
  }
  // Nested objects, as "limits" (native create) and "options" (list-files) are read.
  for (const char* key : {"limits", "options"}) {
    auto it = body.find(key);
    if (it == body.end() || !it->is_object()) continue;
    Fields nested(*it);
    CheckInt(nested, *it, "cpuMillis", 10, 256000);
    CheckInt(nested, *it, "memoryBytes", 16 << 20, int64_t{1} << 42);
    CheckInt(nested, *it, "pids", 8, 1 << 22);
    CheckInt(nested, *it, "diskBytes", 16 << 20, int64_t{1} << 44);
    (void)nested.Bool("recursive");
    (void)nested.Bool("includeHidden");
    FUZZ_CHECK(nested.ok() || !nested.problem().empty());
    if (!nested.ok()) f.Fail("nested: " + nested.problem());
  }
  FUZZ_CHECK(f.ok() == f.problem().empty());
  std::string first = f.problem();
  f.Fail("later problem");
  if (!first.empty()) FUZZ_CHECK(f.problem() == first);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string body(reinterpret_cast<const char*>(data), size);
  CheckId(body);
  Json parsed;
  std::string problem = cove::api::ParseJsonObject(body, &parsed);
  if (!problem.empty()) {
    Json ref = Json::parse(body, nullptr, false);
    FUZZ_CHECK(ref.is_discarded() || !ref.is_object());
    return 0;
  }
  FUZZ_CHECK(parsed.is_object());
  ReadLikeRoutes(parsed);
  return 0;
}
