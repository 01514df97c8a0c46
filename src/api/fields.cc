#include "api/fields.h"

#include <fmt/format.h>

#include <algorithm>

#include "agent/limits.h"
#include "base/json_limits.h"
#include "base/json_parse.h"

namespace cove::api {

std::string ParseJsonObject(const std::string& body, Json* out) {
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) {
    *out = Json::object();
    return {};
  }
  // One strict pass (bodies carry whole files: nlohmann's lexer took ~10 ms per MiB).
  auto parsed = ParseJson(body, kMaxJsonDepth);
  if (!parsed) {
    if (!JsonWithinLimits(body))
      return fmt::format("request body nests deeper than {} levels or holds a NUL byte", kMaxJsonDepth);
    return "request body is not valid JSON";
  }
  *out = std::move(*parsed);
  if (!out->is_object()) return "request body must be a JSON object";
  return {};
}

std::string ParseJsonObject(HttpRequest& req, Json* out) {
  if (!req.json_body) return ParseJsonObject(req.body, out);
  *out = std::move(*req.json_body);
  req.json_body.reset();
  if (!out->is_object()) return "request body must be a JSON object";
  return {};
}

const Json* Fields::Find(const char* key, bool required) {
  auto it = o_.find(key);
  if (it == o_.end() || it->is_null()) {
    if (required) Fail(fmt::format("missing required field '{}'", key));
    return nullptr;
  }
  return &*it;
}

void Fields::OnlyKnown(std::initializer_list<std::string_view> known) {
  if (!o_.is_object()) return;
  for (auto it = o_.begin(); it != o_.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) != known.end()) continue;
    std::string names;
    for (std::string_view k : known) names += (names.empty() ? "" : ", ") + std::string(k);
    std::string quoted = Json(it.key().substr(0, 64)).dump(-1, ' ', false, Json::error_handler_t::replace);
    return Fail(fmt::format("unknown field {} (the fields are: {})", quoted, names));
  }
}

std::string Fields::Str(const char* key, bool required, std::string fallback) {
  const Json* v = Find(key, required);
  if (!v) return fallback;
  if (!v->is_string()) {
    Fail(fmt::format("field '{}' must be a string", key));
    return fallback;
  }
  if (required && v->get_ref<const std::string&>().empty()) {
    Fail(fmt::format("field '{}' must not be empty", key));
    return fallback;
  }
  return v->get<std::string>();
}

std::optional<std::string> Fields::OptStr(const char* key) {
  const Json* v = Find(key, false);
  if (!v) return std::nullopt;
  if (!v->is_string()) {
    Fail(fmt::format("field '{}' must be a string", key));
    return std::nullopt;
  }
  return v->get<std::string>();
}

bool Fields::Bool(const char* key, bool fallback) {
  const Json* v = Find(key, false);
  if (!v) return fallback;
  if (!v->is_boolean()) {
    Fail(fmt::format("field '{}' must be a boolean", key));
    return fallback;
  }
  return v->get<bool>();
}

std::optional<int64_t> Fields::Int(const char* key, int64_t min, int64_t max) {
  const Json* v = Find(key, false);
  if (!v) return std::nullopt;
  auto out_of_range = [&] {
    Fail(fmt::format("field '{}' must be between {} and {}", key, min, max));
    return std::nullopt;
  };
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (max < 0 || u > static_cast<uint64_t>(max) || static_cast<int64_t>(u) < min) return out_of_range();
    return static_cast<int64_t>(u);
  }
  if (v->is_number_integer()) {
    int64_t i = v->get<int64_t>();
    if (i < min || i > max) return out_of_range();
    return i;
  }
  if (v->is_number_float()) {
    // Range first: casting an out-of-range double is undefined.
    double d = v->get<double>();
    if (!(d >= static_cast<double>(min) && d <= static_cast<double>(max))) return out_of_range();
    if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
  }
  Fail(fmt::format("field '{}' must be an integer", key));
  return std::nullopt;
}

