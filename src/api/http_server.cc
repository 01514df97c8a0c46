#include "api/http_server.h"
#include "api/target.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "base/log.h"
#include "base/log_throttle.h"
#include "io/listener.h"
#include "io/move_socket.h"
#include "io/refuse.h"
#include "io/async_signal.h"
#include "io/deadline.h"
#include "http/http_head.h"

namespace cove::api {
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kIdleTimeout = std::chrono::seconds(120);
// After an error answer that closes the connection, unread input is drained
// for this long (at most kLingerBytes) so that closing does not reset the
// connection before the client has read the answer (RFC 9112 §9.6).
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerBytes = 1 << 20;
constexpr auto kRefusalLogInterval = std::chrono::seconds(10);

std::string ErrorJson(int status, std::string_view code, std::string_view message) {
  return fmt::format(R"({{"code":"{}","message":"{}","httpStatus":{}}})", code, message, status);
}

// Chunked body writer over a connection's stream.
class ChunkedStream : public BodyStream {
 public:
  explicit ChunkedStream(beast::tcp_stream& stream) : stream_(stream) {}

  Task<bool> Write(std::string data) override {
    if (gone_ || data.empty()) co_return !gone_;
    boost::system::error_code ec;
    co_await asio::async_write(stream_, http::make_chunk(asio::buffer(data)),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) SetGone();
    co_return !gone_;
  }
  void OnClientGone(std::function<void()> fn) override {
    on_gone_ = std::move(fn);
    if (gone_) {
      auto f = std::move(on_gone_);
      f();
      return;
    }
    // The client sends nothing while it reads a stream: readability means EOF.
    stream_.socket().async_wait(tcp::socket::wait_read, [this, alive = alive_](const boost::system::error_code& ec) {
      if (ec || !*alive) return;
      char c;
      ssize_t n = ::recv(stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN)) SetGone();
    });
  }
  void Abort(HttpResponse) override { aborted_ = true; }
  bool gone() const { return gone_; }
  bool aborted() const { return aborted_; }
  ~ChunkedStream() override { *alive_ = false; }

 private:
  void SetGone() {
    if (gone_) return;
    gone_ = true;
    if (on_gone_) {
      auto f = std::move(on_gone_);
      f();
    }
  }
  beast::tcp_stream& stream_;
  bool gone_ = false;
  bool aborted_ = false;
  std::function<void()> on_gone_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// A server-side WebSocket over an accepted connection.
class BeastWebSocket : public WebSocket {
 public:
  BeastWebSocket(beast::tcp_stream stream, asio::any_io_executor ex) : ws_(std::move(stream)), idle_(ex) {
    ws_.set_option(beast::websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.read_message_max(64 << 20);
  }

  Task<bool> Accept(const http::request<http::string_body>& req) {
    boost::system::error_code ec;
    co_await ws_.async_accept(req, asio::redirect_error(asio::use_awaitable, ec));
    open_ = !ec;
    co_return open_;
  }

  Task<std::optional<Message>> Read() override {
    if (!open_) co_return std::nullopt;
    beast::flat_buffer buf;
    boost::system::error_code ec;
    co_await ws_.async_read(buf, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      open_ = false;
      co_return std::nullopt;
    }
    co_return Message{ws_.got_binary(), beast::buffers_to_string(buf.data())};
  }

  Task<bool> Write(std::string data, bool binary) override {
    while (writing_ && open_) co_await idle_.Wait();
    if (!open_) co_return false;
    writing_ = true;
    ws_.binary(binary);
    boost::system::error_code ec;
    co_await ws_.async_write(asio::buffer(data), asio::redirect_error(asio::use_awaitable, ec));
    writing_ = false;
    if (ec) open_ = false;
    idle_.Notify();
    co_return open_;
  }

  Task<void> Close() override {
    if (!open_) co_return;
    open_ = false;
    boost::system::error_code ec;
    co_await ws_.async_close(beast::websocket::close_code::normal, asio::redirect_error(asio::use_awaitable, ec));
  }

 private:
  beast::websocket::stream<beast::tcp_stream> ws_;
  AsyncSignal idle_;
  bool writing_ = false;
  bool open_ = false;
};

}  // namespace

struct HttpServer::Impl {
  Impl(asio::any_io_executor ex, HttpServerOptions o, Handler h)
      : ex(ex), options(std::move(o)), handler(std::move(h)),
        registry(std::make_shared<io::ConnectionRegistry>(
            io::ConnectionLimits{options.max_connections, options.max_connections_per_address})),
        refusals_log(kRefusalLogInterval) {}

