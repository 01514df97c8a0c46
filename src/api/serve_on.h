// ServeOn: a request whose connection runs on one executor, served by a
// handler on another (its sandbox's shard, io/shards.h).
//
// The handler, and the stream or WebSocket function of its response, run on
// `ex`; what they do with the client (stream writes, WebSocket reads and
// writes, an abort) hops back to the connection's executor, and the client
// going away reaches the handler's ClientLink on `ex`. So each side's state
// stays on its own thread, as the rules of the house ask. On the connection's
// own executor the handler is simply called.
#pragma once

#include "api/http.h"

namespace cove::api {

Task<HttpResponse> ServeOn(asio::any_io_executor ex, HttpRequest& req, const Handler& handler);

}  // namespace cove::api
