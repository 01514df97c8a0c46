// EventLoop: a single-threaded epoll loop with token-addressed fd watches
// and monotonic timers. Handlers may add/remove watches and timers (even
// their own) while running: a removed watch is never called again, also
// not for events already returned by the same epoll_wait.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>

#include "sys/unique_fd.h"

namespace cove::agent {

class EventLoop {
 public:
  using Handler = std::function<void(uint32_t events)>;

  EventLoop();
  bool ok() const { return ep_.valid(); }

  // Watches borrowed `fd` (level-triggered). Returns a token (never 0).
  uint64_t Watch(int fd, uint32_t events, Handler h);
  void Modify(uint64_t token, uint32_t events);
  // Temporarily removes the fd from epoll (no events at all, not even HUP)
  // until Resume. Idempotent.
  void Pause(uint64_t token);
  void Resume(uint64_t token);
  // Removes the watch; call before closing the fd. Token 0 is ignored.
  void Unwatch(uint64_t token);

  // Calls fn once at `deadline_ns` (MonotonicNs clock). Returns an id (never 0).
  uint64_t AddTimer(int64_t deadline_ns, std::function<void()> fn);
  void CancelTimer(uint64_t id);

  // Waits up to max_wait_ms (-1: until an event or the next timer) and
  // dispatches events and due timers.
  void RunOnce(int max_wait_ms);

 private:
  struct Watcher {
    int fd;
    uint32_t events;
    bool paused;
    std::shared_ptr<Handler> handler;  // shared: a running handler survives its own Unwatch
  };
  UniqueFd ep_;
  uint64_t next_token_ = 1;
  std::unordered_map<uint64_t, Watcher> watches_;
  std::multimap<int64_t, uint64_t> timers_;  // deadline -> id
  std::unordered_map<uint64_t, std::function<void()>> timer_fns_;
};

}  // namespace cove::agent
