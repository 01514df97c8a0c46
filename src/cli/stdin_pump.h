// A thread that reads stdin (a terminal, a pipe or a regular file: poll()
// works for all three, unlike an asio descriptor) and hands each chunk to a
// sink. It stops reading while more than a bound of bytes is handed over but
// not yet Consumed(), so piping a large file into `cove shell` cannot grow
// memory without limit. Destroying the pump stops and joins the thread.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "sys/unique_fd.h"

namespace cove::cli {

class StdinPump {
 public:
  // Called on the pump's thread: a chunk of input, or "" once at end of
  // input (EOF or a read error such as EIO after a terminal hang-up).
  using Sink = std::function<void(std::string)>;

  StdinPump(int fd, Sink sink, size_t max_in_flight = 1u << 20);
  ~StdinPump();
  StdinPump(const StdinPump&) = delete;
  StdinPump& operator=(const StdinPump&) = delete;

  // n bytes handed to the sink have been dealt with (may be called on any thread).
  void Consumed(size_t n);

 private:
  void Run();

  int fd_;
  Sink sink_;
  size_t max_in_flight_;
  UniqueFd stop_read_, stop_write_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t in_flight_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace cove::cli
