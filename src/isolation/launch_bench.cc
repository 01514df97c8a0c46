// isolation_launch_bench: how long creating and destroying a sandbox takes,
// in-process as coved does it (cgroups, layer store and seccomp program set
// up once). Prints a table; not a test.
//
//   isolation_launch_bench [iterations] [state_dir]
#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "base/log.h"
#include "isolation/cgroup.h"
#include "isolation/default_image.h"
#include "isolation/id_range.h"
#include "isolation/layer_store.h"
#include "isolation/running_sandbox.h"
#include "sys/fs.h"

using namespace cove;
using namespace cove::isolation;
using Clock = std::chrono::steady_clock;

namespace {

struct Stats {
  std::vector<double> v;
  double P(double q) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
  }
};

// CPU time of this process and its reaped children (the sandboxes), user + system.
double CpuMs() {
  double ms = 0;
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    rusage ru{};
    getrusage(who, &ru);
    ms += (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
  }
  return ms;
}

double Ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 100;
  std::string state = argc > 2 ? argv[2] : "/tmp/cove-launch-bench";
  log::SetLevel(log::Level::kWarn);
  auto cg = CgroupManager::OpenHost(CgroupGroupForState(state));
  auto ls = LayerStore::Open(state);
  auto img = EnsureDefaultImage(state + "/images");
  auto lease = IdSlotLease::Acquire(kDefaultIdSlotLockDir, 4000);
  if (!cg.ok() || !ls.ok() || !img.ok() || !lease.ok()) {
    std::fprintf(stderr, "setup failed\n");
    return 1;
  }
  IsolationHost host{&*cg, &*ls};

  // A pooled network namespace, as coved's net/ layer will provide.
  UniqueFd pooled;
  std::thread([&] {
    if (unshare(CLONE_NEWNET) == 0) pooled.Reset(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  }).join();

  struct Variant {
    const char* name;
    bool pooled_netns;
    bool idmap;
  };
  std::printf("%-30s %8s %8s %8s %8s | %8s %8s %8s %8s %8s | %8s %8s | %6s\n", "variant (ms)", "create50", "create90",
              "create99", "exit50", "layer", "cgroup", "clone", "parent", "child", "destr50", "destr99", "cpu");
  for (Variant var : {Variant{"new netns, idmapped image", false, true},
                      Variant{"pooled netns, idmapped image", true, true},
                      Variant{"pooled netns, no idmap", true, false}}) {
    Stats create, exited, destroy, layer, cgroup, clone, parent, child;
    const double cpu0 = CpuMs();
    for (int i = 0; i < n; ++i) {
      SandboxSpec spec;
      spec.id = "bench-" + std::to_string(i);
      spec.host_id_base = lease->host_id_base();
      spec.image = *img;
      spec.argv = {"/bin/true"};
      spec.netns_fd = var.pooled_netns ? pooled.get() : -1;
      CreateOptions::Timings t;
      CreateOptions co;
      co.idmap_image = var.idmap;
      co.timings = &t;
      auto t0 = Clock::now();
      auto rt = RunningSandbox::Create(host, spec, {}, co);
      auto t1 = Clock::now();
      if (!rt.ok()) {
        std::fprintf(stderr, "create: %s\n", rt.error().ToString().c_str());
        return 1;
      }
      (void)rt->WaitExit(std::chrono::seconds(10));
      auto t2 = Clock::now();
      auto d = rt->Destroy();
      auto t3 = Clock::now();
      if (!d.ok()) {
        std::fprintf(stderr, "destroy: %s\n", d.error().ToString().c_str());
        return 1;
      }
      create.v.push_back(Ms(t0, t1));
      exited.v.push_back(Ms(t0, t2));
      destroy.v.push_back(Ms(t2, t3));
      layer.v.push_back(t.layer_us / 1000);
      cgroup.v.push_back(t.cgroup_us / 1000);
      clone.v.push_back(t.launch.clone_us / 1000);
      parent.v.push_back(t.launch.parent_us / 1000);
      child.v.push_back(t.launch.child_us / 1000);
    }
    const double cpu_each = (CpuMs() - cpu0) / n;
    std::printf("%-30s %8.2f %8.2f %8.2f %8.2f | %8.2f %8.2f %8.2f %8.2f %8.2f | %8.2f %8.2f | %6.2f\n", var.name,
                create.P(0.5), create.P(0.9), create.P(0.99), exited.P(0.5), layer.P(0.5), cgroup.P(0.5),
                clone.P(0.5), parent.P(0.5), child.P(0.5), destroy.P(0.5), destroy.P(0.99), cpu_each);
  }
  // 50 creates at once (pooled netns), each from its own thread, as coved under a burst.
  {
    constexpr int kConc = 50;
    std::vector<IdSlotLease> leases;
    for (int i = 0; i < kConc; ++i) {
      auto l = IdSlotLease::Acquire(kDefaultIdSlotLockDir, 5000 + i);
      if (!l.ok()) return 1;
      leases.push_back(std::move(*l));
    }
    Stats conc, clayer, ccg, cclone, cparent, cchild;
    std::mutex mu;
    for (int round = 0; round < std::max(1, n / 50); ++round) {
      std::vector<std::thread> ts;
      std::atomic<int> ready{0}, done{0};
      for (int i = 0; i < kConc; ++i) {
        ts.emplace_back([&, i] {
          SandboxSpec spec;
          spec.id = "bench-c" + std::to_string(i);
          spec.host_id_base = leases[i].host_id_base();
          spec.image = *img;
          spec.argv = {"/bin/sleep", "30"};  // stays up like an agent; destroyed after the burst
          spec.netns_fd = pooled.get();
          ++ready;
          while (ready.load() < kConc) std::this_thread::yield();
          CreateOptions::Timings t;
          CreateOptions co;
          co.timings = &t;
          auto t0 = Clock::now();
          auto rt = RunningSandbox::Create(host, spec, {}, co);
          auto t1 = Clock::now();
          if (!rt.ok()) return;
          {
            std::lock_guard lock(mu);
            conc.v.push_back(Ms(t0, t1));
            clayer.v.push_back(t.layer_us / 1000);
            ccg.v.push_back(t.cgroup_us / 1000);
            cclone.v.push_back(t.launch.clone_us / 1000);
            cparent.v.push_back(t.launch.parent_us / 1000);
            cchild.v.push_back(t.launch.child_us / 1000);
          }
          ++done;
          while (done.load() < kConc) std::this_thread::sleep_for(std::chrono::milliseconds(1));
          (void)rt->Destroy();
        });
      }
      for (auto& t : ts) t.join();
    }
    std::printf("%-30s %8.2f %8.2f %8.2f %8s | %8.2f %8.2f %8.2f %8.2f %8.2f   (%zu creates, 50 at once, pooled netns,"
                " destroyed after the burst; phases are p50 inside the create gate)\n",
                "50 concurrent", conc.P(0.5), conc.P(0.9), conc.P(0.99), "", clayer.P(0.5), ccg.P(0.5), cclone.P(0.5),
                cparent.P(0.5), cchild.P(0.5), conc.v.size());
  }

  // Baseline in the same run: bubblewrap with all namespaces running /bin/true.
  Stats bw;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    pid_t pid = fork();
    if (pid == 0) {
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 2);
      execlp("bwrap", "bwrap", "--unshare-all", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib64", "/lib64",
             "--symlink", "usr/lib", "/lib", "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev",
             "/bin/true", nullptr);
      _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      std::printf("bwrap baseline unavailable (status %d)\n", st);
      return 0;
    }
    bw.v.push_back(Ms(t0, Clock::now()));
  }
  std::printf("%-30s %8s %8s %8s %8.2f   (bwrap --unshare-all /bin/true, fork to exit)\n", "baseline: bubblewrap", "", "",
              "", bw.P(0.5));
  return 0;
}
