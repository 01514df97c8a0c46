// SandboxDialer: opens TCP connections to a port inside a sandbox, from inside
// its network namespace, so that it works with --network none (loopback
// only) and sealed alike, and reaches servers that bind 127.0.0.1 only. The
// socket is created on the calling (io) thread while that thread is briefly
// moved into the namespace of the sandbox's pid 1 (setns is per thread; a
// socket keeps the namespace it was made in), then connected to
// 127.0.0.1:port (and, when an address plan is given, to the sandbox's eth0
// address if loopback refuses).
//
// The namespace is opened once per sandbox and cached with a pidfd of pid 1,
// checked to be the recorded process (pid and start time). When pid 1 exits
// (the sandbox is destroyed or fails) the entry is dropped and on_gone(id) is
// called, so that the caller can close that sandbox's relayed connections.
// Thread-safe: Connect runs on any io thread (the cache is guarded by a mutex,
// and a caller holds the namespace descriptor it uses, so a concurrent drop
// never closes it under it); the pidfd watches and on_gone run on `ex`
// (home), where the dialer is made and destroyed.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "manager/sandbox_record.h"
#include "net/address_plan.h"
#include "io/byte_stream.h"
#include "sys/unique_fd.h"

namespace cove::preview {

using tcp = asio::ip::tcp;

class SandboxDialer {
 public:
  SandboxDialer(asio::any_io_executor ex, std::optional<net::AddressPlan> plan,
                std::function<void(const std::string& id)> on_gone);
  ~SandboxDialer();

  // A connection made on the caller's executor. kUnavailable when the
  // sandbox's process is gone or nothing listens.
  Task<Result<std::unique_ptr<io::ByteStream>>> Connect(const SandboxRecord& record, uint16_t port);
  size_t cached() const;  // namespaces cached (for tests)

 private:
  struct Entry {
    int pid = 0;
    uint64_t start_ticks = 0;
    std::shared_ptr<const UniqueFd> netns;
    UniqueFd pidfd;                                          // until the watch at home takes it
    std::unique_ptr<asio::posix::stream_descriptor> watch;  // home only
  };
  Result<std::shared_ptr<const UniqueFd>> NetnsOf(const SandboxRecord& record);
  // At home: watches the entry's pid 1, if it is still the cached one.
  void Watch(const std::string& id, const std::shared_ptr<Entry>& entry);
  Result<tcp::socket> SocketIn(const asio::any_io_executor& ex, int netns_fd);

  asio::any_io_executor ex_;
  std::optional<net::AddressPlan> plan_;
  std::function<void(const std::string&)> on_gone_;
  mutable std::mutex mu_;  // guards entries_
  std::map<std::string, std::shared_ptr<Entry>> entries_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // home only
};

}  // namespace cove::preview
