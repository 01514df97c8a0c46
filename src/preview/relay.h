// Relay: one client connection of the preview listener. Reads a request head
// (bounded), asks the server where it goes, connects to (or reuses) the
// upstream connection into the sandbox, and forwards the head with the
// hop-by-hop headers removed and X-Forwarded-For/-Host/-Proto set; the bodies
// are relayed byte for byte as they arrive (chunked bodies are scanned for
// their end, never re-encoded), the request body concurrently with the
// response. After a 101 the connection becomes a raw two-way byte relay
// (WebSocket). Keep-alive on the client side is kept whenever the response is
// delimited; each request is routed again, so a different Host on the same
// connection goes to its own upstream.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "io/connection_registry.h"
#include "io/async_signal.h"
#include "manager/sandbox_record.h"
#include "io/byte_stream.h"
#include "http/http_head.h"

namespace cove::preview {

// Where a routed request goes.
struct Target {
  std::shared_ptr<const SandboxRecord> record;  // as published when the request was routed (never null)
  uint16_t port = 0;
  std::string Key() const { return record->id + ":" + std::to_string(port) + ":" + std::to_string(record->pid); }
};

class Relay;

// What a relay needs from the server; called on the relay's thread (any io thread).
class RelayHost {
 public:
  virtual ~RelayHost() = default;
  // The exposed port a Host header names; nullopt for anything not exposed.
  virtual std::optional<Target> Resolve(const std::string& host) = 0;
  virtual Task<Result<std::unique_ptr<io::ByteStream>>> Dial(Target target) = 0;
  // Counts the relay as a connection of target's sandbox (it is closed when
  // the sandbox goes or the port is unexposed); false when over the limit.
  virtual bool Bind(const std::shared_ptr<Relay>& relay, const Target& target) = 0;
  virtual void Unbind(Relay* relay) = 0;
};

class Relay : public std::enable_shared_from_this<Relay> {
 public:
  // `slot` counts the client connection in the listener's registry: the
  // relay marks it idle while waiting for a request head (shedding it shuts
  // the client's socket down, from any thread, and the relay ends), busy
  // otherwise. `ex` is the thread the relay runs on, from Run to its end.
  Relay(asio::any_io_executor ex, RelayHost* host, std::unique_ptr<io::ByteStream> client, std::string client_address,
        bool tls, io::ConnectionRegistry::Slot slot);
  // Serves the connection until it ends.
  static Task<void> Run(std::shared_ptr<Relay> self);
  // Closes both sides; pending operations end. On the relay's executor only.
  void Close();
  const asio::any_io_executor& executor() const { return ex_; }

  // The sandbox and port of the current upstream; the server's (under its lock).
  std::string bound_id;
  uint16_t bound_port = 0;

 private:
  static Task<void> RequestBody(std::shared_ptr<Relay> self, http::Framing framing);
  static Task<void> Pump(std::shared_ptr<Relay> self, bool to_upstream);
  Task<void> SendSimple(int status, std::string_view reason, bool keep_alive);
  // Serves one request; false when the connection must end.
  Task<bool> Exchange(std::shared_ptr<Relay> self, http::HttpHead request);
  Task<void> Tunnel(std::shared_ptr<Relay> self);
  void DropUpstream();

  asio::any_io_executor ex_;
  RelayHost* host_;
  std::unique_ptr<io::ByteStream> client_;
  std::unique_ptr<io::ByteStream> upstream_;
  std::string client_address_;
  bool tls_;
  std::string upstream_key_;
  std::string cbuf_, ubuf_;  // read ahead from the client, from the upstream
  bool body_done_ = true, body_ok_ = true;
  int pumps_ = 0;
  AsyncSignal changed_;
  bool closed_ = false;
  std::optional<io::ConnectionRegistry::Slot> slot_;  // reset by Close(), before the socket closes
};

}  // namespace cove::preview
