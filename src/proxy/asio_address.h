// Conversions between cove's IpAddress (policy.h) and asio's ip::address.
#pragma once

#include <algorithm>

#include "manager/asio.h"
#include "proxy/policy.h"

namespace cove::proxy {

inline IpAddress FromAsioAddress(const asio::ip::address& a) {
  IpAddress out;
  if (a.is_v4()) {
    out.family = AF_INET;
    auto b = a.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), out.bytes);
  } else {
    out.family = AF_INET6;
    auto b = a.to_v6().to_bytes();
    std::copy(b.begin(), b.end(), out.bytes);
  }
  return out;
}

inline asio::ip::address ToAsioAddress(const IpAddress& a) {
  if (a.family == AF_INET) {
    asio::ip::address_v4::bytes_type b;
    std::copy(a.bytes, a.bytes + 4, b.begin());
    return asio::ip::address_v4(b);
  }
  asio::ip::address_v6::bytes_type b;
  std::copy(a.bytes, a.bytes + 16, b.begin());
  return asio::ip::address_v6(b);
}

}  // namespace cove::proxy
