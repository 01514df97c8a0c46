// MoveSocket: hands an accepted TCP socket over to another executor (another
// io thread, io/shards.h), keeping its descriptor: the listeners accept at
// home and serve each connection on a shard in turn. A socket is bound to
// the executor it was made with; this makes a new one on `to` around the same
// descriptor. Call it on the thread that owns `socket`, before any operation
// on it is pending.
#pragma once

#include "io/asio.h"

namespace cove::io {

// The same connection on `to` (the socket itself when `to` is its executor
// already). On failure `ec` is set and the connection is closed.
asio::ip::tcp::socket MoveSocket(asio::ip::tcp::socket socket, const asio::any_io_executor& to,
                                 boost::system::error_code& ec);

}  // namespace cove::io
