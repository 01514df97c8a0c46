// Files compiled into coved (the terminal page and xterm.js): generated into
// the build directory by src/api/embed_files.cmake from web/terminal/.
#pragma once

#include <span>
#include <string_view>

namespace cove::api {

struct EmbeddedFile {
  std::string_view name;   // as served under /v1/terminal/, e.g. "xterm.js"
  std::string_view bytes;
};

std::span<const EmbeddedFile> EmbeddedFiles();

}  // namespace cove::api
