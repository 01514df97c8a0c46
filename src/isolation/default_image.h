// The default image: the host's own /usr (and /bin, /sbin, /lib* where they
// are real directories) over a small lower skeleton with a clean /etc and the
// host's package database, so bash, coreutils, git, curl, python3, node, apt
// work in a sandbox without any download. Each host dir is the read-only lower
// layer of an overlay of the sandbox's own: writable there, never on the host
// (HostDir). Nothing else of the host is visible.
#pragma once

#include <string>

#include "base/error.h"
#include "isolation/spec.h"

namespace cove::isolation {

// Builds images_dir/default once (atomically: temp dir + rename; rebuilt if
// its format version changed) and refreshes its CA bundle if the host's
// changed. Returns the Image (lower dir + host dirs). Thread-safe across
// processes sharing images_dir.
Result<Image> EnsureDefaultImage(const std::string& images_dir);

}  // namespace cove::isolation
