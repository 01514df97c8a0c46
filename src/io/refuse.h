// Refuse: turns a just-accepted connection away without waiting for it:
// writes `answer` (e.g. an HTTP 503; may be empty) only if the socket takes
// all of it at once, discards what the client has sent so far (so that the
// close is a FIN rather than a reset that could destroy the answer), and
// closes the socket. Never blocks.
#pragma once

#include <string_view>

#include "io/asio.h"

namespace cove::io {

void Refuse(asio::ip::tcp::socket& socket, std::string_view answer);

}  // namespace cove::io
