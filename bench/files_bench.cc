// files_bench: the Cloudflare-compatible files API (/api/write + /api/read)
// of this build against other coved binaries, in one run.
//
//   build/bin/files_bench [--n N] [--type INSTANCE_TYPE] [--rounds R] [--baseline PATH/TO/coved]...
//
// For each coved (this build's, next to this binary, then every --baseline) it
// starts a daemon with a temporary state dir, creates one sandbox, and times:
// a 1 MiB text file written and read back as utf-8, a 1 MiB binary file written
// and read back as base64 (each pair timed together, p50/p90 over N), and a
// 32 MiB file written and read (MB/s of each, best of 3). Every read is checked
// against what was written, outside the timed part. Prints a markdown table,
// with the CPU time coved and the sandbox's agent spent (their threads'
// schedstat run time): per 1 MiB pair, and per 32 MiB write + read. Under
// load the CPU columns vary less than the times. --rounds repeats the list of
// coveds R times, interleaved.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "base/base64.h"
#include "bench/bench_daemon.h"
#include "bench/mini_http.h"
#include "bench/stats.h"

namespace cove::bench {
namespace {

using Json = nlohmann::json;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(static_cast<double>(v.size()) * p))];
}

// Source-like UTF-8 text: lines with quotes, tabs and non-ASCII characters, so
// that JSON escaping and UTF-8 decoding are exercised as in real files.
std::string Text(size_t n) {
  std::string s;
  s.reserve(n + 128);
  for (int i = 0; s.size() < n; ++i)
    s += "\tline " + std::to_string(i) + ": the \"quick\" brown fox jumps over the lazy dog, café ∑ 🦊\n";
  s.resize(n);
  while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();  // whole characters
  if (!s.empty() && static_cast<unsigned char>(s.back()) >= 0xC0) s.pop_back();
  return s;
}

std::string Random(size_t n) {
  std::mt19937_64 rng(42);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    for (size_t k = 0; k < 8 && i + k < n; ++k) s[i + k] = static_cast<char>(v >> (8 * k));
  }
  return s;
}

struct Result {
  double utf8_p50 = 0, utf8_p90 = 0, b64_p50 = 0, b64_p90 = 0;
  double big_write_mbs = 0, big_read_mbs = 0;
  double cpu_pair_ms = 0, cpu_big_ms = 0;  // coved + agent
  bool ok = true;
};

// Nanoseconds process `pid` has run on a CPU, all its threads (0 if it is gone).
uint64_t CpuNs(pid_t pid) {
  uint64_t sum = 0;
  std::error_code ec;
  for (auto& t : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream f(t.path() / "schedstat");
    uint64_t ns = 0;
    if (f >> ns) sum += ns;
  }
  return sum;
}

class Bench {
 public:
  Bench(MiniHttp& h, std::string base) : h_(h), base_(std::move(base)) {}

  // One write + read pair of `wire` (the JSON content field); returns ms, or -1 (and prints why) on a failure or a mismatch.
  double WriteRead(const std::string& path, const std::string& wire,
                   const std::string& enc, double* write_ms = nullptr, double* read_ms = nullptr) {
    std::string wbody = Json{{"path", path}, {"content", wire}, {"encoding", enc}}.dump();
    std::string rbody = Json{{"path", path}, {"encoding", enc}}.dump();
    auto t0 = Clock::now();
    auto w = h_.Call("POST", base_ + "/api/write", wbody);
    auto t1 = Clock::now();
    auto r = h_.Call("POST", base_ + "/api/read", rbody);
    auto t2 = Clock::now();
    if (w.status != 200 || r.status != 200) {
      fprintf(stderr, "%s: write %d, read %d %.200s\n", path.c_str(), w.status, r.status, r.body.c_str());
      return -1;
    }
    auto j = Json::parse(r.body, nullptr, false);
    if (!j.is_object() || j.value("content", "") != wire) {
      fprintf(stderr, "%s: read back differs from what was written\n", path.c_str());
      return -1;
    }
    if (write_ms) *write_ms = Ms(t1 - t0);
    if (read_ms) *read_ms = Ms(t2 - t1);
    return Ms(t2 - t0);
  }

 private:
  MiniHttp& h_;
  std::string base_;
};

