#include "agent/process_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace cove::agent {
namespace {

constexpr size_t kHeader = 4;
constexpr size_t kReadBlock = 256 << 10;  // bytes read from a segment at a time

bool IsContinuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

uint64_t ProcessLog::State::Head() const {
  if (!segs.empty()) return segs.front().begin;
  if (!mem.empty()) return mem.front().at;
  return end;
}

uint64_t ProcessLog::State::HeadOffset(int stream) const {
  if (!segs.empty()) return segs.front().off[stream];
  for (const Record& r : mem)
    if (r.stream == stream) return r.start;
  return total[stream];
}

ProcessLog::ProcessLog(std::string prefix, Limits limits) : limits_(limits) {
  st_.prefix = std::move(prefix);
}

ProcessLog::~ProcessLog() { DropDisk(); }

void ProcessLog::Append(int stream, std::string_view text) {
  while (!text.empty()) {
    Record* back = st_.mem.empty() ? nullptr : &st_.mem.back();
    bool extend = back && back->stream == stream && back->data.size() < kLogRecordMax;
    size_t take = std::min(extend ? kLogRecordMax - back->data.size() : kLogRecordMax, text.size());
    // Never cut a character in two (a record is sent as one event).
    size_t cut = take;
    while (cut > 0 && cut < text.size() && IsContinuation(text[cut])) --cut;
    if (cut == 0 && extend) {  // the next character does not fit: a new record
      extend = false;
      take = cut = std::min(kLogRecordMax, text.size());
      while (cut > 0 && cut < text.size() && IsContinuation(text[cut])) --cut;
    }
    if (cut > 0) take = cut;  // else not UTF-8 at all: cut anyway
    if (extend) {
      back->data.append(text.substr(0, take));
      mem_bytes_ += take;
    } else {
      st_.mem.push_back(Record{st_.end, stream, st_.total[stream], std::string(text.substr(0, take))});
      st_.end += kHeader;
      mem_bytes_ += kHeader + take;
    }
    st_.end += take;
    st_.total[stream] += take;
    text.remove_prefix(take);
  }
  Spill();
}

void ProcessLog::Spill() {
  while (mem_bytes_ > limits_.memory && !st_.mem.empty()) {
    Record r = std::move(st_.mem.front());
    st_.mem.pop_front();
    mem_bytes_ -= kHeader + r.data.size();
    if (!WriteRecord(r)) DropDisk();  // the log now starts in memory
  }
}

bool ProcessLog::WriteRecord(const Record& r) {
  uint64_t size = kHeader + r.data.size();
  if (size > limits_.disk) return false;
  uint64_t seg_size = std::max<uint64_t>(limits_.disk / 8, std::min<uint64_t>(limits_.disk, kHeader + kLogRecordMax));
  if (!wfd_ || st_.segs.back().end - st_.segs.back().begin + size > seg_size) {
    wfd_.Reset();
    if (st_.segs.empty() && next_seg_ == 1) {
      std::string dir = st_.prefix.substr(0, st_.prefix.rfind('/'));
      mkdir(dir.c_str(), 0700);
    }
    uint64_t num = next_seg_++;
    std::string path = SegmentPath(num);
    wfd_.Reset(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600));
    if (!wfd_) {
      if (errno != last_errno_) log::Warn("process log: cannot create {}: {}", path, strerror(errno));
      last_errno_ = errno;
      return false;
    }
    Segment s;
    s.num = num;
    s.begin = s.end = r.at;
    // Stream offsets at r: the stream of r starts at r.start; the other one
    // where its first record still in memory starts (everything before r is
    // on disk or dropped), or at its total.
    s.off[r.stream] = r.start;
    int o = 1 - r.stream;
    s.off[o] = st_.total[o];
    for (const Record& m : st_.mem) {
      if (m.stream == o) {
        s.off[o] = m.start;
        break;
      }
    }
    st_.segs.push_back(s);
  }
  Segment& seg = st_.segs.back();
  uint32_t header = static_cast<uint32_t>(r.data.size()) | (static_cast<uint32_t>(r.stream) << 31);
  iovec iov[2] = {{&header, kHeader}, {const_cast<char*>(r.data.data()), r.data.size()}};
  ssize_t n = writev(wfd_.get(), iov, 2);
  if (n != static_cast<ssize_t>(size)) {
    int err = n < 0 ? errno : ENOSPC;
    if (n > 0 && ftruncate(wfd_.get(), static_cast<off_t>(seg.end - seg.begin)) != 0) {
      // DropDisk removes the file anyway.
    }
    if (err != last_errno_)
      log::Warn("process log: cannot write {}: {}; older output is dropped", SegmentPath(seg.num), strerror(err));
    last_errno_ = err;
    return false;
  }
  last_errno_ = 0;
  seg.end += size;
  disk_bytes_ += size;
  while (disk_bytes_ > limits_.disk && st_.segs.size() > 1) {
    const Segment& old = st_.segs.front();
    unlink(SegmentPath(old.num).c_str());
    disk_bytes_ -= old.end - old.begin;
    st_.segs.pop_front();
  }
  return true;
}

