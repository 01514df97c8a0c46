// The HTTP routes of coved. Api::Handle authenticates and dispatches:
//   /v1/sandboxes[/{id}], /v1/images[/{name}]    native lifecycle (native_routes.cc)
//   /v1/sandboxes/{id}/...                        Cloudflare-compatible API (compat_routes.cc)
//   /v1/sandboxes/{id}/terminal, /v1/terminal/*   the terminal page and its assets (terminal_page.cc)
//   /v1/sandboxes/{id}/egress[/denials]           egress policy and denials (egress_routes.cc)
//   /v1/sandboxes/{id}/ports[/{port}]             exposed ports, preview URLs (exposure_routes.cc)
//   /v1/secrets[/{name}]                          secrets for the egress proxy (secret_routes.cc)
#pragma once

#include <memory>
#include <string>

#include "api/fields.h"
#include "api/http.h"
#include "manager/images.h"
#include "manager/manager.h"
#include "proxy/denial_log.h"
#include "proxy/sandbox_directory.h"
#include "proxy/secret_store.h"

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
  static Task<HttpResponse> Execute(const HttpRequest& req, std::shared_ptr<AgentConnection> agent, Json op);
  static HttpResponse ExecuteStream(std::shared_ptr<AgentConnection> agent, Json op);
  static Task<HttpResponse> Read(const HttpRequest& req, std::shared_ptr<AgentConnection> agent, Json op);
  static HttpResponse ReadStream(std::shared_ptr<AgentConnection> agent, Json op);
  // git_routes.cc
  Task<HttpResponse> GitCheckout(HttpRequest& req, const std::string& id);
  // port_routes.cc
  Task<HttpResponse> PortWatch(HttpRequest& req, const std::string& id);
  // file_watch_routes.cc: /api/watch (check = false) and /api/watch/check
  Task<HttpResponse> Watch(HttpRequest& req, const std::string& id, bool check);
  // interpreter_routes.cc: /api/contexts..., /api/execute/code, /api/interpreter/health
  Task<HttpResponse> Interpreter(HttpRequest& req, const std::string& id, const std::string& route);
  // process_routes.cc
  Task<HttpResponse> Processes(HttpRequest& req, const std::string& id, const std::string& route);
  static Json ProcessStartOp(Fields& f, const Json& body);
  static Task<HttpResponse> StartProcess(std::shared_ptr<AgentConnection> agent, Json op);
  static Task<HttpResponse> StreamProcess(std::shared_ptr<AgentConnection> agent, std::string pid);
  // getProcessLogs: a large answer is relayed as it arrives (never held whole).
  static Task<HttpResponse> ProcessLogs(std::shared_ptr<AgentConnection> agent, std::string pid);
  Manager* manager_;
};

// egress_routes.cc: a sandbox's egress policy and its denials.
class EgressRoutes {
 public:
  EgressRoutes(Manager* manager, proxy::SandboxDirectory* directory, proxy::DenialLog* denials, bool network_enabled)
      : manager_(manager), directory_(directory), denials_(denials), network_enabled_(network_enabled) {}
  // rest: "/egress" or "/egress/denials".
  Task<HttpResponse> Handle(HttpRequest& req, const std::string& id, const std::string& rest);
  // A policy from the API, parsed once into the value every layer shares;
  // kInvalidArgument says what is wrong.
  static Result<std::shared_ptr<const proxy::EgressPolicy>> Parse(const nlohmann::json& policy);

 private:
  using Json = nlohmann::json;
  Json PolicyJson(const SandboxRecord& r);
  Manager* manager_;
  proxy::SandboxDirectory* directory_;
  proxy::DenialLog* denials_;
  bool network_enabled_;
};

// exposure_routes.cc: a sandbox's exposed ports and their preview URLs.
class ExposureRoutes {
 public:
  struct Options {
    std::string domain = "localhost";  // of the preview URLs
    uint16_t listen_port = 7071;       // the preview listener's port
    bool tls = false;
    std::function<void(const std::string& id, uint16_t port)> on_unexposed;  // closes its connections
  };
  ExposureRoutes(Manager* manager, Options options) : manager_(manager), options_(std::move(options)) {}
  // rest: "/ports" or "/ports/{port}".
  Task<HttpResponse> Handle(HttpRequest& req, const std::string& id, const std::string& rest);

 private:
  using Json = nlohmann::json;
  Json ExposureJson(const std::string& id, const PortExposure& e) const;
  Manager* manager_;
  Options options_;
};

// secret_routes.cc: coved's secrets (names in, values never out).
class SecretRoutes {
 public:
  explicit SecretRoutes(proxy::SecretStore* store) : store_(store) {}
  // name: "" for /v1/secrets.
  Task<HttpResponse> Handle(HttpRequest& req, const std::string& name);

 private:
  proxy::SecretStore* store_;
};

class Api {
 public:
  // Optional route groups may be null (their routes are then 404 like any unknown route).
  Api(Manager* manager, Images* images, std::string token, EgressRoutes* egress, ExposureRoutes* ports = nullptr,
      SecretRoutes* secrets = nullptr)
      : manager_(manager), native_(manager, images), compat_(manager), egress_(egress), ports_(ports),
        secrets_(secrets), token_(std::move(token)) {}
  // Serves one request. One not stamped by the server (a /ws frame) arrives now;
  // its arrival is released once the handler has answered (or started streaming).
  Task<HttpResponse> Handle(HttpRequest& req);
  // Whether the server should spool this request's body to a file (image uploads).
  static bool WantsSpooledBody(const HttpRequest& req);

 private:
  Task<HttpResponse> Dispatch(HttpRequest& req);
  Manager* manager_;
  NativeRoutes native_;
  CompatRoutes compat_;
  EgressRoutes* egress_;
  ExposureRoutes* ports_;
  SecretRoutes* secrets_;
  std::string token_;
};

}  // namespace cove::api
