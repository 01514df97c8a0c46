#include "io/byte_stream.h"

#include <boost/asio/ssl.hpp>

namespace cove::io {
namespace {

class TcpStream : public ByteStream {
 public:
  explicit TcpStream(tcp::socket s) : socket_(std::move(s)) {}
  Task<size_t> ReadSome(asio::mutable_buffer buf, IoError& ec) override {
    size_t n = co_await socket_.async_read_some(buf, asio::redirect_error(asio::use_awaitable, ec));
    co_return n;
  }
  Task<void> WriteAll(asio::const_buffer buf, IoError& ec) override {
    co_await asio::async_write(socket_, buf, asio::redirect_error(asio::use_awaitable, ec));
  }
  void ShutdownSend() override {
    IoError ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
  }
  void Close() override {
    IoError ec;
    socket_.close(ec);
  }
  tcp::socket& socket() override { return socket_; }

 private:
  tcp::socket socket_;
};

class TlsStream : public ByteStream {
 public:
  TlsStream(tcp::socket s, asio::ssl::context& ctx) : stream_(std::move(s), ctx) {}
  Task<void> Handshake(IoError& ec) {
    co_await stream_.async_handshake(asio::ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
  }
  Task<size_t> ReadSome(asio::mutable_buffer buf, IoError& ec) override {
    size_t n = co_await stream_.async_read_some(buf, asio::redirect_error(asio::use_awaitable, ec));
    co_return n;
  }
  Task<void> WriteAll(asio::const_buffer buf, IoError& ec) override {
    co_await asio::async_write(stream_, buf, asio::redirect_error(asio::use_awaitable, ec));
  }
  void ShutdownSend() override {}
  void Close() override {
    IoError ec;
    stream_.lowest_layer().close(ec);
  }
  tcp::socket& socket() override { return stream_.next_layer(); }

 private:
  asio::ssl::stream<tcp::socket> stream_;
};

}  // namespace

std::unique_ptr<ByteStream> MakeTcpStream(tcp::socket socket) { return std::make_unique<TcpStream>(std::move(socket)); }

std::unique_ptr<ByteStream> MakeTlsStream(tcp::socket socket, asio::ssl::context& ctx) {
  return std::make_unique<TlsStream>(std::move(socket), ctx);
}

Task<void> TlsHandshake(ByteStream& stream, IoError& ec) {
  co_await static_cast<TlsStream&>(stream).Handshake(ec);
}

Result<std::shared_ptr<asio::ssl::context>> MakeTlsContext(const std::string& cert_file, const std::string& key_file) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  IoError ec;
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1,
                   ec);
  if (!ec) ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) return MakeError(ErrorCode::kInvalidArgument, "preview TLS certificate " + cert_file + ": " + ec.message());
  ctx->use_private_key_file(key_file, asio::ssl::context::pem, ec);
  if (ec) return MakeError(ErrorCode::kInvalidArgument, "preview TLS key " + key_file + ": " + ec.message());
  return ctx;
}

}  // namespace cove::io