  // Over a cap with nothing idle to close: 503 and close, without waiting.
  void RefuseConnection(tcp::socket& socket, const std::string& address) {
    if (auto held = refusals_log.Pass())
      log::Warn("api: refused a connection from {} ({} open from it, {} in all); {} more refused since the last "
                "such line", address, registry->count(address), registry->size(), *held);
    std::string body = ErrorJson(503, "TOO_MANY_CONNECTIONS", "too many connections; retry later");
    std::string answer = fmt::format(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
        "Retry-After: 1\r\nConnection: close\r\n\r\n{}",
        body.size(), body);
    io::Refuse(socket, answer);
  }

  // While a handler works, a client that closes its connection (EOF or an
  // error, not more requests) is reported to `client`, so that the handler
  // can stop what it started for it. The watch ends when *result is false.
  static std::shared_ptr<bool> WatchForHangUp(beast::tcp_stream& stream, std::shared_ptr<ClientLink> client) {
    auto watching = std::make_shared<bool>(true);
    stream.socket().async_wait(tcp::socket::wait_read, [&stream, client, watching](const boost::system::error_code& ec) {
      if (ec || !*watching) return;
      char c;
      ssize_t n = ::recv(stream.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) client->SetGone();
    });
    return watching;
  }

  Task<void> SendSimple(beast::tcp_stream& stream, int status, std::string body, bool keep_alive) {
    http::response<http::string_body> res{static_cast<http::status>(status), 11};
    res.set(http::field::content_type, "application/json");
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    boost::system::error_code ec;
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
  }

  // The framing of a request head, by the preview listener's strict rules
  // (one Content-Length or one Transfer-Encoding: chunked, not both, none in
  // HTTP/1.0). Beast 1.74 alone reads a Transfer-Encoding whose last coding is
  // not "chunked" as "no body", and that body would then be served as the
  // next request on the connection (request smuggling).
  static Status CheckFraming(const http::request_parser<http::empty_body>& parser) {
    const auto& h = parser.get();
    cove::http::HttpHead head;
    head.version_minor = h.version() % 10;
    for (const auto& f : h)
      if (f.name() == http::field::transfer_encoding || f.name() == http::field::content_length)
        head.Add(std::string(f.name_string()), std::string(f.value()));
    auto framing = cove::http::RequestFraming(head);
    if (!framing.ok()) return std::move(framing).error();
    return OkStatus();
  }

  // On the accepting executor: counts the connection (or refuses it) and
  // hands it to the executor that serves it.
  void Accept(tcp::socket socket) {
    boost::system::error_code ec;
    auto remote = socket.remote_endpoint(ec);
    std::string address = ec ? "unknown" : remote.address().to_string();
    // Shedding may come from another thread than the connection's: it shuts
    // the socket down, and the connection closes it when its read ends.
    auto slot = registry->Admit(address, [fd = socket.native_handle()] { ::shutdown(fd, SHUT_RDWR); });
    if (!slot) {
      RefuseConnection(socket, address);
      return;
    }
    asio::any_io_executor there = options.connection_executor ? options.connection_executor() : ex;
    tcp::socket moved = io::MoveSocket(std::move(socket), there, ec);
    if (ec) return;  // the connection is gone already
    asio::co_spawn(there, Serve(std::move(moved), std::move(*slot)), asio::detached);
  }

