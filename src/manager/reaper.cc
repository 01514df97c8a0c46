#include "manager/reaper.h"

#include "base/log.h"
#include "io/off_thread.h"

namespace cove {

namespace {
constexpr auto kFirstRetry = std::chrono::milliseconds(250);
constexpr auto kLongestRetry = std::chrono::seconds(30);
constexpr auto kRetryWhenAwaited = std::chrono::milliseconds(200);
}  // namespace

Reaper::Reaper(asio::any_io_executor ex, asio::thread_pool& pool, SandboxHost* host)
    : ex_(std::move(ex)), pool_(pool), host_(host), alive_(std::make_shared<bool>(true)) {}

Reaper::~Reaper() {
  *alive_ = false;
  for (auto& [_, job] : jobs_) {
    job->wake.Notify();
    job->finished.Notify();
  }
}

Reaper::Clock::duration Reaper::Backoff(int attempt) {
  if (attempt <= 1) return Clock::duration::zero();
  Clock::duration d = kFirstRetry;
  for (int i = 2; i < attempt && d < kLongestRetry; ++i) d *= 2;
  return std::min<Clock::duration>(d, kLongestRetry);
}

void Reaper::Reap(const SandboxRecord& record, std::function<void()> done) {
  if (auto it = jobs_.find(record.id); it != jobs_.end()) {
    if (done) it->second->done.push_back(std::move(done));
    return;
  }
  auto job = std::make_shared<Job>(ex_);
  job->record = record;
  if (done) job->done.push_back(std::move(done));
  jobs_[record.id] = job;
  asio::co_spawn(ex_, Run(job), asio::detached);
}

Task<bool> Reaper::Wait(const std::string& id, Clock::time_point deadline) {
  auto alive = alive_;
  for (;;) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) co_return true;
    auto job = it->second;
    ++job->waiters;
    job->wake.Notify();
    bool woken = co_await job->finished.Wait(deadline);
    if (!*alive) co_return false;
    --job->waiters;
    if (!woken) co_return !jobs_.count(id);
  }
}

Task<void> Reaper::Drain(Clock::time_point deadline) {
  auto alive = alive_;
  while (*alive && !jobs_.empty() && Clock::now() < deadline) co_await Wait(jobs_.begin()->first, deadline);
}

Task<void> Reaper::Run(std::shared_ptr<Job> job) {
  auto alive = alive_;
  asio::thread_pool& pool = pool_;
  asio::any_io_executor ex = ex_;
  SandboxHost* host = host_;
  const std::string id = job->record.id;
  for (int attempt = 1;; ++attempt) {
    if (attempt > 1) {
      auto delay = job->waiters > 0 ? std::min<Clock::duration>(Backoff(attempt), kRetryWhenAwaited) : Backoff(attempt);
      co_await job->wake.Wait(Clock::now() + delay);
      if (!*alive) co_return;
    }
    const SandboxRecord rec = job->record;
    auto destroy = [host, rec] { return host->Destroy(rec); };
    Status s = co_await OffThread<Status>(pool, ex, destroy);
    if (!*alive) co_return;
    if (s.ok()) {
      if (attempt > 1) log::Info("sandbox {}: cleaned up after {} attempts", id, attempt);
      auto done = std::move(job->done);
      jobs_.erase(id);
      for (auto& fn : done) fn();
      job->finished.Notify();
      co_return;
    }
    // Bounded logging: the 1st, 2nd, 4th, 8th... failure.
    if ((attempt & (attempt - 1)) == 0)
      log::Warn("sandbox {}: clean-up attempt {} failed (retrying in the background): {}", id, attempt,
                s.error().ToString());
  }
}

}  // namespace cove
