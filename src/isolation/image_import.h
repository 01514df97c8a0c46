// Importing images: a rootfs directory or a tarball (any format and
// compression libarchive reads) becomes a read-only lower layer.
#pragma once

#include <string>

#include "base/error.h"
#include "isolation/spec.h"

namespace cove::isolation {

// Image names: [a-z0-9][a-z0-9._-]{0,62}, "default" is reserved.
Status ValidateImageName(const std::string& name);

// Imports `source` (a directory, or an archive file) as images_dir/<name>.
// Entries with absolute paths or ".." components, paths through symlinks,
// and device nodes are refused (the whole import fails). Ownership and modes
// are kept numerically. Extracts into a temp dir and renames it into place:
// a failed import leaves nothing behind. kAlreadyExists if the image exists.
// Imported images get no host dirs; their binaries run as they are (the
// agent exec'd as pid 1 must then be static or find its libraries there).
Result<Image> ImportImage(const std::string& images_dir, const std::string& name, const std::string& source);

}  // namespace cove::isolation