std::map<std::string, std::string> Fields::StrMap(const char* key) {
  std::map<std::string, std::string> out;
  const Json* v = Find(key, false);
  if (!v) return out;
  if (!v->is_object()) {
    Fail(fmt::format("field '{}' must be an object of strings", key));
    return out;
  }
  for (auto it = v->begin(); it != v->end(); ++it) {
    if (!it.value().is_string()) {
      Fail(fmt::format("field '{}.{}' must be a string", key, it.key()));
      return {};
    }
    out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

}  // namespace cove::api

namespace cove::api {

std::map<std::string, std::string> Fields::EnvMap(const char* key) {
  auto env = StrMap(key);
  for (const auto& [name, value] : env) {
    bool ok = !name.empty() && name.size() <= 255 && !(name[0] >= '0' && name[0] <= '9');
    for (char c : name)
      ok = ok && ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
    if (!ok) {
      Fail(fmt::format("field '{}' has an invalid variable name '{}' (want [A-Za-z_][A-Za-z0-9_]*, at most 255)",
                       key, name.substr(0, 64)));
      return {};
    }
    if (value.find('\0') != std::string::npos) {
      Fail(fmt::format("field '{}.{}' contains a NUL character", key, name));
      return {};
    }
  }
  return env;
}

}  // namespace cove::api

namespace cove::api {
namespace {

// The code point at s[*i] (advancing *i), or -1 for invalid UTF-8 (overlong
// forms, surrogates, beyond U+10FFFF, truncated sequences).
int32_t NextCodePoint(std::string_view s, size_t* i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(*i);
  if (c < 0x80) return s[(*i)++];
  int len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
  if (len == 0 || c > 0xf4 || *i + len > s.size()) return -1;
  int32_t cp = c & (0x7f >> len);
  for (int k = 1; k < len; ++k) {
    if ((b(*i + k) & 0xc0) != 0x80) return -1;
    cp = (cp << 6) | (b(*i + k) & 0x3f);
  }
  static constexpr int32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
  *i += len;
  return cp;
}

bool IsControl(int32_t cp) { return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f); }

// Format characters that hide or reorder text.
bool IsHiddenFormat(int32_t cp) {
  return cp == 0xad || cp == 0x61c || cp == 0x180e || (cp >= 0x200b && cp <= 0x200f) ||
         (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff ||
         (cp >= 0xfff9 && cp <= 0xfffb) || (cp >= 0xe0000 && cp <= 0xe007f);
}

}  // namespace

std::string IdProblem(std::string_view field, std::string_view id) {
  if (id.empty() || id.size() > kMaxIdBytes)
    return fmt::format("field '{}' must be 1-{} bytes (it is {})", field, kMaxIdBytes, id.size());
  for (size_t i = 0; i < id.size();) {
    size_t at = i;
    int32_t cp = NextCodePoint(id, &i);
    if (cp < 0) return fmt::format("field '{}' is not valid UTF-8 (byte {})", field, at);
    if (IsControl(cp))
      return fmt::format("field '{}' must not contain control characters (U+{:04X} at byte {})", field, cp, at);
    if (IsHiddenFormat(cp))
      return fmt::format("field '{}' must not contain invisible or bidirectional format characters (U+{:04X} at byte {})",
                         field, cp, at);
  }
  return {};
}

std::string ProcessIdProblem(std::string_view field, std::string_view id) {
  if (auto why = IdProblem(field, id); !why.empty()) return why;
  if (id.size() > 128 || id.find_first_of("/ ") != std::string_view::npos)
    return fmt::format("field '{}' must be at most 128 bytes without '/' or spaces", field);
  return {};
}

std::optional<std::string> Fields::Id(const char* key, bool required) {
  const Json* v = Find(key, required);
  if (!v) return std::nullopt;
  if (!v->is_string()) {
    Fail(fmt::format("field '{}' must be a string", key));
    return std::nullopt;
  }
  const std::string& id = v->get_ref<const std::string&>();
  if (id.empty() && !required) return id;
  if (auto why = IdProblem(key, id); !why.empty()) {
    Fail(std::move(why));
    return std::nullopt;
  }
  return id;
}

std::string Fields::Command(const char* key) {
  std::string command = Str(key, true);
  if (command.find('\0') != std::string::npos) {
    Fail(fmt::format("field '{}' contains a NUL byte", key));
    return {};
  }
  if (auto why = agent::CommandSizeProblem(command.size()); !why.empty()) {
    Fail(std::move(why));
    return {};
  }
  return command;
}

}  // namespace cove::api
