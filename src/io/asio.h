// The one way cove code includes Boost.Asio (coroutines on, the GCC 12 include fix applied).
#pragma once

#include <utility>  // asio 1.74's awaitable.hpp uses std::exchange without including it

#include <boost/asio.hpp>

namespace cove {
namespace asio = boost::asio;
template <typename T = void>
using Task = asio::awaitable<T>;
}  // namespace cove

namespace cove {
// Opens `acceptor` on `at` with SO_REUSEADDR and starts listening; the error
// of the step that failed (the caller names the listener in its message).
inline boost::system::error_code OpenListening(asio::ip::tcp::acceptor& acceptor, const asio::ip::tcp::endpoint& at) {
  boost::system::error_code ec;
  acceptor.open(at.protocol(), ec);
  if (!ec) acceptor.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(at, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  return ec;
}
}  // namespace cove