  Task<void> Serve(tcp::socket socket, io::ConnectionRegistry::Slot admitted) {
    boost::system::error_code remote_ec;
    beast::tcp_stream stream(std::move(socket));
    // Declared after the stream, so uncounted before its descriptor closes (a
    // shed from another thread never shuts down a reused descriptor).
    std::optional<io::ConnectionRegistry::Slot> slot(std::move(admitted));
    // The idle timeout (a head, then its body) and the linger: when it
    // passes, the connection is shut down (not closed: the descriptor stays
    // this connection's until it is uncounted) and what waits on it ends.
    io::Deadline deadline(stream.get_executor(), [&stream] {
      boost::system::error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream.socket().cancel(ignored);
    });
    stream.socket().set_option(tcp::no_delay(true), remote_ec);
    beast::flat_buffer buffer;
    bool linger = false;  // an error answer ends the connection; input may be unread
    for (;;) {
      slot->Idle();
      deadline.Set(std::chrono::steady_clock::now() + kIdleTimeout);
      http::request_parser<http::empty_body> head;
      head.header_limit(64 * 1024);
      head.body_limit(std::numeric_limits<std::uint64_t>::max());
      boost::system::error_code ec;
      co_await http::async_read_header(stream, buffer, head, asio::redirect_error(asio::use_awaitable, ec));
      if (slot->shed()) co_return;  // closed to make room for another connection
      slot->Busy();
      if (ec) {
        if (ec != http::error::end_of_stream && ec != asio::error::eof && ec != asio::error::operation_aborted &&
            ec != asio::error::connection_reset) {
          log::Debug("bad request header: {}", ec.message());
          co_await SendSimple(stream, 400, ErrorJson(400, "BAD_REQUEST", "malformed HTTP request"), false);
          linger = true;
        }
        break;
      }
      if (auto framing = CheckFraming(head); !framing.ok()) {
        log::Debug("ambiguous request framing: {}", framing.error().message);
        co_await SendSimple(stream, 400,
                            ErrorJson(400, "BAD_REQUEST", "ambiguous request framing: " + framing.error().message),
                            false);
        linger = true;
        break;
      }
      HttpRequest req;
      const auto& h = head.get();
      req.method = std::string(h.method_string());
      req.target = std::string(h.target());
      SplitTarget(req.target, &req.path, &req.query);
      for (const auto& f : h) {
        std::string name(f.name_string());
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        req.headers[name] = std::string(f.value());
      }
      if (options.on_head) options.on_head(req);
      bool keep_alive = h.keep_alive();
      bool spool = options.spool_to_file && options.spool_to_file(req);
      if (auto length = head.content_length();
          length && *length > (spool ? options.max_spooled_bytes : options.max_body_bytes)) {
        co_await SendSimple(stream, 413, ErrorJson(413, "PAYLOAD_TOO_LARGE", "request body too large"), false);
        linger = true;
        break;
      }
      std::string spooled;
      std::optional<http::request<http::string_body>> upgrade;  // kept for the WebSocket handshake
      if (spool) {
        http::request_parser<http::file_body> p(std::move(head));
        p.body_limit(options.max_spooled_bytes);
        char tmpl[4096];
        snprintf(tmpl, sizeof tmpl, "%s/upload-XXXXXX", options.spool_dir.c_str());
        int fd = mkstemp(tmpl);
        if (fd < 0) {
          co_await SendSimple(stream, 500, ErrorJson(500, "INTERNAL_ERROR", "cannot spool upload"), false);
          break;
        }
        ::close(fd);
        spooled = tmpl;
        p.get().body().open(tmpl, beast::file_mode::write, ec);
        if (!ec) co_await http::async_read(stream, buffer, p, asio::redirect_error(asio::use_awaitable, ec));
        p.get().body().close();
        req.body_file = spooled;
      } else if (auto length = head.content_length(); length && !beast::websocket::is_upgrade(head.get())) {
        // A known length (the common case): straight into the body in large reads. Beast's
        // string_body parser read ~1 KiB per system call here (a 1 MiB body took ~1000).
        req.body.resize(static_cast<size_t>(*length));
        size_t have = asio::buffer_copy(asio::buffer(req.body), buffer.data());
        buffer.consume(have);
        if (have < req.body.size())
          co_await asio::async_read(stream, asio::buffer(req.body.data() + have, req.body.size() - have),
                                    asio::redirect_error(asio::use_awaitable, ec));
      } else {
        http::request_parser<http::string_body> p(std::move(head));
        p.body_limit(options.max_body_bytes);
        co_await http::async_read(stream, buffer, p, asio::redirect_error(asio::use_awaitable, ec));
        if (!ec) {
          if (beast::websocket::is_upgrade(p.get())) upgrade = p.get();
          req.body = std::move(p.get().body());
        }
      }
      if (ec) {
        if (!spooled.empty()) ::unlink(spooled.c_str());
        if (ec == http::error::body_limit)
          co_await SendSimple(stream, 413, ErrorJson(413, "PAYLOAD_TOO_LARGE", "request body too large"), false);
        else if (ec != asio::error::eof && ec != http::error::end_of_stream)
          co_await SendSimple(stream, 400, ErrorJson(400, "BAD_REQUEST", "malformed HTTP request body"), false);
        linger = true;
        break;
      }
      deadline.Clear();
      auto watch = upgrade ? nullptr : WatchForHangUp(stream, req.client);
      HttpResponse res = co_await handler(req);
      if (watch) {
        *watch = false;
        stream.socket().cancel(ec);
        ec = {};
      }
      if (!spooled.empty()) ::unlink(spooled.c_str());
      if (res.websocket && upgrade) {
        // Busy, so never shed while `ws` (which closes the descriptor first) lives.
        asio::any_io_executor here = stream.get_executor();
        BeastWebSocket ws(std::move(stream), here);
        if (co_await ws.Accept(*upgrade)) {
          co_await res.websocket(ws);
          co_await ws.Close();
        }
        co_return;
      }
      bool ok = co_await Respond(stream, res, keep_alive);
      if (!ok || !keep_alive) break;
    }
    boost::system::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (linger) {
      deadline.Set(std::chrono::steady_clock::now() + kLingerTime);
      co_await Drain(stream);
    }
  }

