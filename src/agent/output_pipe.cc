#include "agent/output_pipe.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "agent/config.h"

namespace cove::agent {

bool PumpOnce(Link& link, int fd, const char* type, Utf8JsonStream* dec, const Chan* c, size_t max, int reads) {
  char buf[kReadChunk];
  size_t want = std::min(max, sizeof buf);
  bool live = c && link.Live(*c);  // else: nobody to tell, discard
  std::string ev;
  if (live) {
    ev.reserve(want + want / 8 + 64);
    ev += "{\"type\":\"";
    ev += type;
    ev += "\",\"data\":\"";
  }
  size_t before = ev.size();
  bool open = true;
  for (int i = 0; i < reads; ++i) {
    ssize_t n;
    do {
      n = read(fd, buf, want);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      open = n < 0 && errno == EAGAIN;
      break;
    }
    if (live) dec->Append(std::string_view(buf, static_cast<size_t>(n)), &ev);
    // A short read emptied the pipe; a full event is sent as it is.
    if (static_cast<size_t>(n) < want || ev.size() >= kOutputEventJsonTarget) break;
  }
  if (ev.size() > before) {
    ev += "\"}";
    link.Event(*c, ev);
  }
  return open;
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
  if (!PumpOnce(link, fd, type, dec, c, kReadChunk, kReadsPerWakeup)) {
    // EOF: every writer is gone. Stop watching; the fd is closed with its owner.
    loop.Unwatch(*token);
    *token = 0;
  }
}

}  // namespace cove::agent
