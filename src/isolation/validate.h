// Checks on caller-supplied names and specs before anything touches the kernel.
#pragma once

#include <string_view>

#include "base/error.h"
#include "isolation/spec.h"

namespace cove::isolation {

// [a-z0-9-]{1,63}, not starting with '-': safe as a hostname and a path component.
Status ValidateSandboxId(std::string_view id);
// An absolute path without "." or ".." components and without NUL.
Status ValidateAbsolutePath(std::string_view path);
// Everything Launch relies on: id, host id range, absolute dirs, argv, host dirs.
Status ValidateSpec(const SandboxSpec& spec);

}  // namespace cove::isolation
