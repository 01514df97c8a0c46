// cores_bench: does coved's work grow with its io threads (io/shards.h)?
//
//   build/bin/cores_bench [--seconds S] [--sandboxes K] [--threads T1,T2,...]
//
// For each --io-threads value (default: 1 and this machine's CPU count), one
// coved of this build with K standard-1 sandboxes:
//   - session exec round trips/s: 1 client; 64 clients over the K sandboxes
//     (each client its own connection and session); 64 clients on one sandbox;
//   - streaming: K clients at once, each reading 64 MB of output of a command
//     in its own sandbox as SSE (/api/execute/stream), in MB/s of output.
// The machine's CPUs are shared with the sandboxes' shells and agents, so the
// gain is bounded by what coved itself spends (see docs/benchmarks.md).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_daemon.h"
#include "bench/mini_http.h"
#include "bench/session_round_trips.h"
#include "bench/stats.h"

namespace cove::bench {
namespace {

std::string Sandbox(int i) { return "/v1/sandboxes/bench-cores-" + std::to_string(i); }

// Round trips per second of `clients` clients spread over `sandboxes` sandboxes.
double RoundTrips(const BenchDaemon& d, int clients, int sandboxes, int seconds) {
  std::vector<std::string> paths;
  for (int i = 0; i < clients; ++i) paths.push_back(Sandbox(i % sandboxes));
  return SessionRoundTrips(d, paths, seconds);
}

// MB/s of command output, `sandboxes` streams at once, 64 MB each.
double Streaming(const BenchDaemon& d, int sandboxes) {
  constexpr long kBytes = 64L << 20;
  const std::string body =
      R"({"command":"head -c )" + std::to_string(kBytes) + R"( /dev/zero | tr '\\0' a","sessionId":"stream"})";
  std::atomic<long> received{0};
  std::vector<std::thread> threads;
  auto t0 = Clock::now();
  for (int i = 0; i < sandboxes; ++i)
    threads.emplace_back([&, i] {
      MiniHttp c = d.Client();
      auto r = c.Call("POST", Sandbox(i) + "/api/execute/stream", body);
      if (r.status != 200 || r.body.size() < kBytes) {
        fprintf(stderr, "cores_bench: stream %d: status %d, %zu bytes\n", i, r.status, r.body.size());
        exit(1);
      }
      received += kBytes;
    });
  for (auto& t : threads) t.join();
  return received.load() / 1e6 / (Ms(Clock::now() - t0) / 1000);
}

struct Row {
  int threads;
  double single, spread, one, stream;
};

Row Measure(int io_threads, int sandboxes, int seconds) {
  BenchDaemon d("", {"--io-threads", std::to_string(io_threads)});
  MiniHttp h = d.Client();
  for (int i = 0; i < sandboxes; ++i) {
    std::string create = R"({"id":"bench-cores-)" + std::to_string(i) + R"(","instanceType":"standard-1"})";
    if (h.Call("POST", "/v1/sandboxes", create).status != 201) {
      fprintf(stderr, "cores_bench: create failed\n");
      exit(1);
    }
  }
  Row r{io_threads, 0, 0, 0, 0};
  r.single = RoundTrips(d, 1, 1, seconds);
  r.spread = RoundTrips(d, 64, sandboxes, seconds);
  r.one = RoundTrips(d, 64, 1, seconds);
  r.stream = Streaming(d, sandboxes);
  return r;
}

int Main(int argc, char** argv) {
  int seconds = 5, sandboxes = 8;
  std::vector<int> counts = {1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN))};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--seconds") {
      seconds = std::atoi(argv[i + 1]);
    } else if (a == "--sandboxes") {
      sandboxes = std::atoi(argv[i + 1]);
    } else if (a == "--threads") {
      counts.clear();
      std::stringstream list(argv[i + 1]);
      for (std::string t; std::getline(list, t, ',');) counts.push_back(std::atoi(t.c_str()));
    } else {
      fprintf(stderr, "usage: cores_bench [--seconds S] [--sandboxes K] [--threads T1,T2,...]\n");
      return 2;
    }
  }
  std::vector<Row> rows;
  for (int t : counts) rows.push_back(Measure(t, sandboxes, seconds));
  printf("| coved --io-threads | exec/s, 1 client | exec/s, 64 clients over %d sandboxes | exec/s, 64 clients on 1 "
         "sandbox | output streamed, %d sandboxes at once, MB/s |\n|---|---|---|---|---|\n",
         sandboxes, sandboxes);
  for (const auto& r : rows)
    printf("| %d | %.0f | %.0f | %.0f | %.0f |\n", r.threads, r.single, r.spread, r.one, r.stream);
  printf("\n%ld CPUs; load before the run: see /proc/loadavg\n", sysconf(_SC_NPROCESSORS_ONLN));
  return 0;
}

}  // namespace
}  // namespace cove::bench

int main(int argc, char** argv) { return cove::bench::Main(argc, argv); }
