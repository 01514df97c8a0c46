#include "http/forwarding.h"

#include "base/ascii.h"

namespace cove::http {

void PrepareRequest(HttpHead& request, bool upgrade, bool client_keep) {
  StripHopByHop(request, upgrade);
  if (upgrade) return;
  if (!client_keep) request.Add("Connection", "close");
  else if (request.version_minor == 0) request.Add("Connection", "keep-alive");
}

bool WantsUpgrade(const HttpHead& request) {
  return request.HasToken("connection", "upgrade") && !request.Get("upgrade").empty();
}

Result<ResponsePlan> PrepareResponse(HttpHead& response, std::string_view request_method, int client_minor,
                                     bool client_keep) {
  ResponsePlan plan;
  COVE_ASSIGN_OR_RETURN(plan.framing, ResponseFraming(response, request_method));
  bool until_close = plan.framing.kind == BodyKind::kUntilClose;
  plan.keep_upstream = KeepAlive(response) && !until_close;
  plan.rechunk = until_close && client_keep && client_minor >= 1;
  plan.keep_client = client_keep && (!until_close || plan.rechunk);
  StripHopByHop(response, false);
  // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, which a
  // relay must not pass on beside it.
  if (response.Has("transfer-encoding")) response.Remove("content-length");
  if (plan.rechunk) {
    std::string te = response.Get("transfer-encoding");
    if (te.empty()) {
      response.Add("Transfer-Encoding", "chunked");
    } else {
      // A coding other than chunked last (the body runs until close): one field, chunked last.
      std::string all;
      for (const auto& [k, v] : response.headers)
        if (AsciiIEquals(k, "transfer-encoding")) all += (all.empty() ? "" : ", ") + v;
      response.Remove("transfer-encoding");
      response.Add("Transfer-Encoding", all + ", chunked");
    }
  }
  response.version_minor = 1;  // this hop is HTTP/1.1 whatever the server speaks
  if (!plan.keep_client) response.Add("Connection", "close");
  else if (client_minor == 0) response.Add("Connection", "keep-alive");
  return plan;
}

bool PrepareSwitch(HttpHead& response) {
  if (response.Get("upgrade").empty()) return false;
  StripHopByHop(response, true);
  return true;
}

}  // namespace cove::http
