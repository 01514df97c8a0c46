#include "proxy/asio_address.h"

#include <cstring>

namespace cove::proxy {

IpAddress FromAsioAddress(const asio::ip::address& address) {
  IpAddress out;
  if (address.is_v4()) {
    out.family = AF_INET;
    auto bytes = address.to_v4().to_bytes();
    std::memcpy(out.bytes, bytes.data(), bytes.size());
  } else {
    auto v6 = address.to_v6();
    if (v6.is_v4_mapped()) return FromAsioAddress(asio::ip::make_address_v4(asio::ip::v4_mapped, v6));
    out.family = AF_INET6;
    auto bytes = v6.to_bytes();
    std::memcpy(out.bytes, bytes.data(), bytes.size());
  }
  return out;
}

asio::ip::address ToAsioAddress(const IpAddress& address) {
  if (address.family == AF_INET) {
    asio::ip::address_v4::bytes_type bytes;
    std::memcpy(bytes.data(), address.bytes, bytes.size());
    return asio::ip::address_v4(bytes);
  }
  asio::ip::address_v6::bytes_type bytes;
  std::memcpy(bytes.data(), address.bytes, bytes.size());
  return asio::ip::address_v6(bytes);
}

}  // namespace cove::proxy
