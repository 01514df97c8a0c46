// The one way cove code includes Boost.Asio (coroutines on, the GCC 12 include fix applied).
#pragma once

#include <utility>  // asio 1.74's awaitable.hpp uses std::exchange without including it

#include <boost/asio.hpp>

namespace cove {
namespace asio = boost::asio;
template <typename T = void>
using Task = asio::awaitable<T>;
}  // namespace cove
