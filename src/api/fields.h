// Fields: typed, bounded reads of a JSON request body. The first problem
// (missing required field, wrong type, out of range) is kept as a message for
// a 400 VALIDATION_FAILED; later reads return defaults.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace cove::api {

using Json = nlohmann::json;

// Parses a request body that must be a JSON object (an empty body is {}).
// Returns an empty string on success, else what is wrong.
std::string ParseJsonObject(const std::string& body, Json* out);

class Fields {
 public:
  explicit Fields(const Json& object) : o_(object) {}

  std::string Str(const char* key, bool required = false, std::string fallback = "");
  std::optional<std::string> OptStr(const char* key);
  bool Bool(const char* key, bool fallback = false);
  std::optional<int64_t> Int(const char* key, int64_t min, int64_t max);
  std::map<std::string, std::string> StrMap(const char* key);
  // Environment variables: names [A-Za-z_][A-Za-z0-9_]* of at most 255
  // characters, values without NUL.
  std::map<std::string, std::string> EnvMap(const char* key);

  bool ok() const { return problem_.empty(); }
  const std::string& problem() const { return problem_; }
  void Fail(std::string problem) {
    if (problem_.empty()) problem_ = std::move(problem);
  }

 private:
  const Json* Find(const char* key, bool required);
  const Json& o_;
  std::string problem_;
};

}  // namespace cove::api
