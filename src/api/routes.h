// The HTTP routes of coved. Api::Handle authenticates and dispatches:
//   /v1/sandboxes[/{id}], /v1/images[/{name}]    native lifecycle (native_routes.cc)
//   /v1/sandboxes/{id}/...                        Cloudflare-compatible API (compat_routes.cc)
//   /v1/sandboxes/{id}/terminal, /v1/terminal/*   the terminal page and its assets (terminal_page.cc)
#pragma once

#include <memory>
#include <string>

#include "api/fields.h"
#include "api/http.h"
#include "manager/images.h"
#include "manager/manager.h"

namespace cove::api {

class NativeRoutes {
 public:
  NativeRoutes(Manager* manager, Images* images) : manager_(manager), images_(images) {}
  Task<HttpResponse> Sandboxes(HttpRequest& req, const std::string& id);  // id may be empty
  Task<HttpResponse> ImageRoutes(HttpRequest& req, const std::string& name);

 private:
  Manager* manager_;
  Images* images_;
};

class CompatRoutes {
 public:
  explicit CompatRoutes(Manager* manager) : manager_(manager) {}
  // rest: the path after /v1/sandboxes/{id} ("" or "/" or "/api/...").
  Task<HttpResponse> Handle(HttpRequest& req, const std::string& id, const std::string& rest);
  // The terminal WebSocket of a sandbox (/v1/sandboxes/{id}/ws/pty).
  Task<HttpResponse> Terminal(HttpRequest& req, const std::string& id);

 private:
  using Json = nlohmann::json;
  static Task<HttpResponse> Execute(std::shared_ptr<AgentConnection> agent, Json op);
  static HttpResponse ExecuteStream(std::shared_ptr<AgentConnection> agent, Json op);
  static Task<HttpResponse> Read(std::shared_ptr<AgentConnection> agent, Json op);
  static HttpResponse ReadStream(std::shared_ptr<AgentConnection> agent, Json op);
  // git_routes.cc
  Task<HttpResponse> GitCheckout(HttpRequest& req, const std::string& id);
  // port_routes.cc
  Task<HttpResponse> PortWatch(HttpRequest& req, const std::string& id);
  // watch_routes.cc: /api/watch (check = false) and /api/watch/check
  Task<HttpResponse> Watch(HttpRequest& req, const std::string& id, bool check);
  // process_routes.cc
  Task<HttpResponse> Processes(HttpRequest& req, const std::string& id, const std::string& route);
  static Json ProcessStartOp(Fields& f, const Json& body);
  static Task<HttpResponse> StartProcess(std::shared_ptr<AgentConnection> agent, Json op);
  static Task<HttpResponse> StreamProcess(std::shared_ptr<AgentConnection> agent, std::string pid);
  Manager* manager_;
};

class Api {
 public:
  Api(Manager* manager, Images* images, std::string token)
      : native_(manager, images), compat_(manager), token_(std::move(token)) {}
  Task<HttpResponse> Handle(HttpRequest& req);
  // Whether the server should spool this request's body to a file (image uploads).
  static bool WantsSpooledBody(const HttpRequest& req);

 private:
  NativeRoutes native_;
  CompatRoutes compat_;
  std::string token_;
};

}  // namespace cove::api
