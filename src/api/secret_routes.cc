// Secret routes of the native API (values go in, never come out):
//   GET    /v1/secrets          names, placeholder tokens and bound hosts
//   GET    /v1/secrets/{name}   the same for one secret
//   PUT    /v1/secrets/{name}   create or replace: {"value", "placeholder"?, "hosts"?}
//   DELETE /v1/secrets/{name}   remove (404 when unknown)
#include "api/errors.h"
#include "api/routes.h"

namespace cove::api {
namespace {

using Json = nlohmann::json;

Json SecretJson(const proxy::Secret& s) {
  Json j = {{"name", s.name}};
  if (!s.placeholder.empty()) {
    Json hosts = Json::array();
    for (const auto& h : s.hosts) hosts.push_back(h.text);
    j["placeholder"] = s.placeholder;
    j["hosts"] = std::move(hosts);
  }
  return j;
}

}  // namespace

Task<HttpResponse> SecretRoutes::Handle(HttpRequest& req, const std::string& name) {
  if (name.empty()) {
    if (req.method != "GET") co_return ErrorResponse("METHOD_NOT_ALLOWED", req.method + " is not allowed on " + req.path);
    Json list = Json::array();
    for (const auto& s : store_->Snapshot()->secrets) list.push_back(SecretJson(s));
    Json body = {{"secrets", std::move(list)}};
    co_return JsonResponse(body);
  }
  if (req.method != "GET" && req.method != "PUT" && req.method != "DELETE")
    co_return ErrorResponse("METHOD_NOT_ALLOWED", req.method + " is not allowed on " + req.path);
  if (!proxy::SecretStore::ValidName(name)) {
    Json context = {{"name", name.substr(0, 80)}};
    co_return ErrorResponse("VALIDATION_FAILED", "secret names are 1-64 characters of [A-Z0-9_]", context);
  }
  if (req.method == "GET") {
    auto set = store_->Snapshot();
    const proxy::Secret* s = set->Find(name);
    if (!s) {
      Json context = {{"name", name}};
      co_return ErrorResponse("SECRET_NOT_FOUND", "secret " + name + " not found", context);
    }
    co_return JsonResponse(SecretJson(*s));
  }
  if (req.method == "DELETE") {
    auto removed = store_->Remove(name);
    if (!removed.ok() && removed.error().code == ErrorCode::kNotFound) {
      Json context = {{"name", name}};
      co_return ErrorResponse("SECRET_NOT_FOUND", "secret " + name + " not found", context);
    }
    if (!removed.ok()) co_return ErrorResponse(removed.error());
    Json body = {{"name", name}, {"deleted", true}};
    co_return JsonResponse(body);
  }
  Json body;
  if (auto p = ParseJsonObject(req, &body); !p.empty()) co_return ErrorResponse("VALIDATION_FAILED", p);
  for (const auto& [key, unused] : body.items()) {
    if (key != "value" && key != "placeholder" && key != "hosts")
      co_return ErrorResponse("VALIDATION_FAILED", "unknown field " + key);
  }
  if (!body.contains("value") || !body["value"].is_string() || body["value"].get<std::string>().empty() ||
      body["value"].get<std::string>().size() > 64 * 1024)
    co_return ErrorResponse("VALIDATION_FAILED", "value: a non-empty string of at most 64 KiB is required");
  bool placeholder = false;
  if (body.contains("placeholder")) {
    if (!body["placeholder"].is_boolean()) co_return ErrorResponse("VALIDATION_FAILED", "placeholder: a boolean");
    placeholder = body["placeholder"].get<bool>();
  }
  std::vector<proxy::HostPattern> hosts;
  if (body.contains("hosts")) {
    if (!body["hosts"].is_array() || body["hosts"].size() > 64)
      co_return ErrorResponse("VALIDATION_FAILED", "hosts: an array of at most 64 host patterns");
    for (const auto& h : body["hosts"]) {
      if (!h.is_string()) co_return ErrorResponse("VALIDATION_FAILED", "hosts: host patterns are strings");
      auto pattern = proxy::HostPattern::Parse(h.get<std::string>());
      if (!pattern.ok()) co_return ErrorResponse("VALIDATION_FAILED", "hosts: " + pattern.error().message);
      hosts.push_back(std::move(*pattern));
    }
  }
  if (placeholder && hosts.empty())
    co_return ErrorResponse("VALIDATION_FAILED", "hosts: a placeholder secret needs the hosts it may go to");
  if (!placeholder && !hosts.empty())
    co_return ErrorResponse("VALIDATION_FAILED", "hosts: only placeholder secrets are bound to hosts");
  auto stored = store_->Put(name, body["value"].get<std::string>(), placeholder, std::move(hosts));
  if (!stored.ok()) co_return ErrorResponse(stored.error());
  co_return JsonResponse(SecretJson(*stored));
}

}  // namespace cove::api
