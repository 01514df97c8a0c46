#include "preview/host_route.h"

#include <sys/random.h>

#include <fmt/format.h>

namespace cove::preview {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::optional<HostRoute> ParseHost(std::string_view host, std::string_view domain) {
  if (host.empty() || host.size() > 512) return std::nullopt;
  // Strip ":port" (host names here are never IPv6 literals).
  if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    std::string_view p = host.substr(colon + 1);
    if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
    host = host.substr(0, colon);
  }
  std::string h = Lower(host);
  if (!h.empty() && h.back() == '.') h.pop_back();  // the absolute form "name.localhost."
  std::string suffix = "." + Lower(domain);
  if (h.size() <= suffix.size() || h.compare(h.size() - suffix.size(), suffix.size(), suffix) != 0)
    return std::nullopt;
  std::string label = h.substr(0, h.size() - suffix.size());
  if (label.find('.') != std::string::npos) return std::nullopt;
  size_t first = label.find('-'), last = label.rfind('-');
  if (first == std::string::npos || last == first || first == 0 || last + 1 == label.size() || last == first + 1)
    return std::nullopt;
  std::string port_text = label.substr(0, first);
  if (port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string::npos ||
      port_text[0] == '0')
    return std::nullopt;
  unsigned long port = std::stoul(port_text);
  if (port == 0 || port > 65535) return std::nullopt;
  HostRoute r;
  r.port = static_cast<uint16_t>(port);
  r.sandbox_id = label.substr(first + 1, last - first - 1);
  r.token = label.substr(last + 1);
  if (!ValidToken(r.token)) return std::nullopt;
  return r;
}

std::string PreviewUrl(bool tls, std::string_view domain, uint16_t listen_port, uint16_t port,
                       std::string_view sandbox_id, std::string_view token) {
  std::string url = fmt::format("{}://{}-{}-{}.{}", tls ? "https" : "http", port, sandbox_id, token, domain);
  if (listen_port != (tls ? 443 : 80)) url += fmt::format(":{}", listen_port);
  return url;
}

bool ValidToken(std::string_view token) {
  if (token.empty() || token.size() > 16) return false;
  for (char c : token)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}

std::string RandomToken() {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string out;
  while (out.size() < 16) {
    unsigned char raw[32];
    ssize_t n = ::getrandom(raw, sizeof raw, 0);
    if (n <= 0) continue;
    for (ssize_t i = 0; i < n && out.size() < 16; ++i)
      if (raw[i] < 252) out += kAlphabet[raw[i] % 36];  // 252 = 7 * 36: no modulo bias
  }
  return out;
}

}  // namespace cove::preview
