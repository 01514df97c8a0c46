// exec_bench: the exec path of cove against the host starting the same shell.
//
//   build/bin/exec_bench [--n N] [--seconds S] [--baseline PATH/TO/coved]...
//
// For each coved (this build's, next to this binary, then every --baseline),
// in one standard-3 sandbox:
//   - sessionless `true` (a new bash each, as /api/execute without a session),
//     p50/p90/p99 over N, and what cove adds over the host's own
//     fork+exec of `bash -c true` measured in the same run;
//   - session exec round trips per second with 1, 8 and 64 concurrent
//     clients, each on its own kept-alive connection and its own session,
//     for S seconds each.
// Prints markdown tables.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_daemon.h"
#include "bench/mini_http.h"
#include "bench/session_round_trips.h"
#include "bench/stats.h"

namespace cove::bench {
namespace {

// The host baseline: fork, exec `bash -c true` with output to /dev/null, wait.
Stats HostBashTrue(int n) {
  std::vector<double> v;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    pid_t pid = fork();
    if (pid == 0) {
      int null = open("/dev/null", O_RDWR);
      dup2(null, 0);
      dup2(null, 1);
      dup2(null, 2);
      execl("/bin/bash", "bash", "-c", "true", static_cast<char*>(nullptr));
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    v.push_back(Ms(Clock::now() - t0));
  }
  return Summarize(v);
}

struct Result {
  std::string coved;
  Stats sessionless;
  double rps[3] = {0, 0, 0};
};

constexpr int kClients[3] = {1, 8, 64};
const char kSandbox[] = "/v1/sandboxes/bench-exec";

Result Measure(const std::string& coved, int n, int seconds) {
  Result r{coved.empty() ? "this build" : coved, {}, {}};
  BenchDaemon d(coved);
  MiniHttp h = d.Client();
  if (h.Call("POST", "/v1/sandboxes", R"({"id":"bench-exec","instanceType":"standard-3"})").status != 201) {
    fprintf(stderr, "exec_bench: create failed\n");
    exit(1);
  }
  const std::string sessionless = R"({"command":"true","sessionId":"__DISABLE_SESSION__"})";
  for (int i = 0; i < 20; ++i) h.Call("POST", std::string(kSandbox) + "/api/execute", sessionless);  // warm caches
  std::vector<double> v;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    if (h.Call("POST", std::string(kSandbox) + "/api/execute", sessionless).status == 200)
      v.push_back(Ms(Clock::now() - t0));
  }
  r.sessionless = Summarize(v);
  for (int i = 0; i < 3; ++i) r.rps[i] = SessionRoundTrips(d, std::vector<std::string>(kClients[i], kSandbox), seconds);
  h.Call("DELETE", kSandbox);
  return r;
}

int Main(int argc, char** argv) {
  int n = 500, seconds = 5;
  std::vector<std::string> coveds = {""};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--n") n = std::atoi(argv[i + 1]);
    else if (a == "--seconds") seconds = std::atoi(argv[i + 1]);
    else if (a == "--baseline") coveds.push_back(argv[i + 1]);
    else {
      fprintf(stderr, "usage: exec_bench [--n N] [--seconds S] [--baseline PATH/TO/coved]...\n");
      return 2;
    }
  }
  std::vector<Result> results;
  for (const auto& c : coveds) results.push_back(Measure(c, n, seconds));
  Stats host = HostBashTrue(n);  // after the daemons, on the same warmed caches

  printf("host fork+exec `bash -c true`: p50 / p90 / p99 = %.3f / %.3f / %.3f ms (n=%zu)\n\n", host.p50, host.p90,
         host.p99, host.n);
  printf("| coved | sessionless `true` p50 / p90 / p99 ms | added over host bash p50 ms | session exec/s, 1 client "
         "| 8 clients | 64 clients |\n|---|---|---|---|---|---|\n");
  for (const auto& r : results)
    printf("| %s | %.3f / %.3f / %.3f | %.3f | %.0f | %.0f | %.0f |\n", r.coved.c_str(), r.sessionless.p50,
           r.sessionless.p90, r.sessionless.p99, r.sessionless.p50 - host.p50, r.rps[0], r.rps[1], r.rps[2]);
  return 0;
}

}  // namespace
}  // namespace cove::bench

int main(int argc, char** argv) { return cove::bench::Main(argc, argv); }
