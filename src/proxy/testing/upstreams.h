// Test-only peers of the egress proxy, on blocking sockets and threads: an
// HTTP/1.1 origin server that records what it saw, a TCP echo server, a TLS
// server with a self-signed certificate that records the SNI, and the client
// side helpers (connect from a chosen source, read HTTP messages piece by
// piece, TLS handshake over an existing socket).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace cove::proxy::testing {

// A TCP socket connected to address:port (from `source` when not empty), with
// 5 s send/receive timeouts; -1 on failure.
int ConnectTcp(const std::string& address, uint16_t port, const std::string& source = "");
bool SendAll(int fd, std::string_view bytes);
// Everything until the peer closes (or the timeout).
std::string ReadToEnd(int fd);
// True when the peer closed (or reset) without sending anything.
bool ClosedWithoutData(int fd);

struct HttpMessage {
  std::string start_line;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  int connection = 0;  // upstream: which accepted connection it came on
  std::optional<std::string> Header(std::string_view name) const;  // case-insensitive, first
  int status() const;  // responses: the status code
};

// Reads HTTP/1.1 messages from a socket, keeping what it read ahead.
class HttpReader {
 public:
  explicit HttpReader(int fd) : fd_(fd) {}
  // The start line and headers; false on EOF or error.
  bool ReadHead(HttpMessage* message);
  // One chunk of a chunked body (empty string: the last chunk, trailers read).
  std::optional<std::string> ReadChunk();
  // The body after ReadHead, by Content-Length, chunked, or (responses) to EOF.
  bool ReadBody(HttpMessage* message, bool response, bool head_request = false);
  // A whole message.
  std::optional<HttpMessage> Read(bool response, bool head_request = false);

 private:
  bool Fill();
  std::optional<std::string> Line();
  std::optional<std::string> Take(size_t n);
  int fd_;
  std::string buffered_;
};

// A threaded server on address:port (0: ephemeral).
class Server {
 public:
  virtual ~Server();
  uint16_t port() const { return port_; }
  int connections() const { return connections_; }

 protected:
  bool Listen(const std::string& address, uint16_t port);
  void StartAccepting();
  virtual void Serve(int fd, int connection) = 0;
  void StopServing();

 private:
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<int> connections_{0};
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
};

// HTTP/1.1 origin: serves keep-alive connections; `respond` writes the
// response to the request on `fd`. Records every request.
class HttpUpstream : public Server {
 public:
  using Responder = std::function<void(const HttpMessage& request, int fd)>;
  HttpUpstream(const std::string& address, uint16_t port, Responder respond);
  ~HttpUpstream() override;
  std::vector<HttpMessage> requests();
  // A responder: 200 with `body` and Content-Length.
  static Responder Fixed(std::string body);

 private:
  void Serve(int fd, int connection) override;
  Responder respond_;
  std::mutex mu_;
  std::vector<HttpMessage> requests_;
};

// Echoes every byte back.
class EchoUpstream : public Server {
 public:
  EchoUpstream(const std::string& address, uint16_t port);
  ~EchoUpstream() override;

 private:
  void Serve(int fd, int connection) override;
};

// TLS server with a fresh self-signed certificate: after the handshake it
// reads one line and answers "tls says: <line>", then closes.
class TlsUpstream : public Server {
 public:
  TlsUpstream(const std::string& address, uint16_t port);
  ~TlsUpstream() override;
  std::vector<std::string> server_names();  // SNI of each handshake ("" for none)

 private:
  void Serve(int fd, int connection) override;
  struct Context;
  std::unique_ptr<Context> context_;
  std::mutex mu_;
  std::vector<std::string> server_names_;
};

// TLS client over the connected `fd` (server name `sni` unless empty, no
// certificate verification): handshake, send `line`, return the answer;
// nullopt when the handshake or the exchange failed.
std::optional<std::string> TlsExchange(int fd, const std::string& sni, const std::string& line);

// The bytes of a TLS ClientHello naming `sni` (none when empty), as OpenSSL
// would send them.
std::string MakeClientHello(const std::string& sni);

}  // namespace cove::proxy::testing
