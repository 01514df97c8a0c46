// BenchDaemon: one coved started for a benchmark on a free loopback port with a
// temporary state directory; the destructor deletes its sandboxes, stops it
// and removes the directory. Exits the process if coved does not come up.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "bench/mini_http.h"

namespace cove::bench {

class BenchDaemon {
 public:
  // coved: the binary to run (its cove-agent is the one next to it); empty
  // means the coved next to this benchmark binary. args: more coved options.
  explicit BenchDaemon(const std::string& coved = "", const std::vector<std::string>& args = {});
  ~BenchDaemon();
  BenchDaemon(const BenchDaemon&) = delete;
  BenchDaemon& operator=(const BenchDaemon&) = delete;

  MiniHttp Client() const { return MiniHttp("127.0.0.1", port_, token_); }
  pid_t pid() const { return pid_; }
  std::string state() const { return state_.string(); }

 private:
  std::filesystem::path state_;
  int port_;
  pid_t pid_;
  std::string token_;
};

}  // namespace cove::bench
