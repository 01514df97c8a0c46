// Host id ranges: each sandbox owns 65536 consecutive host uids/gids
// (sandbox id 0 = host base). Ranges are numbered by slot, never overlap
// each other, and start above every ordinary host user.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "base/error.h"
#include "sys/unique_fd.h"

namespace cove::isolation {

inline constexpr uid_t kFirstHostIdBase = 1u << 20;  // 1048576, above /etc/subuid's usual 100000+
inline constexpr uint32_t kIdRangeSize = 65536;
// Number of slots that fit below uid 2^32-1 (which is the invalid id).
inline constexpr uint32_t kIdSlotCount =
    static_cast<uint32_t>((0xFFFFFFFFull - kFirstHostIdBase) / kIdRangeSize);

Result<uid_t> HostIdBaseForSlot(uint32_t slot);
// kInvalidArgument unless base is the start of a slot.
Result<uint32_t> SlotForHostIdBase(uid_t base);
// Host id of sandbox id `inner` (< 65536) in the range starting at base.
inline uid_t ToHostId(uid_t base, uint32_t inner) { return base + inner; }
// True if host id `host` belongs to the range starting at base.
inline bool InRange(uid_t base, uid_t host) {
  return host >= base && static_cast<uint64_t>(host) < static_cast<uint64_t>(base) + kIdRangeSize;
}
// The line written to /proc/<pid>/uid_map and gid_map: "0 <base> 65536\n".
std::string IdMapLine(uid_t base);

// Where every cove process on a host (coved, cove-jail, tests) claims id slots,
// so that no two sandboxes ever share host ids.
inline constexpr const char* kDefaultIdSlotLockDir = "/run/cove/idslots";

// An exclusive claim on one slot among processes sharing `lock_dir`
// (flock on lock_dir/<slot>.lock); released when destroyed (or when the
// holder dies). coved holds one per sandbox for the sandbox's life and, after
// a restart, re-claims the persisted slots with AcquireExact.
class IdSlotLease {
 public:
  // Tries slots starting at hint % kIdSlotCount; kResourceExhausted if none free.
  static Result<IdSlotLease> Acquire(const std::string& lock_dir, uint32_t hint);
  // Claims exactly `slot`; kAlreadyExists if another holder has it.
  static Result<IdSlotLease> AcquireExact(const std::string& lock_dir, uint32_t slot);
  uid_t host_id_base() const { return base_; }
  uint32_t slot() const { return slot_; }

 private:
  IdSlotLease(UniqueFd fd, uint32_t slot, uid_t base) : fd_(std::move(fd)), slot_(slot), base_(base) {}
  UniqueFd fd_;
  uint32_t slot_ = 0;
  uid_t base_ = 0;
};

}  // namespace cove::isolation
