// Native lifecycle routes: /v1/sandboxes and /v1/images.
#include "api/errors.h"
#include "api/fields.h"
#include "api/routes.h"
#include "base/time.h"
#include "manager/instance_types.h"
#include "manager/sandbox_id.h"

namespace cove::api {
namespace {

Json SandboxJson(const SandboxRecord& r) {
  Json j = {{"id", r.id},
            {"state", SandboxStateName(r.state)},
            {"image", r.image},
            {"instanceType", r.instance_type},
            {"limits",
             {{"cpuMillis", r.limits.cpu_millis},
              {"memoryBytes", r.limits.memory_bytes},
              {"pids", r.limits.pids},
              {"diskBytes", r.limits.disk_bytes}}},
            {"labels", r.labels},
            {"user", r.user},
            {"createdAt", IsoTimestamp(r.created_ms)}};
  // Only a running sandbox has a pid 1; a failed one's pid may name another process by now.
  if (r.state == SandboxState::kRunning) j["pid"] = r.pid;
  if (!r.failure.empty()) j["failure"] = r.failure;
  return j;
}

HttpResponse MethodNotAllowed(const HttpRequest& req) {
  return ErrorResponse("METHOD_NOT_ALLOWED", req.method + " is not allowed on " + req.path);
}

// Reads the optional "limits" object; each field overrides the instance type's value.
void ReadLimits(const Json& body, Fields& f, isolation::Limits* limits, bool* present) {
  auto it = body.find("limits");
  if (it == body.end() || it->is_null()) return;
  if (!it->is_object()) {
    f.Fail("field 'limits' must be an object");
    return;
  }
  *present = true;
  Fields lf(*it);
  lf.OnlyKnown({"cpuMillis", "memoryBytes", "pids", "diskBytes"});
  if (auto v = lf.Int("cpuMillis", 10, 256000)) limits->cpu_millis = static_cast<uint32_t>(*v);
  if (auto v = lf.Int("memoryBytes", 16 << 20, int64_t{1} << 42)) limits->memory_bytes = static_cast<uint64_t>(*v);
  if (auto v = lf.Int("pids", 8, 1 << 22)) limits->pids = static_cast<uint64_t>(*v);
  if (auto v = lf.Int("diskBytes", 16 << 20, int64_t{1} << 44)) limits->disk_bytes = static_cast<uint64_t>(*v);
  if (!lf.ok()) f.Fail("limits: " + lf.problem());
}

}  // namespace

Task<HttpResponse> NativeRoutes::Sandboxes(HttpRequest& req, const std::string& id) {
  if (id.empty()) {
    if (req.method == "GET") {
      Json list = Json::array();
      for (const auto& r : manager_->List()) list.push_back(SandboxJson(r));
      co_return JsonResponse({{"sandboxes", std::move(list)}});
    }
    if (req.method != "POST") co_return MethodNotAllowed(req);
    Json body;
    if (auto p = ParseJsonObject(req, &body); !p.empty()) co_return ErrorResponse("VALIDATION_FAILED", p);
    Fields f(body);
    f.OnlyKnown({"id", "image", "instanceType", "limits", "env", "labels", "user", "egress"});
    CreateRequest cr;
    cr.id = f.Str("id");
    if (body.contains("id") && body["id"].is_string() && cr.id.empty())
      f.Fail(CheckSandboxId(""));
    cr.image = f.Str("image", false, "default");
    cr.instance_type = f.Str("instanceType");
    cr.env = f.EnvMap("env");
    cr.labels = f.StrMap("labels");
    cr.user = f.Str("user", false, "root");
    isolation::Limits limits = LimitsOf(cr.instance_type.empty() ? std::string(kDefaultInstanceType)
                                                                 : cr.instance_type)
                                   .value_or(isolation::Limits{});
    bool custom = false;
    ReadLimits(body, f, &limits, &custom);
    if (custom) cr.limits = limits;
    if (auto e = body.find("egress"); e != body.end() && !e->is_null()) {
      auto parsed = EgressRoutes::Parse(*e);
      if (parsed.ok()) cr.egress = std::move(*parsed);
      else f.Fail("egress: " + parsed.error().message);
    }
    if (!f.ok()) co_return ErrorResponse("VALIDATION_FAILED", f.problem());
    auto created = co_await manager_->Create(std::move(cr));
    if (!created.ok()) co_return ErrorResponse(created.error());
    co_return JsonResponse(SandboxJson(*created), 201);
  }
  if (req.method == "GET") {
    auto r = manager_->Get(id);
    if (!r) co_return ErrorResponse("SANDBOX_NOT_FOUND", "sandbox " + id + " not found", {{"id", id}});
    co_return JsonResponse(SandboxJson(*r));
  }
  if (req.method == "DELETE") {
    auto s = co_await manager_->Destroy(id);
    if (!s.ok()) co_return ErrorResponse(s.error());
    co_return JsonResponse({{"id", id}, {"deleted", true}});
  }
  co_return MethodNotAllowed(req);
}

Task<HttpResponse> NativeRoutes::ImageRoutes(HttpRequest& req, const std::string& name) {
  if (name.empty()) {
    if (req.method != "GET") co_return MethodNotAllowed(req);
    Json list = Json::array();
    for (const auto& img : images_->List())
      list.push_back({{"name", img.name}, {"createdAt", IsoTimestamp(img.created_ms)}});
    co_return JsonResponse({{"images", std::move(list)}});
  }
  if (req.method != "POST") co_return MethodNotAllowed(req);
  if (req.body_file.empty()) co_return ErrorResponse("VALIDATION_FAILED", "the body must be a tar archive");
  auto imported = co_await images_->Import(name, req.body_file);
  if (!imported.ok()) {
    const Error& e = imported.error();
    if (e.code == ErrorCode::kAlreadyExists)
      co_return ErrorResponse("IMAGE_ALREADY_EXISTS", e.message, {{"name", name}});
    if (e.code == ErrorCode::kInvalidArgument) co_return ErrorResponse("VALIDATION_FAILED", e.ToString());
    co_return ErrorResponse(e);
  }
  co_return JsonResponse({{"name", imported->name}, {"createdAt", IsoTimestamp(imported->created_ms)}}, 201);
}

}  // namespace cove::api
