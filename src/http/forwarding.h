// What every HTTP/1 relay of cove (the preview listener, the egress proxy)
// changes in the heads it passes on, so that both keep the same rules: the
// hop-by-hop fields go (StripHopByHop), the upstream connection lives only as
// long as the client's, a response is delimited so that the client's
// connection stays usable where it can, and an upgrade is carried on.
#pragma once

#include <string_view>

#include "base/error.h"
#include "http/http_head.h"

namespace cove::http {

// Rewrites a request for the upstream: hop-by-hop fields removed (with
// `upgrade`, "Connection: Upgrade" and Upgrade stay), and the client's wish
// for keep-alive passed on ("Connection: close", or "keep-alive" for
// HTTP/1.0), so that a client that closes has the upstream close too (the
// server, not coved, then holds the TIME_WAIT).
void PrepareRequest(HttpHead& request, bool upgrade, bool client_keep);

// Whether a request asks to switch protocols ("Connection: upgrade" and an
// Upgrade field).
bool WantsUpgrade(const HttpHead& request);

struct ResponsePlan {
  Framing framing;             // how the upstream delimits the body
  bool rechunk = false;        // a body read until close goes on as chunks (RelayBodyAsChunked)
  bool keep_client = false;    // the client connection may carry another request
  bool keep_upstream = false;  // the upstream connection may carry another request
};

// Rewrites a final response (status >= 200, not 101) for a client whose
// request had `request_method`, HTTP/1.<client_minor>, and keep-alive
// `client_keep`: hop-by-hop fields removed, HTTP/1.1, Content-Length dropped
// beside a Transfer-Encoding, a body read until the server closes re-framed
// as chunked for an HTTP/1.1 client that keeps its connection (else that
// connection ends with the body), and Connection set to what the client
// connection does next. kInvalidArgument when the response's framing is
// invalid (ResponseFraming).
Result<ResponsePlan> PrepareResponse(HttpHead& response, std::string_view request_method, int client_minor,
                                     bool client_keep);

// Rewrites a 101 Switching Protocols for the client: hop-by-hop fields
// removed, "Connection: Upgrade" and Upgrade kept. False when the response
// names no protocol to switch to.
bool PrepareSwitch(HttpHead& response);

}  // namespace cove::http
