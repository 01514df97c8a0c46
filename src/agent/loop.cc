#include "agent/loop.h"

#include <sys/epoll.h>

#include <cerrno>
#include <vector>

#include "base/time.h"

namespace cove::agent {

EventLoop::EventLoop() : ep_(epoll_create1(EPOLL_CLOEXEC)) {}

uint64_t EventLoop::Watch(int fd, uint32_t events, Handler h) {
  uint64_t token = next_token_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  if (epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return 0;
  watches_.emplace(token, Watcher{fd, events, false, std::make_shared<Handler>(std::move(h))});
  return token;
}

void EventLoop::Modify(uint64_t token, uint32_t events) {
  auto it = watches_.find(token);
  if (it == watches_.end() || it->second.events == events) return;
  it->second.events = events;
  if (it->second.paused) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  epoll_ctl(ep_.get(), EPOLL_CTL_MOD, it->second.fd, &ev);
}

void EventLoop::Pause(uint64_t token) {
  auto it = watches_.find(token);
  if (it == watches_.end() || it->second.paused) return;
  epoll_ctl(ep_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
  it->second.paused = true;
}

void EventLoop::Resume(uint64_t token) {
  auto it = watches_.find(token);
  if (it == watches_.end() || !it->second.paused) return;
  epoll_event ev{};
  ev.events = it->second.events;
  ev.data.u64 = token;
  epoll_ctl(ep_.get(), EPOLL_CTL_ADD, it->second.fd, &ev);
  it->second.paused = false;
}

void EventLoop::Unwatch(uint64_t token) {
  if (token == 0) return;
  auto it = watches_.find(token);
  if (it == watches_.end()) return;
  if (!it->second.paused) epoll_ctl(ep_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
  watches_.erase(it);
}

uint64_t EventLoop::AddTimer(int64_t deadline_ns, std::function<void()> fn) {
  uint64_t id = next_token_++;
  timers_.emplace(deadline_ns, id);
  timer_fns_.emplace(id, std::move(fn));
  return id;
}

void EventLoop::CancelTimer(uint64_t id) { timer_fns_.erase(id); }

void EventLoop::RunOnce(int max_wait_ms) {
  // Drop cancelled timers at the front, then bound the wait by the next one.
  while (!timers_.empty() && !timer_fns_.count(timers_.begin()->second)) timers_.erase(timers_.begin());
  int timeout = max_wait_ms;
  if (!timers_.empty()) {
    int64_t wait_ns = timers_.begin()->first - MonotonicNs();
    int t = wait_ns <= 0 ? 0 : static_cast<int>(std::min<int64_t>((wait_ns + 999999) / 1000000, 1 << 30));
    if (timeout < 0 || t < timeout) timeout = t;
  }
  epoll_event evs[64];
  int n = epoll_wait(ep_.get(), evs, 64, timeout);
  for (int i = 0; i < n; ++i) {
    auto it = watches_.find(evs[i].data.u64);
    if (it == watches_.end()) continue;
    // Keep the handler alive: it may unwatch itself.
    std::shared_ptr<Handler> h = it->second.handler;
    (*h)(evs[i].events);
  }
  int64_t now = MonotonicNs();
  while (!timers_.empty() && timers_.begin()->first <= now) {
    uint64_t id = timers_.begin()->second;
    timers_.erase(timers_.begin());
    auto f = timer_fns_.find(id);
    if (f == timer_fns_.end()) continue;
    auto fn = std::move(f->second);
    timer_fns_.erase(f);
    fn();
  }
}

}  // namespace cove::agent
