// How the agent's parts set up the children they start: the user a child
// runs as, its environment, its pipes, and what its exit status means.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "agent/reply.h"
#include "sys/unique_fd.h"

namespace cove::agent {

// The session id that means "no session" (a sessionless command).
inline constexpr const char* kNoSession = "__DISABLE_SESSION__";

// A non-root user children run as (set = false: root).
struct Identity {
  bool set = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  std::string name, home;
};

// Looks `user` up in /etc/passwd and /etc/group ("" and "root": root; an
// unknown "user" is uid 1000). On an unknown user returns false and sets *err.
bool ParseIdentity(const std::string& user, Identity* out, json* err);
// A child's environment: defaults (PATH, HOME, TERM, LANG), then `base`
// ("K=V", the agent's), then the identity's HOME/USER/LOGNAME, then `extra`.
std::vector<std::string> BuildEnv(const std::vector<std::string>& base,
                                  const std::vector<std::pair<std::string, std::string>>& extra,
                                  const Identity* ident);
// What a child started in a session (a terminal, a background process)
// inherits from it: the shell's current directory (else the session's), its
// user and its environment. Looking an unknown session up creates it, like
// file ops do.
struct SessionContext {
  std::string cwd;
  Identity ident;
  std::vector<std::pair<std::string, std::string>> env;
};
using SessionLookup = std::function<SessionContext(const std::string& session_id)>;

// A shell-style exit code: the status, or 128 + the signal.
int ExitCodeOf(int status);
// A close-on-exec pipe, its read end optionally non-blocking.
bool MakePipe(UniqueFd* r, UniqueFd* w, bool nonblock_read);

}  // namespace cove::agent
