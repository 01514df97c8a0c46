// Pure helpers of cove-agent: shell quoting, path resolution, file mode
// strings, MIME types, /etc/passwd. (UTF-8 and JSON strings: base/utf8.h;
// base64: base/base64.h.)
// No I/O except ParsePasswd/ParseGroups (which take file contents), no globals.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/base64.h"
#include "base/utf8.h"

namespace cove::agent {

// Lexically normalises `path` (absolute, or relative to the absolute `base`):
// collapses "//", "." and "..", never climbs above "/". No symlinks resolved.
std::string ResolvePath(std::string_view base, std::string_view path);
// The directory part of an absolute normalised path ("/" for "/x").
std::string DirName(std::string_view path);
// The last component ("" for "/").
std::string BaseName(std::string_view path);

// "rwxr-xr-x" from the permission bits of `mode`.
std::string ModeString(mode_t mode);

// MIME type by file extension; "" when the extension is not known.
std::string MimeTypeForPath(std::string_view path);

struct PasswdEntry {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
  std::string shell;
};
// Finds `name` in the text of an /etc/passwd file.
std::optional<PasswdEntry> FindPasswd(std::string_view passwd, std::string_view name);
// Supplementary groups of `user` from the text of an /etc/group file.
std::vector<gid_t> FindGroups(std::string_view group, std::string_view user);

}  // namespace cove::agent
