// core_bench: creates, exec round trips and idle density of cove sandboxes,
// measured against bubblewrap and plain fork+exec in the same run.
//
//   build/bin/core_bench [--seq N] [--concurrent N] [--exec N] [--idle N] [--fit N]
//
// Starts its own coved (next to this binary) on a free port with a temporary
// state directory, prints a markdown table, and removes everything it made.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_daemon.h"
#include "bench/mini_http.h"
#include "bench/stats.h"
#include "isolation/cgroup.h"

namespace cove::bench {
namespace {

using Json = nlohmann::json;

// Runs argv to completion; returns its exit status (-1 if it could not start).
int RunQuiet(const std::vector<std::string>& argv) {
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 1);
    dup2(null, 2);
    std::vector<char*> a;
    for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    execvp(a[0], a.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Stats TimeCommand(const std::vector<std::string>& argv, int n) {
  std::vector<double> v;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    if (RunQuiet(argv) != 0) return {};
    v.push_back(Ms(Clock::now() - t0));
  }
  return Summarize(v);
}

long MemAvailableKiB() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  long value;
  std::string unit;
  while (in >> key >> value >> unit)
    if (key == "MemAvailable:") return value;
  return 0;
}

// Bytes charged to the memory cgroups of the sandboxes of the coved whose
// state dir is `state` (its group sits under this process's memory cgroup).
long SandboxCgroupBytes(const std::string& state) {
  std::string group = isolation::CgroupGroupForState(state);
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    auto pos = line.find(":memory:");
    std::string path;
    if (pos != std::string::npos) path = "/sys/fs/cgroup/memory" + line.substr(pos + 8) + "/" + group + "/memory.usage_in_bytes";
    else if (line.rfind("0::", 0) == 0) path = "/sys/fs/cgroup" + line.substr(3) + "/" + group + "/memory.current";
    else continue;
    std::ifstream f(path);
    long v = 0;
    if (f >> v) return v;
  }
  return -1;
}

long RssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    long v;
    if (key == "VmRSS:" && in >> v) return v;
  }
  return 0;
}

const char kTrueSessionless[] = R"({"command":"true","sessionId":"__DISABLE_SESSION__"})";

// POST create + first command; returns ms, or -1 on failure.
double CreateAndRun(MiniHttp& h, const std::string& id) {
  auto t0 = Clock::now();
  auto c = h.Call("POST", "/v1/sandboxes", Json{{"id", id}, {"instanceType", "lite"}}.dump());
  if (c.status != 201) {
    fprintf(stderr, "create %s: %d %s\n", id.c_str(), c.status, c.body.c_str());
    return -1;
  }
  auto e = h.Call("POST", "/v1/sandboxes/" + id + "/api/execute", kTrueSessionless);
  if (e.status != 200) {
    fprintf(stderr, "first command in %s: %d %s\n", id.c_str(), e.status, e.body.c_str());
    return -1;
  }
  return Ms(Clock::now() - t0);
}

void Row(const char* what, const Stats& cove, const char* base_name, const Stats& base, const char* goal) {
  printf("| %s | %zu | %.2f / %.2f / %.2f | %s | %.2f / %.2f / %.2f | %s |\n", what, cove.n, cove.p50, cove.p90,
         cove.p99, base_name, base.p50, base.p90, base.p99, goal);
}

