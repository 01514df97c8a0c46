// Plain HTTP request/response types between the Beast server (http_server.cc,
// the only Beast TU) and the API handlers, so that handlers stay cheap to compile.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/asio.h"
#include "manager/tombstones.h"

namespace cove::api {

// The client of one request, as its handler sees it: the handler registers
// what to stop (an agent call) if the client goes away before the answer.
// Single-threaded, like the handlers.
class ClientLink {
 public:
  // Runs fn when the client goes away (at once if it already has).
  void OnGone(std::function<void()> fn) {
    if (gone_) {
      fn();
    } else {
      on_gone_.push_back(std::move(fn));
    }
  }
  // The client went away: runs the registered functions once.
  void SetGone() {
    if (gone_) return;
    gone_ = true;
    auto fns = std::move(on_gone_);
    for (auto& fn : fns) fn();
  }
  bool gone() const { return gone_; }

 private:
  bool gone_ = false;
  std::vector<std::function<void()>> on_gone_;
};

struct HttpRequest {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // as sent: path + query
  std::string path;                            // decoded path without the query
  std::map<std::string, std::string> query;    // decoded query parameters
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;                            // in memory, or:
  std::optional<nlohmann::json> json_body;     // already parsed (a /ws frame's body): read instead of `body``
  std::string body_file;                       // path of the spooled body (large uploads)
  std::shared_ptr<ClientLink> client = std::make_shared<ClientLink>();
  Tombstones::Arrival arrival;                 // when coved read its head (HttpServerOptions::on_head)

  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct HttpResponse;

// The body of a streamed (chunked) response.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  // Sends one chunk; false once the client is gone.
  virtual Task<bool> Write(std::string data) = 0;
  // Called (once) if the client disconnects while the stream is open.
  virtual void OnClientGone(std::function<void()> fn) = 0;
  // Ends the response as failed once the stream function returns: over HTTP
  // the connection closes without the last chunk, so the client sees an
  // incomplete body, never a complete but truncated one; over the /ws
  // transport (which has sent nothing yet for a non-SSE body) the request
  // gets `error` as its answer.
  virtual void Abort(HttpResponse error) = 0;
};

// One accepted WebSocket connection. Writes may be issued from several
// coroutines: they are sent one at a time, in call order.
class WebSocket {
 public:
  struct Message {
    bool binary = false;
    std::string data;
  };
  virtual ~WebSocket() = default;
  // The next message; nullopt once the connection is closed.
  virtual Task<std::optional<Message>> Read() = 0;
  // Sends one message; false once the connection is closed.
  virtual Task<bool> Write(std::string data, bool binary = false) = 0;
  // Starts the closing handshake; a pending Read() then ends.
  virtual Task<void> Close() = 0;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // When set, the body is produced by this function as chunks (SSE).
  std::function<Task<void>(BodyStream&)> stream;
  // When set (and the request asked for a WebSocket upgrade), the server
  // accepts the upgrade and runs this on the connection instead of answering.
  std::function<Task<void>(WebSocket&)> websocket;
};

using Handler = std::function<Task<HttpResponse>(HttpRequest&)>;

}  // namespace cove::api
