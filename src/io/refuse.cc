#include "io/refuse.h"

#include <sys/socket.h>

namespace cove::io {

void Refuse(asio::ip::tcp::socket& socket, std::string_view answer) {
  int fd = socket.native_handle();
  if (fd >= 0 && !answer.empty()) {
    // A fresh socket's send buffer is empty: a short answer fits, or nothing is sent.
    ssize_t unused = ::send(fd, answer.data(), answer.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)unused;
  }
  if (fd >= 0) {
    char sink[4096];
    for (int i = 0; i < 16 && ::recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {
    }
    ::shutdown(fd, SHUT_WR);
  }
  boost::system::error_code ignored;
  socket.close(ignored);
}

}  // namespace cove::io
