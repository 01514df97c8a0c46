#include "bench/bench_daemon.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

namespace cove::bench {
namespace {

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

}  // namespace

BenchDaemon::BenchDaemon(const std::string& coved_path, const std::vector<std::string>& args) {
  static int instance = 0;
  state_ = std::filesystem::temp_directory_path() /
           ("cove-bench-" + std::to_string(getpid()) + "-" + std::to_string(instance++));
  port_ = FreePort();
  std::string coved = coved_path.empty()
                          ? (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "coved").string()
                          : coved_path;
  pid_ = fork();
  if (pid_ == 0) {
    std::string log = state_.string() + ".log";
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    std::vector<std::string> argv = {"coved", "--listen", "127.0.0.1:" + std::to_string(port_),
                                     "--preview-listen", "127.0.0.1:0", "--state-dir", state_.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> c_argv;
    for (auto& a : argv) c_argv.push_back(a.data());
    c_argv.push_back(nullptr);
    execv(coved.c_str(), c_argv.data());
    _exit(127);
  }
  for (int i = 0; i < 500; ++i) {
    std::ifstream t(state_ / "api-token");
    if (t >> token_) {
      MiniHttp probe("127.0.0.1", port_, token_);
      if (probe.Call("GET", "/v1/sandboxes").status == 200) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  fprintf(stderr, "coved %s did not start; see %s.log\n", coved.c_str(), state_.c_str());
  exit(1);
}

BenchDaemon::~BenchDaemon() {
  MiniHttp h("127.0.0.1", port_, token_);
  auto list = nlohmann::json::parse(h.Call("GET", "/v1/sandboxes").body, nullptr, false);
  if (list.is_object())
    for (auto& s : list["sandboxes"]) h.Call("DELETE", "/v1/sandboxes/" + s["id"].get<std::string>());
  kill(pid_, SIGTERM);
  waitpid(pid_, nullptr, 0);
  std::error_code ec;
  std::filesystem::remove_all(state_, ec);
}

}  // namespace cove::bench
