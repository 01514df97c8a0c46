// ProcessLog: the complete output of one background process, both streams in
// the order they were read, kept in memory and spilled to the sandbox's disk.
//
// The log is a sequence of records (stream, text). A position in it is a
// "log offset": every record takes 4 + its length. The newest records stay in
// memory (at most `memory` bytes, then the oldest are spilled); spilled records
// go to segment files `<prefix><n>` (u32 header: length | stream << 31, then
// the text), at most `disk` bytes in all: past that the oldest segment is
// deleted. A spill that fails (disk full, quota exceeded) deletes every
// segment and the records it was writing; the log then starts at its oldest
// record in memory, and later spills try the disk again. So what the log holds
// is always one contiguous tail of the output, and Dropped(stream) (bytes of
// that stream no longer held) is exact. Appending never blocks on a reader.
// The destructor removes the segment files. Not thread-safe (the agent's loop).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "sys/unique_fd.h"

namespace cove::agent {

// Output kept per background process on the sandbox's disk (in its writable
// layer, so it counts in its disk quota), beyond the newest output in memory.
inline constexpr uint64_t kProcessLogDiskLimit = 128ull << 20;
// Raw bytes of one record at most (and of one output event).
inline constexpr size_t kLogRecordMax = 64 << 10;

class ProcessLog {
 public:
  struct Limits {
    size_t memory = 2 << 20;                // bytes of records held in memory
    uint64_t disk = kProcessLogDiskLimit;   // bytes of segment files (0: never spill)
  };
  struct Segment {
    uint64_t num = 0;
    uint64_t begin = 0, end = 0;  // log offsets it holds
    uint64_t off[2] = {0, 0};     // stream offsets at `begin`
    std::shared_ptr<UniqueFd> fd; // set in snapshots only (live readers open by name)
  };
  struct Record {
    uint64_t at = 0;     // log offset
    int stream = 0;      // 0 stdout, 1 stderr
    uint64_t start = 0;  // stream offset of data[0]
    std::string data;    // complete UTF-8 characters
  };
  // What a reader reads: the live log's, or a snapshot's (a copy whose segments
  // are held open, so that it stays readable while the log moves on).
  struct State {
    std::string prefix;  // segment path without its number
    std::deque<Segment> segs;
    std::deque<Record> mem;
    uint64_t end = 0;
    uint64_t total[2] = {0, 0};  // bytes ever appended per stream
    uint64_t Head() const;                // first log offset held
    uint64_t HeadOffset(int stream) const; // stream offset at Head() = bytes dropped
  };
  // `prefix`: path prefix of the segment files; its directory is created on
  // the first spill.
  ProcessLog(std::string prefix, Limits limits);
  ~ProcessLog();
  ProcessLog(const ProcessLog&) = delete;
  ProcessLog& operator=(const ProcessLog&) = delete;

  // Appends text (complete UTF-8 characters) to stream 0 or 1.
  void Append(int stream, std::string_view text);
  uint64_t Total(int stream) const { return st_.total[stream]; }
  uint64_t Dropped(int stream) const { return st_.HeadOffset(stream); }
  uint64_t Held() const { return st_.end - st_.Head(); }  // log bytes held
  uint64_t DiskBytes() const { return disk_bytes_; }
  const State& state() const { return st_; }
  // A copy of the state whose segments stay readable (open fds) after the
  // log deletes them. Segments that cannot be opened are left out (their
  // bytes count as dropped in the snapshot).
  std::shared_ptr<const State> Snapshot() const;

 private:
  void Spill();
  bool WriteRecord(const Record& r);
  void DropDisk();
  std::string SegmentPath(uint64_t num) const { return st_.prefix + std::to_string(num); }

  Limits limits_;
  State st_;
  size_t mem_bytes_ = 0;
  uint64_t disk_bytes_ = 0;
  uint64_t next_seg_ = 1;
  UniqueFd wfd_;  // the newest segment, open for appending
  int last_errno_ = 0;
};

// Reads a ProcessLog::State from a cursor on. One per reader (it caches the
// segment it reads and a block of it).
class LogReader {
 public:
  struct Cursor {
    uint64_t at = 0;    // log offset of the record being read
    size_t skip = 0;    // bytes of it already read
  };
  // The next unread text at or after *c (part of one record), advancing *c.
  // False at the end. A cursor before st.Head() is first moved to it (the
  // caller reports st.HeadOffset() as dropped). `text` is valid until the
  // next call or a change of the log.
  bool Next(const ProcessLog::State& st, Cursor* c, int* stream, std::string_view* text);

 private:
  bool ReadDisk(const ProcessLog::State& st, const ProcessLog::Segment& seg, Cursor* c, int* stream,
                std::string_view* text);
  uint64_t seg_num_ = 0;
  std::shared_ptr<UniqueFd> fd_;
  std::string buf_;       // a block of segment seg_num_
  uint64_t buf_at_ = 0;   // log offset of buf_[0]
};

}  // namespace cove::agent
