#include "agent/shell_command.h"

#include <sys/mman.h>

#include "sys/io.h"

namespace cove::agent {

Status PrepareShellCommand(const std::string& command, bool bash, SpawnSpec* spec, UniqueFd* script) {
  const char* name = bash ? "bash" : "sh";
  if (command.size() <= kInlineCommandMax) {
    spec->argv = {name, "-c", command};
    return OkStatus();
  }
  UniqueFd fd(memfd_create("cove-command", MFD_CLOEXEC));
  if (!fd) return SysError("memfd_create");
  COVE_TRY(sys::WriteAll(fd.get(), command));
  // Expansion comes before the redirection, so the script is read with the fd
  // open and run with it closed (POSIX "Simple Commands"). /proc/self/fd
  // reopens the memfd from its start.
  std::string fd_path = "/proc/self/fd/" + std::to_string(kScriptFd);
  std::string run = bash ? "builtin eval \"$(< " + fd_path + ")\" " + std::to_string(kScriptFd) + "<&-"
                         : "eval \"$(cat " + fd_path + ")\" " + std::to_string(kScriptFd) + "<&-";
  spec->argv = {name, "-c", run};
  spec->fds.emplace_back(fd.get(), kScriptFd);
  *script = std::move(fd);
  return OkStatus();
}

}  // namespace cove::agent
