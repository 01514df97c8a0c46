// HopStream: one side of a connection the egress proxy relays, as one stream
// whether or not TLS runs on it (interception terminates the sandbox's TLS
// and speaks TLS to the upstream): reads and writes go through TLS once it
// was started. PrefixedSocket hands the bytes already read from the socket
// (the ClientHello the proxy looked at) to the TLS stream first.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include <boost/asio/ssl.hpp>

#include "io/asio.h"
#include "io/byte_stream.h"

namespace cove::proxy {

namespace ssl = asio::ssl;

// The next layer of an intercepted client's TLS stream: first the bytes the
// proxy already read (the ClientHello it looked at), then the socket.
class PrefixedSocket {
 public:
  using executor_type = asio::ip::tcp::socket::executor_type;
  using lowest_layer_type = asio::ip::tcp::socket::lowest_layer_type;
  PrefixedSocket(asio::ip::tcp::socket& socket, std::string prefix) : socket_(&socket), prefix_(std::move(prefix)) {}
  executor_type get_executor() { return socket_->get_executor(); }
  lowest_layer_type& lowest_layer() { return socket_->lowest_layer(); }
  const lowest_layer_type& lowest_layer() const { return socket_->lowest_layer(); }

  template <class Buffers, class Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    auto init = [this](auto handler, const Buffers& b) {
      if (prefix_.empty()) {
        socket_->async_read_some(b, std::move(handler));
        return;
      }
      size_t n = asio::buffer_copy(b, asio::buffer(prefix_));
      prefix_.erase(0, n);
      auto ex = asio::get_associated_executor(handler, socket_->get_executor());
      asio::post(ex, [h = std::move(handler), n]() mutable { std::move(h)(boost::system::error_code(), n); });
    };
    return asio::async_initiate<Token, void(boost::system::error_code, size_t)>(init, token, buffers);
  }
  template <class Buffers, class Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    return socket_->async_write_some(buffers, std::forward<Token>(token));
  }

 private:
  asio::ip::tcp::socket* socket_;
  std::string prefix_;
};

using TlsStream = ssl::stream<PrefixedSocket>;

// One side of a proxied connection: a TCP socket, and once TLS was set up on
// it (interception), the TLS stream over it. Reads and writes go through TLS
// when there is one. Must not move once TLS is started. As an
// io::ByteStream it is what the HTTP relay (http/message_relay.h) reads and
// writes; ShutdownSend passes a half-close on only without TLS.
class HopStream : public io::ByteStream {
 public:
  using executor_type = asio::ip::tcp::socket::executor_type;
  explicit HopStream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}
  explicit HopStream(const executor_type& ex) : socket_(ex) {}
  HopStream(const HopStream&) = delete;
  HopStream& operator=(const HopStream&) = delete;

  executor_type get_executor() { return socket_.get_executor(); }
  asio::ip::tcp::socket& socket() override { return socket_; }

  bool tls() const { return tls_ != nullptr; }
  TlsStream& tls_stream() { return *tls_; }
  // Starts TLS on the socket; `prefix` holds bytes already read from it.
  TlsStream& StartTls(ssl::context& context, std::string prefix) {
    tls_ = std::make_unique<TlsStream>(PrefixedSocket(socket_, std::move(prefix)), context);
    return *tls_;
  }
  // A new, closed socket without TLS.
  void Reset() {
    tls_.reset();
    boost::system::error_code ignored;
    socket_.close(ignored);
    socket_ = asio::ip::tcp::socket(socket_.get_executor());
  }

  template <class Buffers, class Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    auto init = [this](auto handler, const Buffers& b) {
      if (tls_) {
        // A peer that closes without close_notify ends its stream like EOF
        // (what frames a body read until the connection closes).
        auto ex = asio::get_associated_executor(handler, socket_.get_executor());
        auto done = [h = std::move(handler)](boost::system::error_code ec, size_t n) mutable {
          if (ec == ssl::error::stream_truncated) ec = asio::error::eof;
          std::move(h)(ec, n);
        };
        tls_->async_read_some(b, asio::bind_executor(ex, std::move(done)));
      } else {
        socket_.async_read_some(b, std::move(handler));
      }
    };
    return asio::async_initiate<Token, void(boost::system::error_code, size_t)>(init, token, buffers);
  }
  template <class Buffers, class Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    auto init = [this](auto handler, const Buffers& b) {
      if (tls_) {
        tls_->async_write_some(b, std::move(handler));
      } else {
        socket_.async_write_some(b, std::move(handler));
      }
    };
    return asio::async_initiate<Token, void(boost::system::error_code, size_t)>(init, token, buffers);
  }

  // io::ByteStream (after the templates it uses)
  Task<size_t> ReadSome(asio::mutable_buffer buf, io::IoError& ec) override {
    size_t n = co_await async_read_some(buf, asio::redirect_error(asio::use_awaitable, ec));
    co_return n;
  }
  Task<void> WriteAll(asio::const_buffer buf, io::IoError& ec) override {
    co_await asio::async_write(*this, buf, asio::redirect_error(asio::use_awaitable, ec));
  }
  void ShutdownSend() override {
    if (tls_) return;
    io::IoError ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  }
  void Close() override {
    io::IoError ignored;
    socket_.close(ignored);
  }

 private:
  asio::ip::tcp::socket socket_;
  std::unique_ptr<TlsStream> tls_;
};

}  // namespace cove::proxy
