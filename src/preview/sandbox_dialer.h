// SandboxDialer: opens TCP connections to a port inside a sandbox, from inside
// its network namespace, so that it works with --network none (loopback
// only) and sealed alike, and reaches servers that bind 127.0.0.1 only. The
// socket is created on the calling (io) thread while it is briefly moved into
// the namespace of the sandbox's pid 1 (setns; a socket keeps the namespace it
// was made in), then connected to 127.0.0.1:port (and, when an address plan
// is given, to the sandbox's eth0 address if loopback refuses).
//
// The namespace is opened once per sandbox and cached with a pidfd of pid 1,
// checked to be the recorded process (pid and start time). When pid 1 exits
// (the sandbox is destroyed or fails) the entry is dropped and on_gone(id) is
// called, so that the caller can close that sandbox's relayed connections.
// Use on the io thread only.
#pragma once

#include <functional>
#include <map>
#include <memory>
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

  // kUnavailable when the sandbox's process is gone or nothing listens.
  Task<Result<std::unique_ptr<io::ByteStream>>> Connect(const SandboxRecord& record, uint16_t port);

 private:
  struct Entry {
    int pid = 0;
    uint64_t start_ticks = 0;
    UniqueFd netns;
    std::unique_ptr<asio::posix::stream_descriptor> pidfd;
  };
  Result<int> NetnsOf(const SandboxRecord& record);
  Result<tcp::socket> SocketIn(int netns_fd);

  asio::any_io_executor ex_;
  std::optional<net::AddressPlan> plan_;
  std::function<void(const std::string&)> on_gone_;
  std::map<std::string, std::unique_ptr<Entry>> entries_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace cove::preview
