// The terminal page and its assets (see terminal_page.h): content types and the
// headers that keep the page strict (CSP, nosniff, no referrer, no framing).
#include "api/terminal_page.h"

#include <algorithm>

#include "api/embedded_files.h"
#include "api/errors.h"

namespace cove::api {
namespace {

// What may be served under /v1/terminal/, and as what.
struct Asset {
  std::string_view name;
  std::string_view content_type;
};
constexpr Asset kAssets[] = {
    {"xterm.js", "text/javascript; charset=utf-8"},
    {"addon-fit.js", "text/javascript; charset=utf-8"},
    {"terminal.js", "text/javascript; charset=utf-8"},
    {"xterm.css", "text/css; charset=utf-8"},
    {"terminal.css", "text/css; charset=utf-8"},
};

const EmbeddedFile* Find(std::string_view name) {
  for (const EmbeddedFile& f : EmbeddedFiles())
    if (f.name == name) return &f;
  return nullptr;
}

// A Host header fit to be named in the CSP: host[:port], a DNS name, IPv4 or [IPv6].
bool PlainHost(const std::string& host) {
  return !host.empty() && host.size() <= 255 && std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == ':' || c == '[' || c == ']';
  });
}

// Scripts and styles only from coved itself; xterm.js sets inline styles on
// its elements (and writes a <style> for its theme), hence 'unsafe-inline' for
// styles only. The WebSocket goes to the same host ('self' covers ws/wss in
// CSP 3; named too for older browsers).
std::string PageCsp(const HttpRequest& req) {
  std::string connect = "'self'";
  if (std::string host = req.Header("host"); PlainHost(host)) connect += " ws://" + host + " wss://" + host;
  return "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src " + connect +
         "; img-src 'self' data:; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
}

HttpResponse Bytes(std::string_view content_type, std::string_view bytes) {
  HttpResponse res;
  res.content_type = std::string(content_type);
  res.body = std::string(bytes);
  res.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return res;
}

HttpResponse MethodNotAllowed(const HttpRequest& req) {
  HttpResponse res = ErrorResponse("METHOD_NOT_ALLOWED", req.method + " is not allowed on " + req.path);
  res.headers.emplace_back("Allow", "GET");
  return res;
}

}  // namespace

HttpResponse TerminalPage(const HttpRequest& req) {
  if (req.method != "GET") return MethodNotAllowed(req);
  const EmbeddedFile* page = Find("terminal.html");
  if (!page) return ErrorResponse("INTERNAL_ERROR", "the terminal page is not built in");
  HttpResponse res = Bytes("text/html; charset=utf-8", page->bytes);
  res.headers.emplace_back("Content-Security-Policy", PageCsp(req));
  res.headers.emplace_back("Cache-Control", "no-store");  // its address carried a token
  res.headers.emplace_back("Referrer-Policy", "no-referrer");
  res.headers.emplace_back("X-Frame-Options", "DENY");
  return res;
}

HttpResponse TerminalAsset(const HttpRequest& req) {
  std::string_view name = std::string_view(req.path).substr(kTerminalAssetPrefix.size());
  auto asset = std::find_if(std::begin(kAssets), std::end(kAssets), [&](const Asset& a) { return a.name == name; });
  const EmbeddedFile* file = asset == std::end(kAssets) ? nullptr : Find(name);
  if (!file) return ErrorResponse("NOT_FOUND", "no route for " + req.method + " " + req.path);
  if (req.method != "GET") return MethodNotAllowed(req);
  HttpResponse res = Bytes(asset->content_type, file->bytes);
  res.headers.emplace_back("Cache-Control", "public, max-age=3600");
  res.headers.emplace_back("Content-Security-Policy", "default-src 'none'");
  return res;
}

}  // namespace cove::api
