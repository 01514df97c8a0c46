// FileOps: the file.* ops (docs/agent-protocol.md, "Files") on their
// channels; the operations themselves are files.h. Most answer at once;
// file.read streams between polls while the connection keeps up (a slow
// consumer's read waits, the others go on); file.write with contentInData
// opens its temporary file at once and writes the channel's data frames into
// it as they arrive (dataSize bytes in all, or one frame), then replaces the
// target; a cancel, an error or a lost connection removes the temporary file.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>

#include "agent/files.h"
#include "agent/part.h"

namespace cove::agent {

class FileOps : public Part {
 public:
  // file_ctx: the base directory (and owner) of an op's paths.
  FileOps(const PartEnv& env, FileCtxOf file_ctx);
  ~FileOps() override;

  void Handle(const Chan& c, AnyOp& any) override;  // file.*
  // A data frame on c: content of a file.write waiting for it (answered
  // once all has arrived, or at the first error). False if none waits on c.
  bool Data(const Chan& c, std::string* payload);
  void OnConnectionLost() override;  // drops reads and writes in progress
  bool Pump() override;              // one step of the next file.read

 private:
  struct PendingWrite {  // file.write waiting for its data frames
    std::unique_ptr<FileWriter> writer;
    std::optional<uint64_t> size;  // dataSize; absent: one frame
  };
  struct ReadTask {
    Chan chan;
    std::unique_ptr<FileReader> reader;
  };

  // Opens the file and queues its read (Pump sends it); a Cancel answers at once.
  void StartRead(const Chan& c, const FileReadOp& op);
  // Writes now, or with contentInData opens the file and waits for its data (Data).
  void Write(const Chan& c, FileWriteOp& op);

  FileCtxOf file_ctx_;
  std::unordered_map<uint32_t, PendingWrite> pending_writes_;
  std::deque<ReadTask> reads_;
};

}  // namespace cove::agent
