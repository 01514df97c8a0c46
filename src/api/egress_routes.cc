// Egress routes of the native API:
//   GET  /v1/sandboxes/{id}/egress          the policy in force ({"policy", "custom", "network"})
//   PUT  /v1/sandboxes/{id}/egress          replace it (new connections follow at once); body: a policy
//   DELETE /v1/sandboxes/{id}/egress        back to coved's default policy
//   GET  /v1/sandboxes/{id}/egress/denials  the newest denials, for the operator
#include "api/errors.h"
#include "api/routes.h"
#include "base/time.h"

namespace cove::api {
namespace {

Json DenialsJson(const std::vector<proxy::DenialLog::Entry>& entries, uint64_t total) {
  Json list = Json::array();
  for (const auto& e : entries)
    list.push_back({{"time", IsoTimestamp(e.unix_ms)},
                    {"destination", e.denial.destination},
                    {"address", e.denial.address},
                    {"reason", e.denial.reason}});
  return {{"denials", std::move(list)}, {"total", total}};
}

}  // namespace

Result<std::shared_ptr<const proxy::EgressPolicy>> EgressRoutes::Parse(const Json& policy) {
  auto parsed = proxy::EgressPolicy::FromJson(policy);
  if (!parsed.ok()) return std::move(parsed).error();
  return std::make_shared<const proxy::EgressPolicy>(std::move(*parsed));
}

Json EgressRoutes::PolicyJson(const SandboxRecord& r) {
  return {{"policy", directory_->PolicyOf(r)->ToJson()},
          {"custom", r.egress != nullptr},
          {"network", network_enabled_ ? "sealed" : "none"}};
}

Task<HttpResponse> EgressRoutes::Handle(HttpRequest& req, const std::string& id, const std::string& rest) {
  auto record = manager_->Get(id);
  if (!record) co_return ErrorResponse("SANDBOX_NOT_FOUND", "sandbox " + id + " not found", {{"id", id}});
  if (rest == "/egress/denials") {
    if (req.method != "GET") co_return ErrorResponse("METHOD_NOT_ALLOWED", req.method + " is not allowed on " + req.path);
    uint64_t total = 0;
    auto entries = denials_->Recent(id, &total);
    co_return JsonResponse(DenialsJson(entries, total));
  }
  if (req.method == "GET") co_return JsonResponse(PolicyJson(*record));
  if (req.method == "PUT" || req.method == "DELETE") {
    std::shared_ptr<const proxy::EgressPolicy> stored;  // null: the default policy
    if (req.method == "PUT") {
      Json body;
      if (auto p = ParseJsonObject(req, &body); !p.empty()) co_return ErrorResponse("VALIDATION_FAILED", p);
      auto parsed = Parse(body);
      if (!parsed.ok()) co_return ErrorResponse("VALIDATION_FAILED", parsed.error().message);
      stored = std::move(*parsed);
    }
    if (auto s = manager_->SetEgress(id, stored); !s.ok()) co_return ErrorResponse(s.error());
    record->egress = std::move(stored);
    co_return JsonResponse(PolicyJson(*record));
  }
  co_return ErrorResponse("METHOD_NOT_ALLOWED", req.method + " is not allowed on " + req.path);
}

}  // namespace cove::api
