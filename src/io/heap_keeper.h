// KeepHeapForTransfers: the malloc policy of a daemon that moves whole files
// (up to 32 MiB, as JSON up to ~45 MB) through its memory.
//
// glibc serves blocks above its mmap threshold (at most 32 MiB) with a fresh
// mmap each time and returns freed heap tops to the kernel at once, so every
// large buffer of a transfer paid a page fault per 4 KiB (in a VM, more than
// copying the bytes). This takes large blocks from the heap too and keeps them
// there while the process is busy, and trims the heap (malloc_trim) once the memory it holds free has not
// changed for `idle` (checked on a timer on `ex`), so an idle daemon stays small.
#pragma once

#include <chrono>

#include "io/asio.h"

namespace cove::io {

void KeepHeapForTransfers(asio::any_io_executor ex, std::chrono::milliseconds idle = std::chrono::seconds(2));

}  // namespace cove::io
