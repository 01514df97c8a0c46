#include "isolation/id_range.h"

#include <fcntl.h>
#include <sys/file.h>

#include "sys/fs.h"

namespace cove::isolation {

Result<uid_t> HostIdBaseForSlot(uint32_t slot) {
  if (slot >= kIdSlotCount) return MakeError(ErrorCode::kInvalidArgument, "id slot out of range");
  return static_cast<uid_t>(kFirstHostIdBase + static_cast<uint64_t>(slot) * kIdRangeSize);
}

Result<uint32_t> SlotForHostIdBase(uid_t base) {
  if (base < kFirstHostIdBase || (base - kFirstHostIdBase) % kIdRangeSize != 0)
    return MakeError(ErrorCode::kInvalidArgument, "host id base is not a slot start");
  uint32_t slot = (base - kFirstHostIdBase) / kIdRangeSize;
  if (slot >= kIdSlotCount) return MakeError(ErrorCode::kInvalidArgument, "host id base too high");
  return slot;
}

std::string IdMapLine(uid_t base) {
  return "0 " + std::to_string(base) + " " + std::to_string(kIdRangeSize) + "\n";
}

Result<IdSlotLease> IdSlotLease::AcquireExact(const std::string& lock_dir, uint32_t slot) {
  COVE_ASSIGN_OR_RETURN(uid_t base, HostIdBaseForSlot(slot));
  COVE_TRY(sys::MkdirAll(lock_dir, 0700));
  std::string path = lock_dir + "/" + std::to_string(slot) + ".lock";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return SysError("open " + path);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return Error{ErrorCode::kAlreadyExists, EWOULDBLOCK, "id slot in use", {}};
    return SysError("flock " + path);
  }
  return IdSlotLease(std::move(fd), slot, base);
}

Result<IdSlotLease> IdSlotLease::Acquire(const std::string& lock_dir, uint32_t hint) {
  COVE_TRY(sys::MkdirAll(lock_dir, 0700));
  for (uint32_t i = 0; i < kIdSlotCount; ++i) {
    uint32_t slot = (hint + i) % kIdSlotCount;
    std::string path = lock_dir + "/" + std::to_string(slot) + ".lock";
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return SysError("open " + path);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) {
      COVE_ASSIGN_OR_RETURN(uid_t base, HostIdBaseForSlot(slot));
      return IdSlotLease(std::move(fd), slot, base);
    }
    if (errno != EWOULDBLOCK) return SysError("flock " + path);
    if (i > 4096) break;  // do not scan the whole space under pathological contention
  }
  return MakeError(ErrorCode::kResourceExhausted, "no free id slot");
}

}  // namespace cove::isolation
