// SplicePump: one direction of a TCP-to-TCP tunnel that never copies the bytes
// through user space: splice(2) moves them from the source socket into a pipe
// and from the pipe into the destination socket. Both sockets are put in
// non-blocking mode; the pump waits for readiness with Asio
// (async_wait(wait_read / wait_write)), so it runs on the sockets' executor
// like any other coroutine. Only for plain sockets: a TLS stream (or anything
// else with bytes buffered in user space) needs a read/write loop.
//
//   auto pump = SplicePump::Open();                 // nullopt: no pipe (EMFILE...)
//   error_code ec = co_await pump->Run(from, to, [&] { touch(); });
//
// Run returns at the source's EOF (an empty error_code; the caller passes the
// half-close on) or at the first error of either side (operation_aborted once
// either socket is closed, which is how the owner stops it). At most one Run
// per pump at a time.
#pragma once

#include <functional>
#include <optional>

#include "io/asio.h"

namespace cove::io {

class SplicePump {
 public:
  static std::optional<SplicePump> Open();
  SplicePump(SplicePump&& other) noexcept;
  SplicePump& operator=(SplicePump&& other) noexcept;
  SplicePump(const SplicePump&) = delete;
  ~SplicePump();

  // `progress` runs after every move of bytes (an idle timer's touch).
  Task<boost::system::error_code> Run(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to,
                                      std::function<void()> progress);

 private:
  SplicePump(int read_end, int write_end, size_t capacity)
      : read_end_(read_end), write_end_(write_end), capacity_(capacity) {}
  int read_end_ = -1;
  int write_end_ = -1;
  size_t capacity_ = 0;  // of the pipe
};

}  // namespace cove::io
