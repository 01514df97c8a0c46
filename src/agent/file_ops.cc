#include "agent/file_ops.h"

#include <algorithm>
#include <variant>

namespace cove::agent {

FileOps::FileOps(const PartEnv& env, FileCtxOf file_ctx) : Part(env), file_ctx_(std::move(file_ctx)) {}

FileOps::~FileOps() = default;

void FileOps::Handle(const Chan& c, AnyOp& any) {
  auto ctx = [this](const auto& op) { return file_ctx_(op.session_id); };
  if (auto* op = std::get_if<FileReadOp>(&any)) return StartRead(c, *op);
  if (auto* op = std::get_if<FileWriteOp>(&any)) return Write(c, *op);
  if (auto* op = std::get_if<FileDeleteOp>(&any)) return Reply(c, FileDelete(ctx(*op), *op));
  if (auto* op = std::get_if<FileRenameOp>(&any)) return Reply(c, FileRename(ctx(*op), *op));
  if (auto* op = std::get_if<FileMoveOp>(&any)) return Reply(c, FileMove(ctx(*op), *op));
  if (auto* op = std::get_if<FileMkdirOp>(&any)) return Reply(c, FileMkdir(ctx(*op), *op));
  if (auto* op = std::get_if<FileExistsOp>(&any)) return Reply(c, FileExists(ctx(*op), *op));
  if (auto* op = std::get_if<FileListOp>(&any))
    return Reply(c, FileList(ctx(*op), *op, [&](std::string ev) { Event(c, ev); }));
  Part::Handle(c, any);
}

void FileOps::StartRead(const Chan& c, const FileReadOp& op) {
  auto r = FileReader::Open(file_ctx_(op.session_id), op);
  if (auto* e = std::get_if<json>(&r)) return Reply(c, *e);
  reads_.push_back(ReadTask{c, std::move(std::get<0>(r))});
  uint64_t gen = c.gen;
  uint32_t id = c.id;
  SetCancel(c, [this, gen, id] {
    for (auto it = reads_.begin(); it != reads_.end(); ++it) {
      if (it->chan.gen == gen && it->chan.id == id) {
        Chan ch = it->chan;
        reads_.erase(it);
        Reply(ch, json{{"type", "complete"}, {"bytesRead", 0}, {"cancelled", true}});
        return;
      }
    }
  });
}

void FileOps::Write(const Chan& c, FileWriteOp& op) {
  FileCtx ctx = file_ctx_(op.session_id);
  if (!op.content_in_data) return Reply(c, FileWrite(ctx, op));
  // The content follows in data frames on this channel: they go straight to the temporary file.
  auto opened = FileWriter::Open(ctx, op.path);
  if (auto* e = std::get_if<json>(&opened)) return Reply(c, *e);  // its data frames are then ignored
  PendingWrite w{std::move(std::get<0>(opened)), std::nullopt};
  if (op.data_size) w.size = static_cast<uint64_t>(*op.data_size);  // non-negative (ops.h)
  if (w.size == 0u) return Reply(c, w.writer->Commit());
  pending_writes_[c.id] = std::move(w);
  uint32_t id = c.id;
  SetCancel(c, [this, c, id] {
    if (pending_writes_.erase(id))  // removes the temporary file
      Reply(c, ErrorReply("OPERATION_INTERRUPTED", "file.write cancelled before all its data arrived"));
  });
}

bool FileOps::Data(const Chan& c, std::string* payload) {
  auto it = pending_writes_.find(c.id);
  if (it == pending_writes_.end()) return false;
  PendingWrite& w = it->second;
  std::optional<json> answer;
  if (w.size && w.writer->written() + payload->size() > *w.size) {
    answer = ValidationError("more data than dataSize", "dataSize");
  } else if (auto e = w.writer->Append(*payload)) {
    answer = std::move(e);
  } else if (!w.size || w.writer->written() == *w.size) {
    answer = w.writer->Commit();
  }
  if (answer) {
    pending_writes_.erase(it);  // removes what is left of the temporary file
    Reply(c, *answer);
  }
  return true;
}

void FileOps::OnConnectionLost() {
  pending_writes_.clear();
  reads_.clear();
}

bool FileOps::Pump() {
  if (reads_.empty()) return false;
  ReadTask t = std::move(reads_.front());
  reads_.pop_front();
  if (Live(t.chan) && Starved(t.chan)) {
    reads_.push_back(std::move(t));  // its consumer is slow: the others go on
  } else if (Live(t.chan)) {
    auto credit = link_.Credit(t.chan);
    size_t budget = !credit ? 1 << 20 : std::clamp<int64_t>(*credit, 64 << 10, 1 << 20);
    EmitFn data = [&](std::string bytes) { SendFrame(t.chan, FrameType::kData, bytes); };
    auto reply = t.reader->Step([&](std::string ev) { Event(t.chan, ev); }, budget, &data);
    if (reply) {
      Reply(t.chan, *reply);
    } else {
      reads_.push_back(std::move(t));
    }
  }
  return std::any_of(reads_.begin(), reads_.end(), [this](const ReadTask& r) { return !Starved(r.chan); });
}

}  // namespace cove::agent
