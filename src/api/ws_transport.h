// The WebSocket control transport of the Cloudflare container API (reference
// §2.6, `/ws` and `/api/ws`): request frames are served like HTTP requests
// under the sandbox's prefix; streams come back as one frame per SSE event.
//
//   client: {"type":"request","id","method","path","body"?,"headers"?} | {"type":"cancel","id"}
//   server: {"type":"response","id","status","body"?,"done":true}
//           {"type":"stream","id","data":"<one SSE data payload>"} ... then a response frame
//           {"type":"error","id"?,"code","message","status"}
// Ids (a string or a number; 1 and "1" differ) are unique among the requests
// in flight: a request under an id still in flight gets an error frame. A
// cancel, or the socket closing, is the request's client going away, whether
// its stream has started yet or not.
#pragma once

#include <functional>
#include <string>

#include "api/http.h"

namespace cove::api {

// Requests one socket may have in flight (streams included); a request frame
// beyond them is answered 429 TOO_MANY_REQUESTS at once, and the socket keeps
// serving (cancel frames included), as HTTP/2 refuses streams beyond
// SETTINGS_MAX_CONCURRENT_STREAMS.
inline constexpr int kMaxRequestsInFlight = 128;

// Serves frames until the socket closes. Every sub-request gets `prefix`
// ("/v1/sandboxes/ID") before its path and the upgrade's authorization.
Task<void> ServeControlSocket(WebSocket& ws, std::function<Task<HttpResponse>(HttpRequest&)> handle,
                              std::string prefix, std::string authorization);

}  // namespace cove::api
