// The terminal page of a sandbox and its static assets, all compiled into coved
// (web/terminal/, embedded by src/api/embed_files.cmake):
//   GET /v1/sandboxes/{id}/terminal[?session=S]   the page; authenticated by the caller
//                                                  (Authorization header or ?token=)
//   GET /v1/terminal/{name}                        xterm.js, xterm.css, addon-fit.js,
//                                                  terminal.js, terminal.css; public
// The page is static: its script reads the id from the address, so nothing
// from the request is written into the HTML.
#pragma once

#include <string_view>

#include "api/http.h"

namespace cove::api {

inline constexpr std::string_view kTerminalAssetPrefix = "/v1/terminal/";

// The page for a sandbox whose id the caller has validated.
HttpResponse TerminalPage(const HttpRequest& req);
// An asset, for a path under kTerminalAssetPrefix; unknown names are 404.
HttpResponse TerminalAsset(const HttpRequest& req);

}  // namespace cove::api
