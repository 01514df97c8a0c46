#include "agent/output_pipe.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "agent/config.h"

namespace cove::agent {

bool PumpOnce(Link& link, int fd, const char* type, Utf8JsonStream* dec, const Chan* c, size_t max) {
  char buf[kReadChunk];
  ssize_t n;
  do {
    n = read(fd, buf, std::min(max, sizeof buf));
  } while (n < 0 && errno == EINTR);
  if (n == 0) return false;
  if (n < 0) return errno == EAGAIN;
  if (!c || !link.Live(*c)) return true;  // nobody to tell: discard
  std::string ev;
  ev.reserve(static_cast<size_t>(n) + 64);
  ev += "{\"type\":\"";
  ev += type;
  ev += "\",\"data\":\"";
  size_t before = ev.size();
  dec->Append(std::string_view(buf, static_cast<size_t>(n)), &ev);
  if (ev.size() == before) return true;
  ev += "\"}";
  link.Event(*c, ev);
  return true;
}

void Drain(Link& link, int fd, const char* type, Utf8JsonStream* dec, const Chan* c) {
  if (fd < 0) return;
  int avail = 0;
  if (ioctl(fd, FIONREAD, &avail) != 0 || avail <= 0) return;
  size_t left = static_cast<size_t>(avail);
  while (left > 0) {
    size_t want = std::min(left, kReadChunk);
    if (!PumpOnce(link, fd, type, dec, c, want)) break;
    left -= want;
  }
}

void FinishStreams(Link& link, Utf8JsonStream* out, Utf8JsonStream* err, const Chan* c) {
  for (auto [dec, type] : {std::pair{out, "stdout"}, std::pair{err, "stderr"}}) {
    if (!dec->has_pending()) continue;
    std::string ev = std::string("{\"type\":\"") + type + "\",\"data\":\"";
    dec->Finish(&ev);
    ev += "\"}";
    if (c) link.Event(*c, ev);
  }
}

void OnOutputReadable(Link& link, EventLoop& loop, uint64_t* token, int fd, const char* type,
                      Utf8JsonStream* dec, const Chan* c) {
  if (link.HoldOutput(*token, c)) return;  // the command blocks on its pipe meanwhile
  if (!PumpOnce(link, fd, type, dec, c, kReadChunk)) {
    // EOF: every writer is gone. Stop watching; the fd is closed with its owner.
    loop.Unwatch(*token);
    *token = 0;
  }
}

}  // namespace cove::agent
