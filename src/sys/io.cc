#include "sys/io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sys/unique_fd.h"

namespace cove::sys {

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysError("write");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return OkStatus();
}

Result<std::string> ReadAll(int fd, size_t max_bytes) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysError("read");
    }
    if (n == 0) return out;
    if (out.size() + static_cast<size_t>(n) > max_bytes)
      return MakeError(ErrorCode::kResourceExhausted, "input larger than limit");
    out.append(buf, static_cast<size_t>(n));
  }
}

Result<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return SysError("open " + path);
  return ReadAll(fd.get(), max_bytes);
}

Status WriteFileAtomic(const std::string& path, std::string_view data, unsigned mode) {
  std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) return SysError("create " + tmp);
  if (::fchmod(fd.get(), mode) != 0) return SysError("chmod " + tmp);
  if (auto s = WriteAll(fd.get(), data); !s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  fd.Reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Error e = SysError("rename " + tmp);
    ::unlink(tmp.c_str());
    return e;
  }
  return OkStatus();
}

}  // namespace cove::sys
