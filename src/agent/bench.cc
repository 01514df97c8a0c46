// cove-agent-bench: starts the real cove-agent as a plain child process and
// prints a table of its idle memory, exec latency and streaming throughput.
// Usage: cove-agent-bench [path/to/cove-agent]
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/frame.h"
#include "agent/util.h"
#include "base/time.h"

using json = nlohmann::json;
using namespace cove;
using namespace cove::agent;

namespace {

int g_fd = -1;
uint32_t g_ch = 0;
FrameDecoder g_dec(kMaxAgentFrame);

Frame RecvFrame() {
  for (;;) {
    if (auto f = g_dec.Next()) return *f;
    char buf[1 << 16];
    ssize_t n = read(g_fd, buf, sizeof buf);
    if (n <= 0) {
      fprintf(stderr, "agent connection lost\n");
      exit(1);
    }
    if (!g_dec.Feed(std::string_view(buf, static_cast<size_t>(n))).ok()) exit(1);
  }
}

// Sends a request; returns the reply and the total payload bytes of events.
// Grants the channel's window, as coved does, and returns the credit of
// every event at once, as a consumer that keeps up.
json Call(const json& req, size_t* event_bytes = nullptr, std::string* data = nullptr) {
  uint32_t ch = ++g_ch;
  std::string wire = EncodeFrame(ch, FrameType::kRequest, req.dump());
  EncodeFrame(ch, FrameType::kWindow, EncodeWindow(kChannelWindow), &wire);
  if (write(g_fd, wire.data(), wire.size()) != static_cast<ssize_t>(wire.size())) exit(1);
  for (;;) {
    Frame f = RecvFrame();
    if (f.type == FrameType::kReply) return json::parse(f.payload);
    std::string grant = EncodeFrame(ch, FrameType::kWindow, EncodeWindow(static_cast<uint32_t>(f.payload.size())));
    if (write(g_fd, grant.data(), grant.size()) != static_cast<ssize_t>(grant.size())) exit(1);
    if (event_bytes) *event_bytes += f.payload.size();
    if (data) *data += json::parse(f.payload).value("data", "");
  }
}

long StatusKb(pid_t pid, const char* key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stol(line.substr(strlen(key)));
  return -1;
}
long RssKb(pid_t pid) { return StatusKb(pid, "VmRSS:"); }
void ResetPeak(pid_t pid) {
  std::ofstream f("/proc/" + std::to_string(pid) + "/clear_refs");
  f << "5";
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  std::string bin = argc > 1 ? argv[1] : COVE_AGENT_BIN;
  char tmpl[] = "/tmp/cove-agent-bench-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string ws = dir + "/ws", sock = dir + "/agent.sock";
  std::filesystem::create_directories(ws);
  int ls = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, sock.c_str(), sizeof a.sun_path - 1);
  if (bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(ls, 4) != 0) return 1;
  pid_t pid = fork();
  if (pid == 0) {
    if (ls != 3) dup2(ls, 3);
    setenv("COVE_AGENT_WORKSPACE", ws.c_str(), 1);
    setenv("COVE_AGENT_LOG", "warn", 1);
    execl(bin.c_str(), "cove-agent", nullptr);
    _exit(127);
  }
  close(ls);
  g_fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(g_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 1;
  Call({{"op", "hello"}});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  long rss_idle = RssKb(pid);

  printf("%-46s %12s\n", "cove-agent benchmark", "value");
  printf("%-46s %9ld KiB\n", "agent RSS, idle after hello", rss_idle);

  Call({{"op", "session.create"}, {"id", "b"}});
  Call({{"op", "exec"}, {"command", "true"}, {"sessionId", "b"}});
  std::vector<double> rtt;
  for (int i = 0; i < 3000; ++i) {
    int64_t t0 = MonotonicNs();
    Call({{"op", "exec"}, {"command", "true"}, {"sessionId", "b"}});
    rtt.push_back(static_cast<double>(MonotonicNs() - t0) / 1000.0);
  }
  printf("%-46s %9.0f us\n", "session exec `true` round trip, p50", Percentile(rtt, 0.5));
  printf("%-46s %9.0f us\n", "session exec `true` round trip, p99", Percentile(rtt, 0.99));

  std::vector<double> rtt2;
  for (int i = 0; i < 300; ++i) {
    int64_t t0 = MonotonicNs();
    Call({{"op", "exec"}, {"command", "true"}});
    rtt2.push_back(static_cast<double>(MonotonicNs() - t0) / 1000.0);
  }
  printf("%-46s %9.0f us\n", "sessionless exec `true` (fork+exec bash), p50", Percentile(rtt2, 0.5));

  std::vector<double> rtt3;
  for (int i = 0; i < 3000; ++i) {
    int64_t t0 = MonotonicNs();
    Call({{"op", "file.exists"}, {"path", "x"}});
    rtt3.push_back(static_cast<double>(MonotonicNs() - t0) / 1000.0);
  }
  printf("%-46s %9.0f us\n", "file.exists round trip, p50", Percentile(rtt3, 0.5));

  for (int rep = 0; rep < 2; ++rep) {
    std::string data;
    int64_t t0 = MonotonicNs();
    Call({{"op", "exec"}, {"command", "seq 1 1000000"}, {"sessionId", "b"}}, nullptr, &data);
    double s = static_cast<double>(MonotonicNs() - t0) / 1e9;
    if (rep == 1)
      printf("%-46s %9.1f MB/s (%zu bytes, %.0f ms)\n", "stream `seq 1 1000000` through the agent",
             static_cast<double>(data.size()) / s / 1e6, data.size(), s * 1000);
  }
  {
    size_t bytes = 0;
    int64_t t0 = MonotonicNs();
    Call({{"op", "exec"}, {"command", "head -c 200000000 /dev/zero | tr '\\0' x"}, {"sessionId", "b"}}, &bytes);
    double s = static_cast<double>(MonotonicNs() - t0) / 1e9;
    printf("%-46s %9.1f MB/s\n", "stream 200 MB of text (head|tr)", 200.0 / s);
  }
  printf("%-46s %9ld KiB\n", "agent RSS peak during exec/streaming", StatusKb(pid, "VmHWM:"));
  ResetPeak(pid);
  {
    std::string big(32 << 20, 'x');
    std::string content = Base64Encode(big);
    int64_t t0 = MonotonicNs();
    Call({{"op", "file.write"}, {"path", "big"}, {"content", content}, {"encoding", "base64"}});
    double s = static_cast<double>(MonotonicNs() - t0) / 1e9;
    printf("%-46s %9.1f MB/s\n", "file.write 32 MiB (base64 in JSON)", 32 * 1.048576 / s);
    printf("%-46s %9ld KiB\n", "agent RSS peak during it", StatusKb(pid, "VmHWM:"));
    ResetPeak(pid);
    std::string raw_req = json{{"op", "file.write"}, {"path", "big2"}, {"contentInData", true}}.dump();
    std::string wire = EncodeFrame(++g_ch, FrameType::kRequest, raw_req);
    EncodeFrame(g_ch, FrameType::kData, big, &wire);
    EncodeFrame(g_ch, FrameType::kWindow, EncodeWindow(kChannelWindow), &wire);
    t0 = MonotonicNs();
    if (write(g_fd, wire.data(), wire.size()) != static_cast<ssize_t>(wire.size())) return 1;
    Frame rf = RecvFrame();
    s = static_cast<double>(MonotonicNs() - t0) / 1e9;
    if (rf.payload.find("error") != std::string::npos) printf("contentInData write failed: %s\n", rf.payload.c_str());
    printf("%-46s %9.1f MB/s\n", "file.write 32 MiB (contentInData, raw frame)", 32 * 1.048576 / s);
    printf("%-46s %9ld KiB\n", "agent RSS peak during it", StatusKb(pid, "VmHWM:"));
    ResetPeak(pid);
    size_t bytes = 0;
    t0 = MonotonicNs();
    Call({{"op", "file.read"}, {"path", "big"}}, &bytes);
    s = static_cast<double>(MonotonicNs() - t0) / 1e9;
    printf("%-46s %9.1f MB/s\n", "file.read 32 MiB text (utf-8 chunks)", 32 * 1.048576 / s);
  }
  printf("%-46s %9ld KiB\n", "agent RSS peak during the read", StatusKb(pid, "VmHWM:"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  printf("%-46s %9ld KiB\n", "agent RSS after the runs", RssKb(pid));

  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  std::filesystem::remove_all(dir);
  return 0;
}
