#include "io/move_socket.h"

#include <unistd.h>

namespace cove::io {

asio::ip::tcp::socket MoveSocket(asio::ip::tcp::socket socket, const asio::any_io_executor& to,
                                 boost::system::error_code& ec) {
  ec.clear();
  if (socket.get_executor() == to) return socket;
  auto protocol = socket.local_endpoint(ec).protocol();
  asio::ip::tcp::socket moved(to);
  if (ec) return moved;  // the connection is gone already (the socket closes with `socket`)
  int fd = socket.release(ec);
  if (ec) return moved;
  moved.assign(protocol, fd, ec);
  if (ec) ::close(fd);
  return moved;
}

}  // namespace cove::io
