// RunningSandboxes: the running sandboxes as the front ends that serve them
// from every io thread see them (the egress proxy and DNS find a sandbox by
// its id slot, i.e. its source address; the preview listener by its id).
// The Manager publishes an immutable copy of a sandbox's record whenever it
// becomes running, changes while running (egress policy, exposed ports) or
// stops being running (failed, deleting, destroyed); readers get a
// shared_ptr to that copy, which stays valid (and unchanged) for as long as
// they hold it, whatever the Manager does meanwhile.
//
// Thread-safe (one mutex, held for a map operation): Publish and Withdraw
// come from the Manager's home thread, lookups from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "manager/sandbox_record.h"

namespace cove {

class RunningSandboxes {
 public:
  using Record = std::shared_ptr<const SandboxRecord>;

  // The running sandbox `id`, or null.
  Record ById(const std::string& id) const;
  // The running sandbox holding id slot `slot`, or null.
  Record BySlot(uint32_t slot) const;
  size_t size() const;

  // Makes `record` the published record of its id and slot, replacing
  // `previous` (what an earlier Publish of the same sandbox returned; null:
  // none). Returns what is now published.
  Record Publish(const SandboxRecord& record, const Record& previous);
  // Takes back `previous` (a record published before), unless another record
  // has replaced it since. No-op for null.
  void Withdraw(const Record& previous);

 private:
  void EraseLocked(const Record& previous);

  mutable std::mutex mu_;
  std::map<std::string, Record> by_id_;
  std::map<uint32_t, Record> by_slot_;
};

}  // namespace cove
