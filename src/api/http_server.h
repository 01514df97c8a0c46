// HttpServer: HTTP/1.1 with keep-alive and chunked streaming. It accepts on
// one io executor and serves each connection on one (connection_executor).
// Bodies up to max_body_bytes are read into memory; requests for which
// spool_to_file(request head) is true may send up to max_spooled_bytes, written
// to a temporary file in spool_dir (deleted after the handler returns).
// Oversized bodies get 413, malformed requests 400; both close the connection.
// Connections are capped in all and per client address (io/listener.h): a
// connection waiting for its next request head is idle and is closed to make
// room first; over a cap with nothing idle, a new connection gets 503
// TOO_MANY_CONNECTIONS and is closed.
#pragma once

#include <memory>
#include <string>

#include "api/http.h"
#include "base/error.h"

namespace cove::api {

struct HttpServerOptions {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 7070;
  size_t max_body_bytes = 64 << 20;
  uint64_t max_spooled_bytes = 16ull << 30;
  std::string spool_dir = "/tmp";
  std::function<bool(const HttpRequest&)> spool_to_file;
  size_t max_connections = 1024;
  size_t max_connections_per_address = 256;
  // Called once a request's head has been read, before its body (coved
  // stamps the request's arrival there). Runs on the connection's executor.
  std::function<void(HttpRequest&)> on_head;
  // Where each new connection is served (coved: its io threads in turn,
  // io/shards.h); null: the server's own executor. The handler runs there.
  std::function<asio::any_io_executor()> connection_executor;
};

class HttpServer {
 public:
  // Binds and listens now (so errors are reported at start-up); serves after Start().
  static Result<std::unique_ptr<HttpServer>> Listen(asio::any_io_executor ex, HttpServerOptions options,
                                                    Handler handler);
  ~HttpServer();
  void Start();
  uint16_t port() const;

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cove::api
