// `cove shell`: the user's terminal attached to a sandbox's PTY over the
// terminal WebSocket (/v1/sandboxes/ID/ws/pty, Boost.Beast; ws:// for an
// http:// coved, wss:// with certificate checks for https://).
//
// While attached, a stdin that is a terminal is in raw mode (every key,
// Ctrl-C included, goes to the remote shell) and is restored on every way
// out. Stdin bytes go as binary frames, output frames go to stdout, SIGWINCH
// becomes a resize message. At the end of a stdin that is not a terminal,
// Ctrl-D (0x04, end of file) is typed (after a newline if the last line had
// none), and typed again after each half second without output until the
// shell exits: a piped script ends like `bash < script` would, and a command
// of the script that reads stdin sees end of file after the script's lines.
// SIGINT, SIGTERM and SIGHUP sent to cove detach: the terminal is restored,
// the remote shell keeps running in its session, and cove exits 128+signal.
#pragma once

#include <string>

#include "base/error.h"

namespace cove::cli {

struct ShellOptions {
  std::string base_url;  // coved, http:// or https://
  std::string token;     // bearer token ("" sends none)
  std::string id;        // sandbox
  std::string session;   // PTY session (one PTY per session, shared by attached clients)
};

// Returns the remote shell's exit status (128+N if signal N ended it).
// Failures to connect, an HTTP error on the upgrade (decoded from the error
// envelope, as HttpClient does), an error message from coved, or the
// connection ending before the shell did are Errors.
Result<int> RunShell(const ShellOptions& o);

}  // namespace cove::cli
