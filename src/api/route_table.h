// The compatible API's routes as one table: each route is one entry {method,
// path pattern, build the agent op from the validated request, answer}, and a
// request is matched once. The route files (compat_routes.cc, process_routes.cc,
// interpreter_routes.cc, git_routes.cc, port_routes.cc, file_watch_routes.cc) each
// contribute their entries.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/ops.h"
#include "api/agent_reply.h"
#include "api/errors.h"
#include "api/fields.h"
#include "api/http.h"
#include "manager/manager.h"

namespace cove::api {

using AgentPtr = std::shared_ptr<AgentConnection>;

// One request as its route sees it.
struct RouteInput {
  RouteInput(HttpRequest& r, const std::string& s) : req(r), sandbox(s) {}
  RouteInput(const RouteInput&) = delete;
  RouteInput& operator=(const RouteInput&) = delete;

  HttpRequest& req;
  const std::string& sandbox;        // the sandbox's id
  std::vector<std::string> params;   // the path's {...} segments, in order
  Json body = Json::object();        // a POST's body, a JSON object
  Fields f{body};                    // validated reads of body; a problem is 400 VALIDATION_FAILED
  std::optional<HttpResponse> refusal;  // set by a builder: the answer, and nothing reaches the agent

  void Refuse(HttpResponse r) {
    if (!refusal) refusal = std::move(r);
  }
};

struct Route {
  std::string_view method;
  std::string_view path;  // "/api/process/{id}/logs": a {...} segment matches one non-empty segment
  std::function<Task<HttpResponse>(RouteInput&, Manager&)> serve;
};

// Builds what a route sends from the request; calls in.f.Fail or in.Refuse to refuse it.
template <class Op>
using Build = Op (*)(RouteInput& in);
// Answers with the agent, once the op was built and the sandbox's agent found.
template <class Op>
using Answer = Task<HttpResponse> (*)(RouteInput& in, AgentPtr agent, Op op);
// Shapes the success answer of a one-reply op (success and timestamp are added).
template <class Op>
using Shape = Json (*)(const Op& op, const Json& reply);

// Builds the op, refuses what the builder or Fields refused, finds the
// sandbox's agent and answers (answer: a callable like Answer<Op>).
template <class Op, class Answerer>
Task<HttpResponse> ServeAgentRoute(RouteInput& in, Manager& manager, Build<Op> build, Answerer answer) {
  Op op = build(in);
  if (in.refusal) co_return std::move(*in.refusal);
  if (!in.f.ok()) co_return ErrorResponse("VALIDATION_FAILED", in.f.problem());
  auto agent = co_await manager.Agent(in.sandbox, true, in.req.arrival);
  if (!agent.ok()) co_return ErrorResponse(agent.error());
  co_return co_await answer(in, std::move(*agent), std::move(op));
}

// Sends `op`, waits for its reply (Call) and shapes it.
template <class Op>
Task<HttpResponse> CallAndShape(AgentPtr agent, Op op, Shape<Op> shape) {
  const Json request = agent::ToJson(op);  // named: a temporary would not survive the co_await (GCC 12)
  auto reply = co_await Call(agent, request);
  if (!reply.ok()) co_return ErrorResponse(reply.error());
  if (auto e = AgentError(*reply)) co_return AgentErrorResponse(*e);
  co_return JsonResponse(Success(shape(op, *reply)));
}

// A route that builds an op and answers with the agent.
template <class Op>
Route AgentRoute(std::string_view method, std::string_view path, Build<Op> build, Answer<Op> answer) {
  return {method, path, [build, answer](RouteInput& in, Manager& m) { return ServeAgentRoute(in, m, build, answer); }};
}
// A route whose op has one reply, shaped into the success answer.
template <class Op>
Route AgentRoute(std::string_view method, std::string_view path, Build<Op> build, Shape<Op> shape) {
  auto answer = [shape](RouteInput&, AgentPtr agent, Op op) { return CallAndShape(std::move(agent), std::move(op), shape); };
  return {method, path, [build, answer](RouteInput& in, Manager& m) { return ServeAgentRoute(in, m, build, answer); }};
}

// Matches `path` (the part after /v1/sandboxes/{id}) against `routes`: the
// first route whose pattern matches decides the path; among the routes of that
// pattern, the method picks one.
struct RouteMatch {
  const Route* route = nullptr;     // null: no route of the path has the method
  bool path_known = false;          // some pattern matched
  std::string allowed;              // the methods of the matched pattern: "GET or DELETE"
  std::vector<std::string> params;  // its {...} segments
};
RouteMatch MatchRoute(std::span<const Route> routes, std::string_view method, std::string_view path);

// Serves a request by MatchRoute: an unknown path is 404, a known one with
// another method 405; POST bodies must be JSON objects (400).
Task<HttpResponse> ServeRoute(std::span<const Route> routes, Manager& manager, HttpRequest& req,
                              const std::string& sandbox, std::string_view path);

// The entries of each route file, in matching order.
std::vector<Route> SessionAndFileRoutes();  // compat_routes.cc
std::vector<Route> ProcessRoutes();         // process_routes.cc
std::vector<Route> InterpreterRoutes();     // interpreter_routes.cc
std::vector<Route> GitRoutes();             // git_routes.cc
std::vector<Route> PortRoutes();            // port_routes.cc
std::vector<Route> WatchRoutes();           // file_watch_routes.cc

// Shared by /api/process/start and /api/execute with background:true (process_routes.cc).
agent::ProcessStartOp BuildProcessStart(RouteInput& in);
Task<HttpResponse> AnswerProcessStart(RouteInput& in, AgentPtr agent, agent::ProcessStartOp op);

// The session a request names (sessionId), or the sandbox's "default" session,
// as in Cloudflare's server.
std::string SessionOf(Fields& f);

}  // namespace cove::api
