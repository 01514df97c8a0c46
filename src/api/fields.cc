#include "api/fields.h"

#include <fmt/format.h>

#include "base/json_limits.h"

namespace cove::api {

std::string ParseJsonObject(const std::string& body, Json* out) {
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) {
    *out = Json::object();
    return {};
  }
  if (!JsonWithinLimits(body))
    return fmt::format("request body nests deeper than {} levels or holds a NUL byte", kMaxJsonDepth);
  *out = Json::parse(body, nullptr, false);
  if (out->is_discarded()) return "request body is not valid JSON";
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
