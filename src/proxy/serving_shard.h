// ServingShard: one io thread (io/shards.h) the egress proxy and DNS serve
// connections on, with the Resolver that runs there. UpstreamResolver is
// single-threaded (its sockets and cache belong to one executor), so coved
// makes one per shard and a connection resolves with its own shard's.
#pragma once

#include <memory>

#include "io/asio.h"
#include "proxy/resolver.h"

namespace cove::proxy {

struct ServingShard {
  asio::any_io_executor executor;
  std::shared_ptr<Resolver> resolver;  // runs on `executor`
};

}  // namespace cove::proxy