int Main(int argc, char** argv) {
  std::map<std::string, int> opt = {{"--seq", 100}, {"--concurrent", 50}, {"--exec", 1000}, {"--idle", 500}, {"--fit", 0}};
  for (int i = 1; i + 1 < argc; i += 2) opt[argv[i]] = std::atoi(argv[i + 1]);
  BenchDaemon d;
  MiniHttp h = d.Client();

  // Baselines: plain fork+exec, and bubblewrap with comparable namespaces.
  Stats fork_exec = TimeCommand({"/bin/true"}, opt["--seq"]);
  Stats bwrap = TimeCommand({"bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr", "--symlink",
                             "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                             "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/bin/true"},
                            opt["--seq"]);

  std::vector<double> seq;
  for (int i = 0; i < opt["--seq"]; ++i) {
    std::string id = "bench-seq-" + std::to_string(i);
    double ms = CreateAndRun(h, id);
    if (ms >= 0) seq.push_back(ms);
    h.Call("DELETE", "/v1/sandboxes/" + id);
  }

  std::vector<double> conc(opt["--concurrent"], -1);
  {
    std::vector<std::thread> threads;
    for (int i = 0; i < opt["--concurrent"]; ++i)
      threads.emplace_back([&, i] {
        MiniHttp c = d.Client();
        conc[i] = CreateAndRun(c, "bench-conc-" + std::to_string(i));
      });
    for (auto& t : threads) t.join();
    for (int i = 0; i < opt["--concurrent"]; ++i) h.Call("DELETE", "/v1/sandboxes/bench-conc-" + std::to_string(i));
    conc.erase(std::remove(conc.begin(), conc.end(), -1.0), conc.end());
  }

  // 2 vCPUs: the 1/4 vCPU of the default type would throttle a tight loop of commands.
  h.Call("POST", "/v1/sandboxes", R"({"id":"bench-exec","instanceType":"standard-3"})");
  std::vector<double> sessionless, session;
  h.Call("POST", "/v1/sandboxes/bench-exec/api/execute", R"({"command":"true","sessionId":"s1"})");
  for (int i = 0; i < opt["--exec"]; ++i) {
    auto t0 = Clock::now();
    if (h.Call("POST", "/v1/sandboxes/bench-exec/api/execute", kTrueSessionless).status == 200)
      sessionless.push_back(Ms(Clock::now() - t0));
    t0 = Clock::now();
    if (h.Call("POST", "/v1/sandboxes/bench-exec/api/execute", R"({"command":"true","sessionId":"s1"})").status == 200)
      session.push_back(Ms(Clock::now() - t0));
  }
  h.Call("DELETE", "/v1/sandboxes/bench-exec");

  // Host memory per idle sandbox.
  long before = MemAvailableKiB();
  long cg_before = SandboxCgroupBytes(d.state());
  long rss_before = RssKiB(d.pid());
  int idle_ok = 0;
  for (int i = 0; i < opt["--idle"]; ++i)
    if (h.Call("POST", "/v1/sandboxes", Json{{"id", "bench-idle-" + std::to_string(i)}, {"instanceType", "lite"}}.dump())
            .status == 201)
      ++idle_ok;
  std::this_thread::sleep_for(std::chrono::seconds(2));
  long after = MemAvailableKiB();
  double per_idle_mib = idle_ok ? (before - after) / 1024.0 / idle_ok : 0;
  double cg_per_idle_mib = idle_ok ? (SandboxCgroupBytes(d.state()) - cg_before) / 1048576.0 / idle_ok : 0;
  double coved_per_idle_kib = idle_ok ? double(RssKiB(d.pid()) - rss_before) / idle_ok : 0;

  int fit = idle_ok;
  if (opt["--fit"] > 0) {
    for (int i = idle_ok; i < opt["--fit"]; ++i) {
      if (h.Call("POST", "/v1/sandboxes", Json{{"id", "bench-idle-" + std::to_string(i)}, {"instanceType", "lite"}}.dump())
              .status != 201)
        break;
      fit = i + 1;
    }
  }

  printf("| measure | n | cove p50 / p90 / p99 ms | baseline | baseline p50 / p90 / p99 ms | goal (p50 / p99) |\n");
  printf("|---|---|---|---|---|---|\n");
  Row("create to first command, sequential", Summarize(seq), "bwrap --unshare-all true", bwrap, "<= 10 / 25");
  Row("create to first command, 50 concurrent", Summarize(conc), "fork+exec true", fork_exec, "p99 <= 100");
  Row("exec `true`, sessionless", Summarize(sessionless), "fork+exec true", fork_exec, "<= 2 / 5");
  Row("exec `true`, in a session", Summarize(session), "fork+exec true", fork_exec, "<= 2 / 5");
  printf("\nidle sandboxes: %d created. Host memory per idle sandbox (goal <= 2 MiB):\n", idle_ok);
  printf("  charged to the sandboxes' memory cgroups: %.2f MiB each\n", cg_per_idle_mib);
  printf("  coved's own RSS growth: %.1f KiB each\n", coved_per_idle_kib);
  printf("  MemAvailable delta (includes unaccounted kernel memory and other activity): %.2f MiB each\n",
         per_idle_mib);
  if (opt["--fit"] > 0)
    printf("idle sandboxes that fit: %d%s\n", fit, fit >= opt["--fit"] ? " (the run's limit; none failed)" : "");
  return 0;
}

}  // namespace
}  // namespace cove::bench

int main(int argc, char** argv) { return cove::bench::Main(argc, argv); }
