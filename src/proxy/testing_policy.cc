// TEST-ONLY stand-in for policy.cc (IpAddress, HostPattern, Decide,
// IsNonGlobal), linked into the proxy's tests only, never into cove_proxy:
// enough of the documented evaluation order for the egress proxy's tests.
// Dropped when the real policy.cc lands.
#include <arpa/inet.h>

#include <cstring>

#include "proxy/policy.h"

namespace cove::proxy {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

bool Glob(const std::string& pattern, const std::string& text, size_t p = 0, size_t t = 0) {
  if (p == pattern.size()) return t == text.size();
  if (pattern[p] == '*') {
    for (size_t k = t; k <= text.size(); ++k) {
      if (Glob(pattern, text, p + 1, k)) return true;
    }
    return false;
  }
  return t < text.size() && pattern[p] == text[t] && Glob(pattern, text, p + 1, t + 1);
}

// "a.b.c.d/len" or a literal; true when addr is inside.
bool InCidr(const std::string& text, const IpAddress& addr) {
  size_t slash = text.find('/');
  auto base = IpAddress::Parse(text.substr(0, slash));
  if (!base || base->family != addr.family) return false;
  int bits = base->family == AF_INET ? 32 : 128;
  int len = slash == std::string::npos ? bits : std::stoi(text.substr(slash + 1));
  for (int i = 0; i < len; ++i) {
    int mask = 0x80 >> (i % 8);
    if ((base->bytes[i / 8] & mask) != (addr.bytes[i / 8] & mask)) return false;
  }
  return true;
}

bool IsAddressPattern(const std::string& text) {
  return IpAddress::Parse(text.substr(0, text.find('/'))).has_value();
}

bool PortMatches(const HostRule& rule, uint16_t port) {
  if (rule.ports.empty()) return port == 80 || port == 443;
  for (uint16_t p : rule.ports) {
    if (p == port) return true;
  }
  return false;
}

}  // namespace

std::optional<IpAddress> IpAddress::Parse(const std::string& text) {
  IpAddress out;
  if (inet_pton(AF_INET, text.c_str(), out.bytes) == 1) {
    out.family = AF_INET;
    return out;
  }
  if (inet_pton(AF_INET6, text.c_str(), out.bytes) == 1) {
    out.family = AF_INET6;
    return out;
  }
  return std::nullopt;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes, buf, sizeof buf);
  return buf;
}

Result<HostPattern> HostPattern::Parse(const std::string& text) { return HostPattern{Lower(text)}; }

bool HostPattern::Matches(const std::string& host, const std::optional<IpAddress>& addr) const {
  if (IsAddressPattern(text)) {
    if (addr && InCidr(text, *addr)) return true;
    auto literal = IpAddress::Parse(host);
    return literal && InCidr(text, *literal);
  }
  return Glob(text, Lower(host));
}

bool HostPattern::NamesExplicitly(const std::string& host, const std::optional<IpAddress>& addr) const {
  if (text.find('*') != std::string::npos) return false;
  return Matches(host, addr);
}

bool IsNonGlobal(const IpAddress& addr) {
  if (addr.family == AF_INET) {
    uint8_t a = addr.bytes[0], b = addr.bytes[1];
    return a == 0 || a == 10 || a == 127 || (a == 169 && b == 254) || (a == 172 && (b & 0xf0) == 16) ||
           (a == 192 && b == 168) || (a == 100 && (b & 0xc0) == 64) || a >= 224;
  }
  static const uint8_t kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return std::memcmp(addr.bytes, kLoopback, 16) == 0 || (addr.bytes[0] & 0xfe) == 0xfc || addr.bytes[0] == 0xff ||
         (addr.bytes[0] == 0xfe && (addr.bytes[1] & 0xc0) == 0x80);
}

Decision Decide(const EgressPolicy& policy, const Destination& dest) {
  Decision d;
  for (const auto& p : policy.denied_hosts) {
    if (p.Matches(dest.host, dest.address)) {
      d.reason = "deniedHosts: " + p.text;
      return d;
    }
  }
  bool in_allowed = false;
  bool named = false;
  for (const auto& p : policy.allowed_hosts) {
    if (p.Matches(dest.host, dest.address)) in_allowed = true;
    if (p.NamesExplicitly(dest.host, dest.address)) named = true;
  }
  if (!policy.allowed_hosts.empty() && !in_allowed) {
    d.reason = "not in allowedHosts: " + dest.host;
    return d;
  }
  for (const auto& rule : policy.rules) {
    if (!rule.host.Matches(dest.host, dest.address) || !PortMatches(rule, dest.port)) continue;
    if (rule.host.NamesExplicitly(dest.host, dest.address)) named = true;
    d.rule = &rule;
    d.allow = rule.allow;
    d.reason = std::string(rule.allow ? "allowed" : "denied") + " by the rule for " + rule.host.text;
    break;
  }
  if (!d.rule) {
    if (in_allowed) {
      d.allow = true;
      d.reason = "allowedHosts";
    } else if (policy.enable_internet) {
      d.allow = true;
      d.reason = "enableInternet";
    } else {
      d.reason = "internet access disabled";
      return d;
    }
  }
  if (d.allow && dest.address && IsNonGlobal(*dest.address) && !named) {
    d.allow = false;
    d.rule = nullptr;
    d.reason = "non-global address " + dest.address->ToString() + " not named explicitly";
  }
  return d;
}

}  // namespace cove::proxy
