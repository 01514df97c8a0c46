// The wire side of `cove shell`, as pure functions (unit-tested): where the
// terminal WebSocket is (/v1/sandboxes/ID/ws/pty, docs/api.md) and the JSON
// text frames exchanged on it. Binary frames are raw terminal bytes and need
// no helper.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "cli/terminal_mode.h"

namespace cove::cli {

// coved's base URL split for a WebSocket client: http -> ws, https -> wss.
struct WsEndpoint {
  bool tls = false;
  std::string host;         // without brackets for IPv6 literals
  std::string port;         // "80"/"443" when the URL has none
  std::string host_header;  // host[:port] as the URL spells it
  std::string path_prefix;  // "" or "/prefix" (no trailing slash)
};
Result<WsEndpoint> ParseBaseUrl(std::string_view url);

// The request target of the terminal of session `session` in sandbox `id`;
// size (when known) becomes the cols/rows query parameters.
std::string PtyTarget(const WsEndpoint& ep, std::string_view id, std::string_view session,
                      const std::optional<WindowSize>& size);

// {"type":"resize","cols":C,"rows":R}
std::string ResizeMessage(const WindowSize& size);

// A text frame from coved, decoded.
struct ServerMessage {
  enum class Kind { kReady, kExit, kError, kOther };
  Kind kind = Kind::kOther;
  int exit_status = 0;   // kExit: 0-255, as a shell reports it (128+N for signal N)
  std::string message;   // kError
};
ServerMessage ParseServerMessage(std::string_view text);

}  // namespace cove::cli
