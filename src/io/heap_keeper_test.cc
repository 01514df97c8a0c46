// KeepHeapForTransfers in this process: a large block comes from the heap
// (no mmap of its own, so freeing it keeps its pages), and the free heap goes
// back to the kernel once it has stayed unchanged for the idle period.
#include "io/heap_keeper.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <chrono>
#include <cstring>
#include <memory>

namespace cove::io {
namespace {

TEST(HeapKeeper, KeepsLargeBlocksInTheHeapAndTrimsWhenIdle) {
  asio::io_context io;
  KeepHeapForTransfers(io.get_executor(), std::chrono::milliseconds(50));
  constexpr size_t kBlock = 40 << 20;  // above glibc's largest mmap threshold
  {
    std::unique_ptr<char[]> block(new char[kBlock]);
    memset(block.get(), 1, kBlock);
    EXPECT_EQ(mallinfo2().hblkhd, 0u) << "the block was mapped apart from the heap";
  }
  EXPECT_GE(mallinfo2().fordblks, kBlock) << "freeing the block gave its memory back at once";
  io.run_for(std::chrono::milliseconds(300));  // a few idle periods
  EXPECT_LT(mallinfo2().fordblks, kBlock / 2) << "the idle heap was not trimmed";
}

}  // namespace
}  // namespace cove::io
