// FileOps: the file.* ops (docs/agent-protocol.md, "Files") on their
// channels; the operations themselves are files.h. Most answer at once;
// file.read streams between polls while the connection keeps up (a slow
// consumer's read waits, the others go on); file.write with contentInData
// waits for its content in the channel's data frame.
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
  // A data frame on c: the content of a file.write waiting for it (then
  // answered). False if no file.write waits on c.
  bool Data(const Chan& c, std::string* payload);
  void OnConnectionLost() override;  // drops reads and writes in progress
  bool Pump() override;              // one step of the next file.read

 private:
  struct PendingWrite {  // file.write waiting for its data frame
    FileCtx ctx;
    FileWriteOp op;
  };
  struct ReadTask {
    Chan chan;
    std::unique_ptr<FileReader> reader;
  };

  // Opens the file and queues its read (Pump sends it); a Cancel answers at once.
  void StartRead(const Chan& c, const FileReadOp& op);
  // Writes now, or with contentInData keeps op until its data frame (Data).
  void Write(const Chan& c, FileWriteOp& op);

  FileCtxOf file_ctx_;
  std::unordered_map<uint32_t, PendingWrite> pending_writes_;
  std::deque<ReadTask> reads_;
};

}  // namespace cove::agent
