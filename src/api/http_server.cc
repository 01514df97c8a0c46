#include "api/http_server.h"
#include "api/target.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "base/log.h"
#include "manager/async_signal.h"

namespace cove::api {
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kIdleTimeout = std::chrono::seconds(120);

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
  bool gone() const { return gone_; }
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
      : ex(ex), options(std::move(o)), handler(std::move(h)), acceptor(ex) {}

  Task<void> AcceptLoop() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted) co_return;
        log::Warn("accept failed: {}", ec.message());
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);
      asio::co_spawn(ex, Serve(std::move(socket)), asio::detached);
    }
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

  Task<void> Serve(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
      stream.expires_after(kIdleTimeout);
      http::request_parser<http::empty_body> head;
      head.header_limit(64 * 1024);
      head.body_limit(std::numeric_limits<std::uint64_t>::max());
      boost::system::error_code ec;
      co_await http::async_read_header(stream, buffer, head, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec != http::error::end_of_stream && ec != asio::error::eof && ec != beast::error::timeout &&
            ec != asio::error::connection_reset) {
          log::Debug("bad request header: {}", ec.message());
          co_await SendSimple(stream, 400, ErrorJson(400, "BAD_REQUEST", "malformed HTTP request"), false);
        }
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
        break;
      }
      stream.expires_never();
      HttpResponse res = co_await handler(req);
      if (!spooled.empty()) ::unlink(spooled.c_str());
      if (res.websocket && upgrade) {
        BeastWebSocket ws(std::move(stream), ex);
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
    if (body.gone()) co_return false;
    stream.socket().cancel(ec);  // the readability wait of OnClientGone
    co_await asio::async_write(stream, http::make_chunk_last(), asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  asio::any_io_executor ex;
  HttpServerOptions options;
  Handler handler;
  tcp::acceptor acceptor;
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() {
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
}

Result<std::unique_ptr<HttpServer>> HttpServer::Listen(asio::any_io_executor ex, HttpServerOptions options,
                                                       Handler handler) {
  auto impl = std::make_unique<Impl>(ex, std::move(options), std::move(handler));
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(impl->options.listen_host, ec);
  if (ec) return MakeError(ErrorCode::kInvalidArgument, "bad listen address " + impl->options.listen_host);
  ec = OpenListening(impl->acceptor, tcp::endpoint(addr, impl->options.listen_port));
  if (ec)
    return SysError(fmt::format("listen on {}:{}", impl->options.listen_host, impl->options.listen_port),
                    ec.value());
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

void HttpServer::Start() { asio::co_spawn(impl_->ex, impl_->AcceptLoop(), asio::detached); }

uint16_t HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

}  // namespace cove::api
