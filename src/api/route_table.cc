#include "api/route_table.h"

namespace cove::api {
namespace {

// The segments of `path` matching the pattern's {...} segments, or nullopt.
std::optional<std::vector<std::string>> MatchPattern(std::string_view pattern, std::string_view path) {
  std::vector<std::string> params;
  for (;;) {
    size_t p = pattern.find('/', 1), s = path.find('/', 1);
    std::string_view want = pattern.substr(0, p), got = path.substr(0, s);
    if (want.size() > 3 && want.starts_with("/{") && want.ends_with('}')) {
      if (got.size() < 2 || got[0] != '/') return std::nullopt;
      params.emplace_back(got.substr(1));
    } else if (want != got) {
      return std::nullopt;
    }
    if ((p == std::string_view::npos) != (s == std::string_view::npos)) return std::nullopt;
    if (p == std::string_view::npos) return params;
    pattern.remove_prefix(p);
    path.remove_prefix(s);
  }
}

}  // namespace

RouteMatch MatchRoute(std::span<const Route> routes, std::string_view method, std::string_view path) {
  RouteMatch m;
  const Route* found = nullptr;
  for (const Route& r : routes) {
    auto params = MatchPattern(r.path, path);
    if (!params) continue;
    found = &r;
    m.params = std::move(*params);
    break;
  }
  if (!found) return m;
  m.path_known = true;
  for (const Route& r : routes) {
    if (r.path != found->path) continue;
    if (r.method == method) m.route = &r;
    m.allowed += (m.allowed.empty() ? "" : " or ") + std::string(r.method);
  }
  return m;
}

Task<HttpResponse> ServeRoute(std::span<const Route> routes, Manager& manager, HttpRequest& req,
                              const std::string& sandbox, std::string_view path) {
  RouteMatch m = MatchRoute(routes, req.method, path);
  if (!m.path_known) co_return ErrorResponse("NOT_FOUND", "no route for " + req.method + " " + req.path);
  if (!m.route)
    co_return ErrorResponse("METHOD_NOT_ALLOWED", req.method + " is not allowed on " + req.path + "; use " + m.allowed);
  RouteInput in(req, sandbox);
  in.params = std::move(m.params);
  if (req.method == "POST") {
    if (auto p = ParseJsonObject(req, &in.body); !p.empty()) co_return ErrorResponse("VALIDATION_FAILED", p);
  }
  co_return co_await m.route->serve(in, manager);
}

std::string SessionOf(Fields& f) {
  auto s = f.Id("sessionId");
  return s && !s->empty() ? *s : "default";
}

}  // namespace cove::api
