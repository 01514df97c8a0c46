#include "sys/proc_stat.h"

#include <charconv>
#include <string>

#include "sys/io.h"

namespace cove::sys {

namespace {
template <typename T>
bool ParseNumber(std::string_view field, T* out) {
  auto [p, ec] = std::from_chars(field.data(), field.data() + field.size(), *out);
  return ec == std::errc() && p == field.data() + field.size();
}
}  // namespace

Result<ProcStat> ParseProcStat(std::string_view line) {
  size_t close = line.rfind(')');
  if (close == std::string_view::npos) return MakeError(ErrorCode::kInvalidArgument, "bad stat line");
  std::string_view rest = line.substr(close + 1);
  ProcStat out;
  int field = 2;
  size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && rest[i] == ' ') ++i;
    size_t j = i;
    while (j < rest.size() && rest[j] != ' ' && rest[j] != '\n') ++j;
    if (j == i) break;
    std::string_view value = rest.substr(i, j - i);
    ++field;
    if (field == 3) {
      out.state = value[0];
    } else if (field == 4) {
      if (!ParseNumber(value, &out.ppid)) return MakeError(ErrorCode::kInvalidArgument, "bad ppid field");
    } else if (field == 22) {
      if (!ParseNumber(value, &out.start_time_ticks))
        return MakeError(ErrorCode::kInvalidArgument, "bad starttime field");
      return out;
    }
    i = j;
  }
  return MakeError(ErrorCode::kInvalidArgument, "stat line too short");
}

Result<ProcStat> ReadProcStat(std::string_view pid) {
  COVE_ASSIGN_OR_RETURN(std::string line, ReadFile("/proc/" + std::string(pid) + "/stat", 4096));
  return ParseProcStat(line);
}

Result<ProcStat> ReadProcStat(pid_t pid) { return ReadProcStat(std::to_string(pid)); }

}  // namespace cove::sys
