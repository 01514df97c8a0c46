#include "io/heap_keeper.h"

#include <malloc.h>

#include <memory>

namespace cove::io {
namespace {

constexpr size_t kTrimThreshold = 256 << 20;
constexpr size_t kTrimWhenFree = 16 << 20;   // free heap worth giving back

struct Trimmer : std::enable_shared_from_this<Trimmer> {
  Trimmer(asio::any_io_executor ex, std::chrono::milliseconds i) : timer(ex), idle(i) {}

  void Arm() {
    timer.expires_after(idle);
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      size_t free_bytes = mallinfo2().fordblks;
      // Unchanged over a whole period: nothing was allocated or freed, the burst is over.
      if (free_bytes >= kTrimWhenFree && free_bytes == self->last_free) {
        malloc_trim(0);
        free_bytes = mallinfo2().fordblks;
      }
      self->last_free = free_bytes;
      self->Arm();
    });
  }

  asio::steady_timer timer;
  std::chrono::milliseconds idle;
  size_t last_free = 0;
};

}  // namespace

void KeepHeapForTransfers(asio::any_io_executor ex, std::chrono::milliseconds idle) {
  // No mmap of its own for large blocks (glibc caps the threshold at 32 MiB, below a
  // 32 MiB file's buffers): glibc still maps what the heap cannot grow to hold.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
  std::make_shared<Trimmer>(std::move(ex), idle)->Arm();
}

}  // namespace cove::io
