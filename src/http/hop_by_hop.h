// The hop-by-hop rules of HTTP/1 (RFC 9110 §7.6.1) that every relay of cove
// applies, whatever parser it uses: the fields that never go past one hop,
// and which fields a Connection header may name to be dropped.
#pragma once

#include <array>
#include <string_view>

namespace cove::http {

// Dropped by every relay (Upgrade is carried on by a relay that passes the
// upgrade through).
inline constexpr std::array<std::string_view, 8> kHopByHopFields = {
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "upgrade"};

// Whether a field named in Connection is dropped: framing (Transfer-Encoding,
// Content-Length) and the target host are not the sender's to drop.
bool ConnectionMayDrop(std::string_view field);

}  // namespace cove::http
