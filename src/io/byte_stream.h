// ByteStream: one side of a relayed connection as plain bytes, so that a
// relay treats TCP and TLS clients (and TCP upstreams) alike. All operations
// run on the stream's executor; at most one read and one write may be
// pending at a time. Close() ends pending operations (operation_aborted).
#pragma once

#include <memory>
#include <string>

#include "base/error.h"
#include "io/asio.h"

namespace boost::asio::ssl {
class context;
}

namespace cove::io {

using tcp = asio::ip::tcp;
using IoError = boost::system::error_code;

class ByteStream {
 public:
  virtual ~ByteStream() = default;
  // Reads at least one byte into buf; 0 with ec set at EOF or on error.
  virtual Task<size_t> ReadSome(asio::mutable_buffer buf, IoError& ec) = 0;
  virtual Task<void> WriteAll(asio::const_buffer buf, IoError& ec) = 0;
  // Signals the end of what this side sends (TCP half-close; TLS: nothing until Close).
  virtual void ShutdownSend() = 0;
  virtual void Close() = 0;
  // The TCP socket underneath (timeouts cancel it; peer address).
  virtual tcp::socket& socket() = 0;
};

std::unique_ptr<ByteStream> MakeTcpStream(tcp::socket socket);
// A server-side TLS stream; call TlsHandshake before anything else.
std::unique_ptr<ByteStream> MakeTlsStream(tcp::socket socket, asio::ssl::context& ctx);
// The server handshake of a stream made by MakeTlsStream.
Task<void> TlsHandshake(ByteStream& stream, IoError& ec);

// A TLS server context from PEM files (certificate chain, private key).
Result<std::shared_ptr<asio::ssl::context>> MakeTlsContext(const std::string& cert_file, const std::string& key_file);

}  // namespace cove::io
