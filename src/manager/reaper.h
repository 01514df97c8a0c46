// Reaper: finishes removing sandboxes in the background. Whatever is left of a
// sandbox (processes, cgroups, layer, agent socket, network) is removed by
// SandboxHost::Destroy; when that fails (pid 1 or the cgroup slow to die, e.g.
// under memory pressure) the reaper tries again with backoff until it is all
// gone, logging only the first failure and then at every doubling of the
// attempts. Nothing is forgotten if coved stops first: the caller keeps the
// sandbox's record (state "deleting" or "failed") so the next start reaps again.
//
// Threading: all methods run on the io executor; Destroy runs on the pool.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/async_signal.h"
#include "manager/sandbox_host.h"

namespace cove {

class Reaper {
 public:
  using Clock = AsyncSignal::Clock;
  // pool and host are borrowed and must outlive the reaper's work.
  Reaper(asio::any_io_executor ex, asio::thread_pool& pool, SandboxHost* host);
  ~Reaper();

  // Starts removing what is left of `record`, or joins the removal already
  // under way for its id. `done` runs on the io thread once nothing is left.
  void Reap(const SandboxRecord& record, std::function<void()> done = nullptr);
  // True while something of `id` is still being removed.
  bool Busy(const std::string& id) const { return jobs_.count(id) != 0; }
  // Waits until nothing of `id` is left (true) or the deadline passes (false).
  // A waiter makes the reaper retry at once instead of after its backoff.
  Task<bool> Wait(const std::string& id, Clock::time_point deadline);
  bool empty() const { return jobs_.empty(); }
  // Waits until every removal is done or the deadline passes (coved stopping).
  Task<void> Drain(Clock::time_point deadline);

  // The delay before attempt `attempt` (1-based; the first is immediate).
  static Clock::duration Backoff(int attempt);

 private:
  struct Job {
    explicit Job(asio::any_io_executor ex) : wake(ex), finished(ex) {}
    SandboxRecord record;
    std::vector<std::function<void()>> done;
    AsyncSignal wake;      // a waiter wants a retry now
    AsyncSignal finished;  // nothing is left
    int waiters = 0;       // Wait() calls in progress: retry without the long backoff
  };
  Task<void> Run(std::shared_ptr<Job> job);

  asio::any_io_executor ex_;
  asio::thread_pool& pool_;
  SandboxHost* host_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;
  std::shared_ptr<bool> alive_;  // false once the reaper is destroyed
};

}  // namespace cove
