// Exposed ports of the native API (preview URLs, docs/api.md):
//   POST   /v1/sandboxes/{id}/ports          {port, name?, token?} -> 201 {port, name, url, token, createdAt}
//   GET    /v1/sandboxes/{id}/ports          {"ports": [...]}
//   DELETE /v1/sandboxes/{id}/ports/{port}   {"port", "deleted": true}; its relayed connections close
// Ports 1024-65535; a token is 1-16 of [a-z0-9_] (random, 16 of [a-z0-9], when
// not given). Exposing an exposed port again is 409 PORT_ALREADY_EXPOSED.
#include <fmt/format.h>

#include "api/errors.h"
#include "api/routes.h"
#include "base/time.h"
#include "preview/host_route.h"

namespace cove::api {
namespace {

constexpr size_t kMaxExposures = 64;
constexpr size_t kMaxName = 64;

bool ValidName(const std::string& name) {
  if (name.size() > kMaxName) return false;
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

std::optional<uint16_t> PortOf(const std::string& text) {
  if (text.empty() || text.size() > 5 || text.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  unsigned long v = std::stoul(text);
  if (v < 1024 || v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

}  // namespace

Json ExposureRoutes::ExposureJson(const std::string& id, const PortExposure& e) const {
  return {{"port", e.port},
          {"name", e.name},
          {"url", preview::PreviewUrl(options_.tls, options_.domain, options_.listen_port, e.port, id, e.token)},
          {"token", e.token},
          {"createdAt", IsoTimestamp(e.created_ms)}};
}

Task<HttpResponse> ExposureRoutes::Handle(HttpRequest& req, const std::string& id, const std::string& rest) {
  auto record = manager_->Get(id);
  if (!record) {
    Json ctx = {{"id", id}};
    co_return ErrorResponse("SANDBOX_NOT_FOUND", "sandbox " + id + " not found", ctx);
  }
  if (rest == "/ports" && req.method == "GET") {
    Json list = Json::array();
    for (const auto& e : record->ports) list.push_back(ExposureJson(id, e));
    Json body = {{"ports", std::move(list)}};
    co_return JsonResponse(body);
  }
  if (rest == "/ports" && req.method == "POST") {
    Json body;
    if (auto p = ParseJsonObject(req, &body); !p.empty()) co_return ErrorResponse("VALIDATION_FAILED", p);
    if (!body.contains("port") || !body["port"].is_number_integer())
      co_return ErrorResponse("INVALID_PORT", "port must be an integer from 1024 to 65535");
    int64_t port = body["port"].get<int64_t>();
    Json port_ctx = {{"port", port}};
    if (port < 1024 || port > 65535)
      co_return ErrorResponse("INVALID_PORT", "port must be an integer from 1024 to 65535", port_ctx);
    Fields f(body);
    std::string name = f.Str("name");
    auto token = f.OptStr("token");
    if (!f.ok()) co_return ErrorResponse("VALIDATION_FAILED", f.problem());
    if (!ValidName(name)) co_return ErrorResponse("VALIDATION_FAILED", "name: at most 64 characters, no control characters");
    if (token && !preview::ValidToken(*token))
      co_return ErrorResponse("VALIDATION_FAILED", "token: 1-16 characters of [a-z0-9_]");
    for (const auto& e : record->ports)
      if (e.port == port)
        co_return ErrorResponse("PORT_ALREADY_EXPOSED", fmt::format("port {} is already exposed", port), port_ctx);
    if (record->ports.size() >= kMaxExposures)
      co_return ErrorResponse("RESOURCE_BUSY", fmt::format("at most {} ports per sandbox", kMaxExposures));
    PortExposure e;
    e.port = static_cast<uint16_t>(port);
    e.name = name;
    e.token = token ? *token : preview::RandomToken();
    e.created_ms = NowUnixMs();
    auto ports = record->ports;
    ports.push_back(e);
    if (auto s = manager_->SetPorts(id, std::move(ports)); !s.ok()) co_return ErrorResponse(s.error());
    Json out = ExposureJson(id, e);
    co_return JsonResponse(out, 201);
  }
  if (rest.starts_with("/ports/") && req.method == "DELETE") {
    auto port = PortOf(rest.substr(7));
    if (!port) co_return ErrorResponse("INVALID_PORT", "port must be an integer from 1024 to 65535");
    auto ports = record->ports;
    auto it = std::find_if(ports.begin(), ports.end(), [&](const PortExposure& e) { return e.port == *port; });
    if (it == ports.end()) {
      Json ctx = {{"port", *port}};
      co_return ErrorResponse("PORT_NOT_EXPOSED", fmt::format("port {} is not exposed", *port), ctx);
    }
    ports.erase(it);
    if (auto s = manager_->SetPorts(id, std::move(ports)); !s.ok()) co_return ErrorResponse(s.error());
    if (options_.on_unexposed) options_.on_unexposed(id, *port);
    Json out = {{"port", *port}, {"deleted", true}};
    co_return JsonResponse(out);
  }
  if (rest == "/ports" || rest.starts_with("/ports/"))
    co_return ErrorResponse("METHOD_NOT_ALLOWED", req.method + " is not allowed on " + req.path);
  co_return ErrorResponse("NOT_FOUND", "no route for " + req.method + " " + req.path);
}

}  // namespace cove::api
