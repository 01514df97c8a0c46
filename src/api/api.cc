#include <openssl/crypto.h>

#include "api/errors.h"
#include "api/routes.h"
#include "manager/sandbox_id.h"

namespace cove::api {
namespace {

bool TokenMatches(const std::string& header, const std::string& token) {
  static constexpr std::string_view kPrefix = "Bearer ";
  if (header.size() != kPrefix.size() + token.size() || header.compare(0, kPrefix.size(), kPrefix) != 0)
    return false;
  return CRYPTO_memcmp(header.data() + kPrefix.size(), token.data(), token.size()) == 0;
}

// Splits "/v1/sandboxes/ID/rest..." into ID and "/rest...".
bool SplitPrefix(const std::string& path, std::string_view prefix, std::string* id, std::string* rest) {
  if (path.compare(0, prefix.size(), prefix) != 0) return false;
  std::string_view tail = std::string_view(path).substr(prefix.size());
  if (tail.empty()) {
    id->clear();
    rest->clear();
    return true;
  }
  if (tail[0] != '/') return false;
  tail.remove_prefix(1);
  size_t slash = tail.find('/');
  *id = std::string(tail.substr(0, slash));
  *rest = slash == std::string_view::npos ? "" : std::string(tail.substr(slash));
  return true;
}

}  // namespace

bool Api::WantsSpooledBody(const HttpRequest& req) {
  return req.method == "POST" && req.path.rfind("/v1/images/", 0) == 0;
}

Task<HttpResponse> Api::Handle(HttpRequest& req) {
  if (!TokenMatches(req.Header("authorization"), token_))
    co_return ErrorResponse("UNAUTHORIZED", "missing or invalid bearer token");
  std::string id, rest;
  if (SplitPrefix(req.path, "/v1/sandboxes", &id, &rest)) {
    if (!id.empty()) {
      if (auto why = CheckSandboxId(id); !why.empty())
        co_return ErrorResponse("VALIDATION_FAILED", why, {{"id", id}});
    }
    if (rest.empty()) co_return co_await native_.Sandboxes(req, id);
    co_return co_await compat_.Handle(req, id, rest);
  }
  if (SplitPrefix(req.path, "/v1/images", &id, &rest) && rest.empty())
    co_return co_await native_.ImageRoutes(req, id);
  co_return ErrorResponse("NOT_FOUND", "no route for " + req.method + " " + req.path);
}

}  // namespace cove::api
