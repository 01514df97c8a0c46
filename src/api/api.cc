#include <openssl/crypto.h>

#include "api/errors.h"
#include "api/routes.h"
#include "api/serve_on.h"
#include "api/terminal_page.h"
#include "api/ws_transport.h"
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

// GET /v1/sandboxes/{id}/terminal: a page a browser navigates to, so it cannot
// send a header either.
bool IsTerminalPage(const HttpRequest& req) {
  static constexpr std::string_view kPrefix = "/v1/sandboxes/", kSuffix = "/terminal";
  std::string_view p = req.path;
  if (req.method != "GET" || p.size() <= kPrefix.size() + kSuffix.size() || !p.starts_with(kPrefix) ||
      !p.ends_with(kSuffix))
    return false;
  return p.substr(kPrefix.size(), p.size() - kPrefix.size() - kSuffix.size()).find('/') == std::string_view::npos;
}

}  // namespace

bool Api::WantsSpooledBody(const HttpRequest& req) {
  return req.method == "POST" && req.path.rfind("/v1/images/", 0) == 0;
}

Task<HttpResponse> Api::Handle(HttpRequest& req) {
  if (!req.arrival.stamped()) req.arrival = manager_->Arrive();
  HttpResponse res = co_await Dispatch(req);
  req.arrival = {};  // past its sandbox lookup: no grave need wait for it
  co_return res;
}

Task<HttpResponse> Api::Dispatch(HttpRequest& req) {
  // The terminal page's scripts and styles hold no secret: served to anyone.
  if (req.path.starts_with(kTerminalAssetPrefix)) co_return TerminalAsset(req);
  bool upgrade = req.Header("upgrade").find("ebsocket") != std::string::npos;
  std::string authorization = req.Header("authorization");
  // Browsers cannot set headers on a WebSocket or a navigation: an upgrade and
  // the terminal page may carry ?token= instead.
  if ((upgrade || IsTerminalPage(req)) && authorization.empty() && req.query.count("token"))
    authorization = "Bearer " + req.query["token"];
  if (!TokenMatches(authorization, token_))
    co_return ErrorResponse("UNAUTHORIZED", "missing or invalid bearer token");
  std::string id, rest;
  if (SplitPrefix(req.path, "/v1/sandboxes", &id, &rest)) {
    if (!id.empty()) {
      if (auto why = CheckSandboxId(id); !why.empty())
        co_return ErrorResponse("VALIDATION_FAILED", why, {{"id", id}});
    }
    // The registry's routes run at home, with the Manager.
    if (rest.empty()) {
      Handler native = [this, &id](HttpRequest& r) { return native_.Sandboxes(r, id); };
      co_return co_await ServeOn(manager_->executor(), req, native);
    }
    if (!id.empty() && (rest == "/ws" || rest == "/api/ws")) {
      if (!upgrade) co_return ErrorResponse("VALIDATION_FAILED", "this route needs a WebSocket upgrade");
      HttpResponse res;
      std::string prefix = "/v1/sandboxes/" + id;
      res.websocket = [this, prefix, authorization](WebSocket& ws) -> Task<void> {
        std::function<Task<HttpResponse>(HttpRequest&)> handle = [this](HttpRequest& sub) { return Handle(sub); };
        co_await ServeControlSocket(ws, handle, prefix, authorization);
      };
      co_return res;
    }
    // What talks to the sandbox's agent runs on its shard.
    if (!id.empty() && rest == "/ws/pty") {
      Handler terminal = [this, &id](HttpRequest& r) { return compat_.Terminal(r, id); };
      co_return co_await ServeOn(manager_->ExecutorOf(id), req, terminal);
    }
    if (!id.empty() && rest == "/terminal") co_return TerminalPage(req);
    if (!id.empty() && (rest == "/egress" || rest == "/egress/denials")) {
      Handler egress = [this, &id, &rest](HttpRequest& r) { return egress_->Handle(r, id, rest); };
      co_return co_await ServeOn(manager_->executor(), req, egress);
    }
    if (!id.empty() && ports_ && (rest == "/ports" || rest.starts_with("/ports/"))) {
      Handler ports = [this, &id, &rest](HttpRequest& r) { return ports_->Handle(r, id, rest); };
      co_return co_await ServeOn(manager_->executor(), req, ports);
    }
    Handler compat = [this, &id, &rest](HttpRequest& r) { return compat_.Handle(r, id, rest); };
    co_return co_await ServeOn(manager_->ExecutorOf(id), req, compat);
  }
  if (secrets_ && SplitPrefix(req.path, "/v1/secrets", &id, &rest) && rest.empty()) {
    Handler secrets = [this, &id](HttpRequest& r) { return secrets_->Handle(r, id); };
    co_return co_await ServeOn(manager_->executor(), req, secrets);
  }
  if (SplitPrefix(req.path, "/v1/images", &id, &rest) && rest.empty()) {
    Handler images = [this, &id](HttpRequest& r) { return native_.ImageRoutes(r, id); };
    co_return co_await ServeOn(manager_->executor(), req, images);
  }
  co_return ErrorResponse("NOT_FOUND", "no route for " + req.method + " " + req.path);
}

}  // namespace cove::api