void ProcessLog::DropDisk() {
  wfd_.Reset();
  for (const Segment& s : st_.segs) unlink(SegmentPath(s.num).c_str());
  st_.segs.clear();
  disk_bytes_ = 0;
}

std::shared_ptr<const ProcessLog::State> ProcessLog::Snapshot() const {
  auto snap = std::make_shared<State>(st_);
  for (size_t i = 0; i < snap->segs.size(); ++i) {
    Segment& s = snap->segs[i];
    auto fd = std::make_shared<UniqueFd>(open(SegmentPath(s.num).c_str(), O_RDONLY | O_CLOEXEC));
    if (*fd) {
      s.fd = std::move(fd);
      continue;
    }
    // Removed from inside the sandbox: the snapshot starts after it.
    snap->segs.erase(snap->segs.begin(), snap->segs.begin() + static_cast<long>(i) + 1);
    i = static_cast<size_t>(-1);
  }
  return snap;
}

bool LogReader::Next(const ProcessLog::State& st, Cursor* c, int* stream, std::string_view* text) {
  for (;;) {
    if (c->at < st.Head()) *c = Cursor{st.Head(), 0};
    if (c->at >= st.end) return false;
    if (!st.segs.empty() && c->at < st.segs.back().end) {
      auto seg = std::partition_point(st.segs.begin(), st.segs.end(),
                                      [c](const ProcessLog::Segment& s) { return s.end <= c->at; });
      if (ReadDisk(st, *seg, c, stream, text)) return true;
      continue;
    }
    auto it = std::partition_point(st.mem.begin(), st.mem.end(), [c](const ProcessLog::Record& r) {
      return r.at + kHeader + r.data.size() <= c->at;
    });
    if (it == st.mem.end()) return false;
    if (it->at != c->at) *c = Cursor{it->at, 0};
    bool last = std::next(it) == st.mem.end();
    if (c->skip < it->data.size()) {
      *stream = it->stream;
      *text = std::string_view(it->data).substr(c->skip);
      // The newest record may still grow: stay on it.
      *c = last ? Cursor{it->at, it->data.size()} : Cursor{it->at + kHeader + it->data.size(), 0};
      return true;
    }
    if (last) return false;
    *c = Cursor{it->at + kHeader + it->data.size(), 0};
  }
}

bool LogReader::ReadDisk(const ProcessLog::State& st, const ProcessLog::Segment& seg, Cursor* c, int* stream,
                         std::string_view* text) {
  auto corrupt = [&](const char* why) {
    log::Warn("process log: segment {}{} is {}; skipping it", st.prefix, seg.num, why);
    *c = Cursor{seg.end, 0};
    buf_.clear();
    return false;
  };
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool cached = seg_num_ == seg.num && !buf_.empty() && buf_at_ <= c->at && c->at - buf_at_ + kHeader <= buf_.size();
    if (cached) {
      size_t o = c->at - buf_at_;
      uint32_t h;
      memcpy(&h, buf_.data() + o, kHeader);
      size_t len = h & 0x7fffffffu;
      if (len > kLogRecordMax || c->at + kHeader + len > seg.end) return corrupt("corrupt");
      if (o + kHeader + len <= buf_.size()) {
        if (c->skip >= len) {  // read before
          *c = Cursor{c->at + kHeader + len, 0};
          return false;
        }
        *stream = static_cast<int>(h >> 31);
        *text = std::string_view(buf_).substr(o + kHeader + c->skip, len - c->skip);
        *c = Cursor{c->at + kHeader + len, 0};
        return true;
      }
    }
    if (attempt == 1) return corrupt("truncated");
    if (seg_num_ != seg.num || !fd_) {
      seg_num_ = seg.num;
      if (seg.fd) {
        fd_ = seg.fd;
      } else {
        fd_ = std::make_shared<UniqueFd>(open((st.prefix + std::to_string(seg.num)).c_str(), O_RDONLY | O_CLOEXEC));
        if (!*fd_) {
          fd_.reset();
          return corrupt("missing");
        }
      }
    }
    size_t want = static_cast<size_t>(std::min<uint64_t>(kReadBlock, seg.end - c->at));
    buf_.resize(want);
    ssize_t n = pread(fd_->get(), buf_.data(), want, static_cast<off_t>(c->at - seg.begin));
    buf_.resize(n > 0 ? static_cast<size_t>(n) : 0);
    buf_at_ = c->at;
    if (buf_.size() < kHeader) return corrupt("unreadable");
  }
  return false;
}

}  // namespace cove::agent
