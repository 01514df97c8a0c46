#include "agent/file_ops.h"

#include <algorithm>
#include <variant>

namespace cove::agent {

FileOps::FileOps(const PartEnv& env, std::function<FileCtx(const json& req)> file_ctx)
    : Part(env), file_ctx_(std::move(file_ctx)) {}

FileOps::~FileOps() = default;

void FileOps::Handle(const Chan& c, AnyOp& any, json& req) {
  const std::string op(OpName(any));
  json err;
  std::string sid;
  if (!GetString(req, "sessionId", false, &sid, &err)) return Reply(c, err);
  FileCtx ctx = file_ctx_(req);
  if (op == "file.read") {
    auto r = FileReader::Open(ctx, req);
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
    return;
  }
  if (op == "file.write") {
    if (auto it = req.find("contentInData"); it != req.end() && it->is_boolean() && it->get<bool>()) {
      // The content follows as a data frame on this channel.
      pending_writes_[c.id] = PendingWrite{std::move(ctx), std::move(req)};
      uint32_t id = c.id;
      SetCancel(c, [this, c, id] {
        if (pending_writes_.erase(id))
          Reply(c, ErrorReply("OPERATION_INTERRUPTED", "file.write cancelled before its data arrived"));
      });
      return;
    }
    return Reply(c, FileWrite(ctx, req));
  }
  if (op == "file.delete") return Reply(c, FileDelete(ctx, req));
  if (op == "file.rename") return Reply(c, FileRename(ctx, req));
  if (op == "file.move") return Reply(c, FileMove(ctx, req));
  if (op == "file.mkdir") return Reply(c, FileMkdir(ctx, req));
  if (op == "file.exists") return Reply(c, FileExists(ctx, req));
  if (op == "file.list") {
    return Reply(c, FileList(ctx, req, [&](std::string ev) { Event(c, ev); }));
  }
  Reply(c, UnknownOp(op));
}

bool FileOps::Data(const Chan& c, std::string* payload) {
  auto it = pending_writes_.find(c.id);
  if (it == pending_writes_.end()) return false;
  PendingWrite w = std::move(it->second);
  pending_writes_.erase(it);
  Reply(c, FileWrite(w.ctx, w.req, payload));
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
