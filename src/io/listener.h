// Listener: a listening TCP socket and its accept loop, shared by every
// listener of coved (API, preview, egress proxy, DNS over TCP).
//
// Each accepted socket goes to `on_accept`, which must not block: it admits
// the connection (ConnectionRegistry) and starts its coroutine, or refuses it.
// The loop never spins:
//   - out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): once a
//     connection is waiting (accept(2) fails so with none waiting too), the
//     registry's longest-idle connection is closed and the accept tried again
//     at once; with nothing idle to close, the loop waits, 10 ms doubling up
//     to 1 s, back to 10 ms once an accept succeeds. Connections wait in the
//     kernel's backlog meanwhile;
//   - an error of one pending connection (ECONNABORTED, EPROTO, EPERM, ...):
//     that connection is gone, the next is accepted at once;
//   - any other error: the same wait as above.
// Failures are logged at most once per 10 s per listener, with the number
// held back in between. Io thread only: Start, Close and the destructor too.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "base/log_throttle.h"
#include "io/asio.h"
#include "io/connection_registry.h"

namespace cove::io {

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  using OnAccept = std::function<void(asio::ip::tcp::socket)>;

  // Opens, binds (SO_REUSEADDR) and listens on `at` now, so that errors show
  // at start-up: null and `ec` set (the failed step's error) on failure.
  // `name` starts its log lines; `shed_from` (may be null) is the registry
  // whose idle connections make room when descriptors run out.
  static std::shared_ptr<Listener> Open(asio::any_io_executor ex, const asio::ip::tcp::endpoint& at, std::string name,
                                        std::shared_ptr<ConnectionRegistry> shed_from,
                                        boost::system::error_code& ec);
  ~Listener();

  // Starts the accept loop (once).
  void Start(OnAccept on_accept);
  // Stops accepting and closes the listening socket; open connections stay.
  // Idempotent.
  void Close();

  asio::ip::tcp::endpoint local_endpoint() const;
  const std::string& name() const { return name_; }

  // What the loop did so far (for tests and diagnostics).
  struct Stats {
    uint64_t accepted = 0;
    uint64_t failures = 0;  // accepts that failed
    uint64_t sheds = 0;     // idle connections closed to make room
    uint64_t waits = 0;     // backoff waits
  };
  const Stats& stats() const { return stats_; }

 private:
  Listener(asio::any_io_executor ex, std::string name, std::shared_ptr<ConnectionRegistry> shed_from);
  static Task<void> Loop(std::shared_ptr<Listener> self);
  void LogFailure(const boost::system::error_code& ec, std::string_view action);

  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer backoff_timer_;
  std::string name_;
  std::shared_ptr<ConnectionRegistry> shed_from_;
  OnAccept on_accept_;
  LogThrottle failures_log_;
  Stats stats_;
  bool started_ = false;
  bool closed_ = false;
};

}  // namespace cove::io
