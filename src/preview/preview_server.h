// PreviewServer: coved's preview listener (--preview-listen). Routes each
// request by its Host header ({port}-{id}-{token}.{domain}, host_route.h) to
// the exposed port of a running sandbox and relays it (relay.cc): HTTP/1.1
// with keep-alive, streamed and chunked bodies, Server-Sent Events (nothing
// is buffered) and WebSocket upgrades (bytes relayed both ways after the
// 101). Unknown sandboxes, unexposed ports and wrong tokens all get the same
// 404. Bounded: request heads (64 KiB), idle time, connections per sandbox,
// per client address and in all (io/listener.h: a connection waiting for its
// next request head is closed first to make room; over a cap with nothing
// idle, a new connection gets 503, or is just closed under TLS). Optional TLS
// on a configured certificate.
//
// Threads: accepts and counts connections on the executor given to Listen
// (home), then serves each on connection_executor() (coved: every io thread
// in turn), where its relay lives from start to end. The lookup is called on
// those threads (coved: RunningSandboxes, thread-safe); what relays share
// (the relays per sandbox, the dialer's namespace cache) is guarded by a
// mutex, and a relay is closed only on its own thread (posted there). Listen,
// Start, Unexposed and the destructor at home.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/error.h"
#include "io/asio.h"
#include "manager/sandbox_record.h"
#include "net/address_plan.h"

namespace cove::preview {

struct PreviewOptions {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 7071;
  std::string domain = "localhost";
  std::string tls_cert_file;  // both set: the listener speaks TLS only
  std::string tls_key_file;
  size_t max_connections = 4096;               // client connections in all
  size_t max_connections_per_address = 1024;   // from one client address
  size_t max_connections_per_sandbox = 256;    // relayed to one sandbox
  std::optional<net::AddressPlan> plan;  // sealed networking: also try the sandbox's eth0 address
  // Where each new connection is served (null: the listener's executor).
  std::function<asio::any_io_executor()> connection_executor;
};

class PreviewServer {
 public:
  // The running sandbox `id` (null: none), called from any serving thread.
  using Lookup = std::function<std::shared_ptr<const SandboxRecord>(const std::string& id)>;
  // Binds now (errors at start-up); serves after Start().
  static Result<std::unique_ptr<PreviewServer>> Listen(asio::any_io_executor ex, PreviewOptions options, Lookup lookup);
  ~PreviewServer();
  void Start();
  uint16_t port() const;
  bool tls() const;
  const std::string& domain() const;
  // The exposure of `port` of sandbox `id` was removed: its connections close.
  void Unexposed(const std::string& id, uint16_t port);

 private:
  struct Impl;
  explicit PreviewServer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace cove::preview
