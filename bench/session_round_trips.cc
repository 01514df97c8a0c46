#include "bench/session_round_trips.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "bench/stats.h"

namespace cove::bench {

double SessionRoundTrips(const BenchDaemon& d, const std::vector<std::string>& sandbox_paths, int seconds) {
  const size_t clients = sandbox_paths.size();
  std::vector<MiniHttp> conns;
  std::vector<std::string> paths, bodies;
  for (size_t i = 0; i < clients; ++i) {
    conns.push_back(d.Client());
    paths.push_back(sandbox_paths[i] + "/api/execute");
    bodies.push_back(R"({"command":"true","sessionId":"c)" + std::to_string(i) + "\"}");
    if (conns.back().Call("POST", paths.back(), bodies.back()).status != 200) {
      fprintf(stderr, "session %zu did not start\n", i);
      exit(1);
    }
  }
  std::atomic<long> done{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (size_t i = 0; i < clients; ++i)
    threads.emplace_back([&, i] {
      while (!stop.load(std::memory_order_relaxed))
        if (conns[i].Call("POST", paths[i], bodies[i]).status == 200) ++done;
    });
  auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  long n = done.load();
  double elapsed = Ms(Clock::now() - t0) / 1000;
  stop = true;
  for (auto& t : threads) t.join();
  return n / elapsed;
}

}  // namespace cove::bench
