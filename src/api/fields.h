// Fields: typed, bounded reads of a JSON request body. The first problem
// (missing required field, wrong type, out of range) is kept as a message for
// a 400 VALIDATION_FAILED; later reads return defaults.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "api/http.h"

namespace cove::api {

using Json = nlohmann::json;

// Ids a client names (sessionId, a new session's id, processId, contextId, a
// terminal's sessionId): at most this many bytes.
inline constexpr size_t kMaxIdBytes = 256;

// "" when `id` is an acceptable id, else a message naming `field` and the
// rule: 1-kMaxIdBytes bytes of valid UTF-8 without control characters (C0,
// DEL, C1) and without invisible or reordering format characters (bidi
// embeddings, overrides, isolates and marks, zero-width characters, line and
// paragraph separators, BOM, tags): an id ends up in logs, JSON, shells and
// terminals, and must read the same everywhere.
std::string IdProblem(std::string_view field, std::string_view id);
// A process id is also a URL path segment: an id of at most 128 bytes without
// '/' or spaces.
std::string ProcessIdProblem(std::string_view field, std::string_view id);

// Parses a request body that must be a JSON object (an empty body is {}).
// Returns an empty string on success, else what is wrong.
std::string ParseJsonObject(const std::string& body, Json* out);
// The same for a request: its json_body when it came parsed (taken), else its body.
std::string ParseJsonObject(HttpRequest& req, Json* out);

class Fields {
 public:
  explicit Fields(const Json& object) : o_(object) {}

  std::string Str(const char* key, bool required = false, std::string fallback = "");
  std::optional<std::string> OptStr(const char* key);
  bool Bool(const char* key, bool fallback = false);
  std::optional<int64_t> Int(const char* key, int64_t min, int64_t max);
  std::map<std::string, std::string> StrMap(const char* key);
  // An id (IdProblem). Absent or null: nullopt. An empty string is returned
  // as is unless required (callers treat it as absent, as Cloudflare does).
  std::optional<std::string> Id(const char* key, bool required = false);
  // A command to run: required, non-empty, without NUL, at most
  // agent::kMaxCommandBytes.
  std::string Command(const char* key);
  // Environment variables: names [A-Za-z_][A-Za-z0-9_]* of at most 255
  // characters, values without NUL.
  std::map<std::string, std::string> EnvMap(const char* key);

  // Fails on a key of the object not in `known` (a misspelt field would
  // otherwise be ignored silently), naming the known ones.
  void OnlyKnown(std::initializer_list<std::string_view> known);

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