Result Measure(const std::string& coved, int n, const std::string& type) {
  Result res;
  BenchDaemon d(coved);
  MiniHttp h = d.Client();
  auto c = h.Call("POST", "/v1/sandboxes", Json{{"id", "bench-files"}, {"instanceType", type}}.dump());
  if (c.status != 201) {
    fprintf(stderr, "create: %d %s\n", c.status, c.body.c_str());
    res.ok = false;
    return res;
  }
  Bench b(h, "/v1/sandboxes/bench-files");
  auto info = Json::parse(h.Call("GET", "/v1/sandboxes/bench-files").body, nullptr, false);
  pid_t agent = info.is_object() && info.contains("pid") ? info["pid"].get<pid_t>() : 0;
  auto cpu = [&] { return CpuNs(d.pid()) + (agent ? CpuNs(agent) : 0); };
  uint64_t cpu0 = 0;
  const std::string text = Text(1 << 20), binary = Random(1 << 20), binary64 = Base64Encode(binary);  // the client's side, outside the timed part
  std::vector<double> utf8, b64;
  for (int i = 0; i < n + 3; ++i) {  // the first 3 of each warm up
    if (i == 3) cpu0 = cpu();
    double u = b.WriteRead("/workspace/text.txt", text, "utf-8");
    double x = b.WriteRead("/workspace/blob.bin", binary64, "base64");
    if (u < 0 || x < 0) res.ok = false;
    if (i >= 3 && u >= 0) utf8.push_back(u);
    if (i >= 3 && x >= 0) b64.push_back(x);
  }
  res.cpu_pair_ms = n > 0 ? (cpu() - cpu0) / 1e6 / (2 * n) : 0;
  res.utf8_p50 = Percentile(utf8, 0.5);
  res.utf8_p90 = Percentile(utf8, 0.9);
  res.b64_p50 = Percentile(b64, 0.5);
  res.b64_p90 = Percentile(b64, 0.9);
  const std::string big = Text(32 << 20);
  double best_w = 1e9, best_r = 1e9;
  double best_cpu = 1e9;
  for (int i = 0; i < 3; ++i) {
    double w = 0, r = 0;
    uint64_t c0 = cpu();
    if (b.WriteRead("/workspace/big.txt", big, "utf-8", &w, &r) < 0) {
      res.ok = false;
      continue;
    }
    best_cpu = std::min(best_cpu, (cpu() - c0) / 1e6);
    best_w = std::min(best_w, w);
    best_r = std::min(best_r, r);
  }
  res.cpu_big_ms = best_cpu < 1e9 ? best_cpu : 0;
  res.big_write_mbs = best_w < 1e9 ? big.size() / 1e3 / best_w : 0;
  res.big_read_mbs = best_r < 1e9 ? big.size() / 1e3 / best_r : 0;
  return res;
}

int Main(int argc, char** argv) {
  int n = 50, rounds = 1;
  std::string type = "basic";  // what getSandbox() gives
  std::vector<std::string> coveds = {""};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--n") n = std::atoi(argv[i + 1]);
    else if (a == "--type") type = argv[i + 1];
    else if (a == "--rounds") rounds = std::max(1, std::atoi(argv[i + 1]));
    else if (a == "--baseline") coveds.push_back(argv[i + 1]);
    else {
      fprintf(stderr, "usage: files_bench [--n N] [--type INSTANCE_TYPE] [--rounds R] [--baseline PATH/TO/coved]...\n");
      return 2;
    }
  }
  bool ok = true;
  printf("| coved | write+read 1 MiB utf-8 p50 / p90 ms | write+read 1 MiB base64 p50 / p90 ms | "
         "32 MiB write MB/s | 32 MiB read MB/s | CPU ms per 1 MiB pair | CPU ms per 32 MiB write+read |\n"
         "|---|---|---|---|---|---|---|\n");
  for (int round = 0; round < rounds; ++round) {
    for (const auto& c : coveds) {
      Result r = Measure(c, n, type);
      ok = ok && r.ok;
      printf("| %s | %.2f / %.2f | %.2f / %.2f | %.0f | %.0f | %.2f | %.1f |\n", c.empty() ? "this build" : c.c_str(),
             r.utf8_p50, r.utf8_p90, r.b64_p50, r.b64_p90, r.big_write_mbs, r.big_read_mbs, r.cpu_pair_ms,
             r.cpu_big_ms);
      fflush(stdout);
    }
  }
  printf("\n(n = %d pairs per row, instance type %s; 32 MiB: best of 3; MB = 10^6 bytes; CPU: coved + agent, "
         "per pair of the utf-8 and base64 rows together, and the least of the three 32 MiB pairs)\n",
         n, type.c_str());
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace cove::bench

int main(int argc, char** argv) { return cove::bench::Main(argc, argv); }