  // Reads and discards what the client still sends, until it closes, at most
  // kLingerBytes (the caller bounds it to kLingerTime).
  static Task<void> Drain(beast::tcp_stream& stream) {
    std::vector<char> scratch(16 * 1024);
    size_t drained = 0;
    while (drained < kLingerBytes) {
      boost::system::error_code ec;
      drained += co_await stream.async_read_some(asio::buffer(scratch), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
  }

  Task<bool> Respond(beast::tcp_stream& stream, HttpResponse& res, bool keep_alive) {
    boost::system::error_code ec;
    if (!res.stream) {
      http::response<http::string_body> out{static_cast<http::status>(res.status), 11};
      out.set(http::field::content_type, res.content_type);
      for (auto& [k, v] : res.headers) out.set(k, v);
      out.keep_alive(keep_alive);
      out.body() = std::move(res.body);
      out.prepare_payload();
      co_await http::async_write(stream, out, asio::redirect_error(asio::use_awaitable, ec));
      co_return !ec;
    }
    http::response<http::empty_body> out{static_cast<http::status>(res.status), 11};
    out.set(http::field::content_type, res.content_type);
    for (auto& [k, v] : res.headers) out.set(k, v);
    out.keep_alive(keep_alive);
    out.chunked(true);
    http::response_serializer<http::empty_body> sr(out);
    co_await http::async_write_header(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return false;
    ChunkedStream body(stream);
    co_await res.stream(body);
    if (body.gone() || body.aborted()) co_return false;  // closed without the last chunk
    stream.socket().cancel(ec);  // the readability wait of OnClientGone
    co_await asio::async_write(stream, http::make_chunk_last(), asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  asio::any_io_executor ex;
  HttpServerOptions options;
  Handler handler;
  std::shared_ptr<io::ConnectionRegistry> registry;
  std::shared_ptr<io::Listener> listener;
  LogThrottle refusals_log;
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() { impl_->listener->Close(); }

Result<std::unique_ptr<HttpServer>> HttpServer::Listen(asio::any_io_executor ex, HttpServerOptions options,
                                                       Handler handler) {
  auto impl = std::make_unique<Impl>(ex, std::move(options), std::move(handler));
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(impl->options.listen_host, ec);
  if (ec) return MakeError(ErrorCode::kInvalidArgument, "bad listen address " + impl->options.listen_host);
  impl->listener = io::Listener::Open(ex, tcp::endpoint(addr, impl->options.listen_port), "api", impl->registry, ec);
  if (ec)
    return SysError(fmt::format("listen on {}:{}", impl->options.listen_host, impl->options.listen_port),
                    ec.value());
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

void HttpServer::Start() {
  Impl* impl = impl_.get();
  impl->listener->Start([impl](tcp::socket socket) { impl->Accept(std::move(socket)); });
}

uint16_t HttpServer::port() const { return impl_->listener->local_endpoint().port(); }

}  // namespace cove::api
