// The fields of /proc/<pid>/stat that cove reads, parsed in one place.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string_view>

#include "base/error.h"

namespace cove::sys {

struct ProcStat {
  char state = 0;                 // field 3: R, S, D, Z...
  pid_t ppid = 0;                 // field 4
  uint64_t start_time_ticks = 0;  // field 22: clock ticks since boot
};

// Parses a /proc/<pid>/stat line. comm (field 2) may hold spaces and ')':
// the fields after it are found from the last ')'.
Result<ProcStat> ParseProcStat(std::string_view line);

// Reads and parses /proc/<pid>/stat; `pid` is a number or "self".
Result<ProcStat> ReadProcStat(std::string_view pid);
Result<ProcStat> ReadProcStat(pid_t pid);

}  // namespace cove::sys
