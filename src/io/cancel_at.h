// CancelAt: cancels an I/O object's pending operations when a deadline
// passes, the bounded wait of asio 1.74 (which has no awaitable operators):
//
//   asio::ip::udp::socket sock(ex);
//   CancelAt guard(sock, deadline);   // declared after the object it cancels
//   co_await sock.async_receive(...); // operation_aborted once the deadline passed
//
// Destroying the guard disarms it, even when its timer already fired and the
// completion is still queued, so the object may be destroyed right after.
// Use on the object's executor thread only.
#pragma once

#include <chrono>
#include <memory>

#include "io/asio.h"

namespace cove::io {

template <typename IoObject>
class CancelAt {
 public:
  using Clock = std::chrono::steady_clock;

  CancelAt(IoObject& object, Clock::time_point deadline)
      : timer_(object.get_executor(), deadline), armed_(std::make_shared<bool>(true)) {
    timer_.async_wait([&object, armed = armed_](const boost::system::error_code& ec) {
      if (ec || !*armed) return;
      boost::system::error_code ignored;
      object.cancel(ignored);
    });
  }
  ~CancelAt() {
    *armed_ = false;
    timer_.cancel();
  }
  CancelAt(const CancelAt&) = delete;
  CancelAt& operator=(const CancelAt&) = delete;

  bool expired() const { return Clock::now() >= timer_.expiry(); }

 private:
  asio::steady_timer timer_;
  std::shared_ptr<bool> armed_;
};

}  // namespace cove::io
