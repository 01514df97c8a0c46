// The HTTP/1 parsers (src/http/) and the preview host names (src/preview/): request and response heads,
// message framing, chunked bodies and preview host names, all fed by clients
// on the network or by servers inside sandboxes.
//
// Properties: FindHeadEnd never points past its input; a parsed head,
// serialized, parses back to the same head; accepted request framing has one
// delimiter at most, given once (no Transfer-Encoding in HTTP/1.0); the chunked scanner consumes the
// same bytes whether fed at once or byte by byte, and never more than given;
// a parsed preview host has a valid token and a port in 1-65535.
#include <string>

#include "fuzz.h"
#include "http/chunked_scanner.h"
#include "preview/host_route.h"
#include "http/http_head.h"

using namespace cove::preview;
using namespace cove::http;

namespace {

bool SameHead(const HttpHead& a, const HttpHead& b) {
  return a.method == b.method && a.target == b.target && a.status == b.status && a.reason == b.reason &&
         a.version_minor == b.version_minor && a.headers == b.headers;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  size_t end = FindHeadEnd(text);
  FUZZ_CHECK(end <= text.size());
  std::string_view head = end ? text.substr(0, end) : text;

  if (auto req = ParseRequestHead(head); req.ok()) {
    auto again = ParseRequestHead(req->SerializeRequest());
    FUZZ_CHECK(again.ok() && SameHead(*req, *again));
    if (auto framing = RequestFraming(*req); framing.ok()) {
      // Accepted framing is unambiguous: one delimiter at most, given once.
      size_t te = req->Count("transfer-encoding"), cl = req->Count("content-length");
      FUZZ_CHECK(te + cl <= 1);
      FUZZ_CHECK((framing->kind == BodyKind::kChunked) == (te == 1));
      FUZZ_CHECK(te == 0 || req->version_minor >= 1);
    }
    (void)KeepAlive(*req);
    HttpHead stripped = *req;
    StripHopByHop(stripped, false);
    FUZZ_CHECK(!stripped.Has("connection") && !stripped.Has("upgrade") && !stripped.Has("keep-alive"));
    auto route = ParseHost(req->Get("host"), "localhost");
    if (route) FUZZ_CHECK(route->port > 0 && ValidToken(route->token) && !route->sandbox_id.empty());
  }
  if (auto resp = ParseResponseHead(head); resp.ok()) {
    auto again = ParseResponseHead(resp->SerializeResponse());
    FUZZ_CHECK(again.ok() && SameHead(*resp, *again));
    (void)ResponseFraming(*resp, "GET");
  }

  ChunkedScanner whole, bytewise;
  auto used = whole.Feed(text);
  size_t used_bytewise = 0;
  bool ok_bytewise = true;
  for (size_t i = 0; i < text.size() && !bytewise.done(); ++i) {
    auto n = bytewise.Feed(text.substr(i, 1));
    if (!n.ok()) {
      ok_bytewise = false;
      break;
    }
    used_bytewise += *n;
  }
  FUZZ_CHECK(used.ok() == ok_bytewise);
  if (used.ok()) {
    FUZZ_CHECK(*used <= text.size());
    FUZZ_CHECK(*used == used_bytewise && whole.done() == bytewise.done());
  }
  auto route = ParseHost(text, "localhost");
  if (route) FUZZ_CHECK(route->port > 0 && ValidToken(route->token) && !route->sandbox_id.empty());
  return 0;
}
