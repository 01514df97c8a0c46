// Conversions between the policy's IpAddress and Asio's address types.
#pragma once

#include "io/asio.h"
#include "policy/egress_policy.h"

namespace cove::proxy {

IpAddress FromAsioAddress(const asio::ip::address& address);
asio::ip::address ToAsioAddress(const IpAddress& address);

}  // namespace cove::proxy
