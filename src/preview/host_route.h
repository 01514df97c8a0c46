// HostRoute: the preview URL's host name, Cloudflare's format:
//   {port}-{sandbox id}-{token}.{preview domain}
// Sandbox ids may contain '-' and tokens may not: the first '-'-separated field
// is the port, the last the token, everything between the id.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cove::preview {

struct HostRoute {
  uint16_t port = 0;
  std::string sandbox_id;
  std::string token;
};

// Parses a Host header value (with or without ":port"; case-insensitive)
// against `domain`. nullopt when it does not name a preview route of this
// domain; the fields are syntactically checked only (ports 1-65535, id and
// token non-empty), not looked up.
std::optional<HostRoute> ParseHost(std::string_view host, std::string_view domain);

// "http://{port}-{id}-{token}.{domain}:{listen_port}" (":{listen_port}" left out
// when it is the scheme's default).
std::string PreviewUrl(bool tls, std::string_view domain, uint16_t listen_port, uint16_t port,
                       std::string_view sandbox_id, std::string_view token);

// A valid exposure token: 1-16 characters of [a-z0-9_].
bool ValidToken(std::string_view token);
// A new random token: 16 characters of [a-z0-9].
std::string RandomToken();

}  // namespace cove::preview
