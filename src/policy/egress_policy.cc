// Egress policy: parsing, JSON and the evaluation order of egress_policy.h.
//
// Host patterns keep only their text; their kind (glob, exact name, address,
// CIDR) is recomputed from it when matching, so a HostPattern built by hand
// behaves like a parsed one.
#include "base/ascii.h"
#include "policy/egress_policy.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "policy/header_template.h"

namespace cove::proxy {

namespace {

using Json = nlohmann::json;

constexpr size_t kMaxHostLength = 253;
constexpr size_t kMaxLabelLength = 63;
constexpr size_t kMaxListEntries = 1024;
constexpr size_t kMaxRuleHeaders = 64;
constexpr size_t kMaxTemplateLength = 8192;

// "[v6]" -> "v6"; anything else unchanged.
std::string StripBrackets(const std::string& s) {
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') return s.substr(1, s.size() - 2);
  return s;
}

// A host as compared with patterns: lower-case, no brackets, no trailing dot.
std::string CanonicalHost(const std::string& host) {
  std::string h = AsciiLower(StripBrackets(host));
  if (h.size() > 1 && h.back() == '.') h.pop_back();
  return h;
}

// An IPv4 address embedded in an IPv4-mapped (::ffff:0:0/96) or NAT64
// (64:ff9b::/96) IPv6 address; nullopt for anything else.
std::optional<IpAddress> EmbeddedV4(const IpAddress& a) {
  if (a.family != AF_INET6) return std::nullopt;
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static constexpr uint8_t kNat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::memcmp(a.bytes, kMapped, 12) != 0 && std::memcmp(a.bytes, kNat64, 12) != 0) return std::nullopt;
  IpAddress v4;
  v4.family = AF_INET;
  std::memcpy(v4.bytes, a.bytes + 12, 4);
  return v4;
}

int AddressBits(const IpAddress& a) { return a.family == AF_INET ? 32 : 128; }

// True when the first `prefix` bits of a and b are equal (same family).
bool SamePrefix(const IpAddress& a, const IpAddress& b, int prefix) {
  if (a.family != b.family) return false;
  int full = prefix / 8;
  if (std::memcmp(a.bytes, b.bytes, full) != 0) return false;
  int rest = prefix % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a.bytes[full] & mask) == (b.bytes[full] & mask);
}

struct Cidr {
  IpAddress network;
  int prefix = 0;
  bool Contains(const IpAddress& a) const {
    if (SamePrefix(network, a, prefix)) return true;
    // An IPv4 range also holds the IPv4-mapped and NAT64 forms of its addresses.
    if (network.family == AF_INET) {
      if (auto v4 = EmbeddedV4(a)) return SamePrefix(network, *v4, prefix);
    }
    return false;
  }
};

// Parses "addr/len" or a bare address (a /32 or /128); nullopt otherwise.
// *why is set when the text looks like a CIDR but is malformed.
std::optional<Cidr> ParseCidr(const std::string& text, std::string* why = nullptr) {
  size_t slash = text.find('/');
  std::string addr_text = slash == std::string::npos ? text : text.substr(0, slash);
  auto addr = IpAddress::Parse(addr_text);
  if (!addr) {
    if (why && slash != std::string::npos) *why = fmt::format("'{}' is not an IP address", addr_text);
    return std::nullopt;
  }
  Cidr c{*addr, AddressBits(*addr)};
  if (slash == std::string::npos) return c;
  std::string len_text = text.substr(slash + 1);
  if (len_text.empty() || len_text.size() > 3 ||
      !std::all_of(len_text.begin(), len_text.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    if (why) *why = fmt::format("prefix length '{}' is not a number", len_text);
    return std::nullopt;
  }
  int len = std::stoi(len_text);
  if (len > AddressBits(*addr)) {
    if (why) *why = fmt::format("prefix length {} is longer than {}", len, AddressBits(*addr));
    return std::nullopt;
  }
  c.prefix = len;
  // Host bits must be zero: "10.0.0.1/8" is more likely a typo than intent.
  IpAddress masked{};
  masked.family = addr->family;
  for (int bit = 0; bit < len; ++bit)
    if (addr->bytes[bit / 8] & (0x80 >> (bit % 8))) masked.bytes[bit / 8] |= static_cast<uint8_t>(0x80 >> (bit % 8));
  if (!(masked == *addr)) {
    if (why) *why = fmt::format("'{}' has host bits set (network is {}/{})", text, masked.ToString(), len);
    return std::nullopt;
  }
  return c;
}

// '*' matches any run of characters (including '.'); everything else itself.
bool GlobMatch(std::string_view pattern, std::string_view s) {
  size_t p = 0, i = 0;
  size_t star = std::string_view::npos, star_i = 0;
  while (i < s.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_i = i;
    } else if (p < pattern.size() && pattern[p] == s[i]) {
      ++p;
      ++i;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      i = ++star_i;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '*';
}

// Validates a lower-case name or glob; empty string when fine.
std::string CheckNamePattern(const std::string& t) {
  if (t.size() > kMaxHostLength) return fmt::format("longer than {} characters", kMaxHostLength);
  size_t label_start = 0;
  for (size_t i = 0; i <= t.size(); ++i) {
    if (i == t.size() || t[i] == '.') {
      size_t len = i - label_start;
      if (len == 0) return "has an empty label";
      if (len > kMaxLabelLength) return fmt::format("has a label longer than {} characters", kMaxLabelLength);
      label_start = i + 1;
    } else if (!IsNameChar(t[i])) {
      return fmt::format("holds the character '{}' (allowed: letters, digits, '-', '_', '.', '*')", t[i]);
    }
  }
  return {};
}

// The address to judge a destination by: the resolved one, or the host itself
// when it is an IP literal.
std::optional<IpAddress> HostAsAddress(const std::string& host) { return IpAddress::Parse(host); }

bool PortAllowedByRule(const HostRule& rule, uint16_t port) {
  if (rule.ports.empty()) return port == 80 || port == 443;
  return std::find(rule.ports.begin(), rule.ports.end(), port) != rule.ports.end();
}

bool RuleApplies(const HostRule& rule, const Destination& dest, const std::string& host) {
  if (!rule.host.Matches(host, dest.address)) return false;
  if (!PortAllowedByRule(rule, dest.port)) return false;
  if (!dest.method.empty() && !rule.methods.empty()) {
    std::string method = dest.method;
    for (char& c : method)
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (std::find(rule.methods.begin(), rule.methods.end(), method) == rule.methods.end()) return false;
  }
  if (!dest.path.empty() && !rule.path_prefix.empty() && dest.path.compare(0, rule.path_prefix.size(), rule.path_prefix) != 0)
    return false;
  return true;
}

// Non-global destinations need an explicit allowedHosts or allowing rule entry.
bool NamedExplicitly(const EgressPolicy& policy, const std::string& host, const std::optional<IpAddress>& addr) {
  for (const auto& p : policy.allowed_hosts)
    if (p.NamesExplicitly(host, addr)) return true;
  for (const auto& r : policy.rules)
    if (r.allow && r.host.NamesExplicitly(host, addr)) return true;
  return false;
}

// Every non-global address the destination involves (resolved and literal).
std::optional<IpAddress> NonGlobalAddress(const Destination& dest, const std::string& host) {
  if (dest.address && IsNonGlobal(*dest.address)) return dest.address;
  auto literal = HostAsAddress(host);
  if (literal && IsNonGlobal(*literal)) return literal;
  return std::nullopt;
}

Decision Deny(std::string reason, const HostRule* rule = nullptr) { return Decision{false, rule, std::move(reason)}; }

// Typed reads of the policy JSON; each names the field it complains about.
Error FieldError(const std::string& field, const std::string& what) {
  return MakeError(ErrorCode::kInvalidArgument, fmt::format("egress policy: {} {}", field, what));
}

Status CheckKnownKeys(const Json& obj, const std::string& where, std::initializer_list<const char*> known) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    bool ok = std::any_of(known.begin(), known.end(), [&](const char* k) { return it.key() == k; });
    if (!ok) return FieldError(where.empty() ? fmt::format("'{}'", it.key()) : fmt::format("{}.{}", where, it.key()),
                               "is not a known field");
  }
  return OkStatus();
}

Result<std::vector<HostPattern>> ParsePatternList(const Json& j, const std::string& field) {
  if (!j.is_array()) return FieldError(field, "must be an array of strings");
  if (j.size() > kMaxListEntries) return FieldError(field, fmt::format("has more than {} entries", kMaxListEntries));
  std::vector<HostPattern> out;
  for (size_t i = 0; i < j.size(); ++i) {
    std::string name = fmt::format("{}[{}]", field, i);
    if (!j[i].is_string()) return FieldError(name, "must be a string");
    auto p = HostPattern::Parse(j[i].get<std::string>());
    if (!p.ok()) return FieldError(name, p.error().message);
    out.push_back(std::move(*p));
  }
  return out;
}

bool IsToken(const std::string& s) {
  if (s.empty() || s.size() > 256) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
    if (!ok || c == '\0') return false;
  }
  return true;
}

Result<HostRule> ParseRule(const Json& j, const std::string& where) {
  if (!j.is_object()) return FieldError(where, "must be an object");
  COVE_TRY(CheckKnownKeys(j, where, {"host", "ports", "pathPrefix", "methods", "allow", "setHeaders"}));
  HostRule rule;
  auto host = j.find("host");
  if (host == j.end() || !host->is_string()) return FieldError(where + ".host", "is required and must be a string");
  auto pattern = HostPattern::Parse(host->get<std::string>());
  if (!pattern.ok()) return FieldError(where + ".host", pattern.error().message);
  rule.host = std::move(*pattern);

  if (auto it = j.find("ports"); it != j.end()) {
    if (!it->is_array()) return FieldError(where + ".ports", "must be an array of port numbers");
    if (it->size() > kMaxListEntries) return FieldError(where + ".ports", "has too many entries");
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& p = (*it)[i];
      if (!p.is_number_integer() || p.get<int64_t>() < 1 || p.get<int64_t>() > 65535)
        return FieldError(fmt::format("{}.ports[{}]", where, i), "must be a port number between 1 and 65535");
      rule.ports.push_back(static_cast<uint16_t>(p.get<int64_t>()));
    }
  }
  if (auto it = j.find("pathPrefix"); it != j.end()) {
    if (!it->is_string()) return FieldError(where + ".pathPrefix", "must be a string");
    rule.path_prefix = it->get<std::string>();
    if (!rule.path_prefix.empty() && rule.path_prefix[0] != '/')
      return FieldError(where + ".pathPrefix", "must start with '/'");
    if (rule.path_prefix.size() > kMaxTemplateLength) return FieldError(where + ".pathPrefix", "is too long");
    for (char c : rule.path_prefix)
      if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
        return FieldError(where + ".pathPrefix", "holds a space or control character");
  }
  if (auto it = j.find("methods"); it != j.end()) {
    if (!it->is_array()) return FieldError(where + ".methods", "must be an array of strings");
    if (it->size() > kMaxListEntries) return FieldError(where + ".methods", "has too many entries");
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& m = (*it)[i];
      std::string name = fmt::format("{}.methods[{}]", where, i);
      if (!m.is_string() || !IsToken(m.get<std::string>())) return FieldError(name, "must be an HTTP method name");
      std::string method = m.get<std::string>();
      for (char& c : method)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      rule.methods.push_back(std::move(method));
    }
  }
  if (auto it = j.find("allow"); it != j.end()) {
    if (!it->is_boolean()) return FieldError(where + ".allow", "must be a boolean");
    rule.allow = it->get<bool>();
  }
  if (auto it = j.find("setHeaders"); it != j.end()) {
    if (!it->is_object()) return FieldError(where + ".setHeaders", "must be an object of header name to template");
    if (it->size() > kMaxRuleHeaders)
      return FieldError(where + ".setHeaders", fmt::format("has more than {} headers", kMaxRuleHeaders));
    for (auto h = it->begin(); h != it->end(); ++h) {
      std::string name = fmt::format("{}.setHeaders.{}", where, h.key());
      if (!IsToken(h.key())) return FieldError(where + ".setHeaders", fmt::format("has a bad header name '{}'", h.key()));
      if (!h->is_string()) return FieldError(name, "must be a string");
      const std::string& value = h->get_ref<const std::string&>();
      if (value.size() > kMaxTemplateLength) return FieldError(name, "is too long");
      if (value.find_first_of(std::string("\r\n\0", 3)) != std::string::npos)
        return FieldError(name, "holds CR, LF or NUL");
      // Secrets may be set later; a malformed reference never works.
      auto syntax = ExpandHeaderTemplate(value, [](std::string_view) -> Result<std::string> { return std::string(); });
      if (!syntax.ok())
        return FieldError(name, syntax.error().message);
      rule.set_headers.emplace_back(h.key(), value);
    }
  }
  return rule;
}

}  // namespace

std::optional<IpAddress> IpAddress::Parse(const std::string& text) {
  IpAddress a;
  if (text.empty() || text.size() > 64) return std::nullopt;
  std::string t = StripBrackets(text);
  bool bracketed = t.size() != text.size();
  if (!bracketed && inet_pton(AF_INET, t.c_str(), a.bytes) == 1) {
    a.family = AF_INET;
    return a;
  }
  if (t.find(':') != std::string::npos && inet_pton(AF_INET6, t.c_str(), a.bytes) == 1) {
    a.family = AF_INET6;
    return a;
  }
  return std::nullopt;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (!inet_ntop(family == AF_INET ? AF_INET : AF_INET6, bytes, buf, sizeof buf)) return "?";
  return buf;
}

Result<HostPattern> HostPattern::Parse(const std::string& text) {
  std::string t = AsciiLower(text);
  if (t.empty()) return MakeError(ErrorCode::kInvalidArgument, "host pattern is empty");
  if (t.size() > kMaxHostLength + 2)
    return MakeError(ErrorCode::kInvalidArgument, fmt::format("host pattern is longer than {} characters", kMaxHostLength));
  std::string why;
  if (ParseCidr(StripBrackets(t), &why)) return HostPattern{t};
  if (!why.empty()) return MakeError(ErrorCode::kInvalidArgument, fmt::format("bad CIDR '{}': {}", text, why));
  if (t.find(':') != std::string::npos || t.find('[') != std::string::npos)
    return MakeError(ErrorCode::kInvalidArgument, fmt::format("'{}' is not a valid IPv6 address", text));
  std::string bad = CheckNamePattern(t);
  if (!bad.empty()) return MakeError(ErrorCode::kInvalidArgument, fmt::format("host pattern '{}' {}", text, bad));
  return HostPattern{t};
}

bool HostPattern::Matches(const std::string& host, const std::optional<IpAddress>& addr) const {
  std::string h = CanonicalHost(host);
  if (auto cidr = ParseCidr(StripBrackets(text))) {
    if (addr && cidr->Contains(*addr)) return true;
    auto literal = HostAsAddress(h);
    return literal && cidr->Contains(*literal);
  }
  return GlobMatch(text, h);
}

bool HostPattern::NamesExplicitly(const std::string& host, const std::optional<IpAddress>& addr) const {
  if (auto cidr = ParseCidr(StripBrackets(text))) return cidr->prefix > 0 && Matches(host, addr);
  if (text.find('*') != std::string::npos) return false;
  return text == CanonicalHost(host);
}

Result<EgressPolicy> EgressPolicy::FromJson(const nlohmann::json& j) {
  if (!j.is_object()) return MakeError(ErrorCode::kInvalidArgument, "egress policy must be a JSON object");
  COVE_TRY(CheckKnownKeys(j, "", {"enableInternet", "allowedHosts", "deniedHosts", "rules"}));
  EgressPolicy policy;
  if (auto it = j.find("enableInternet"); it != j.end()) {
    if (!it->is_boolean()) return FieldError("enableInternet", "must be a boolean");
    policy.enable_internet = it->get<bool>();
  }
  if (auto it = j.find("allowedHosts"); it != j.end()) {
    COVE_ASSIGN_OR_RETURN(policy.allowed_hosts, ParsePatternList(*it, "allowedHosts"));
  }
  if (auto it = j.find("deniedHosts"); it != j.end()) {
    COVE_ASSIGN_OR_RETURN(policy.denied_hosts, ParsePatternList(*it, "deniedHosts"));
  }
  if (auto it = j.find("rules"); it != j.end()) {
    if (!it->is_array()) return FieldError("rules", "must be an array of objects");
    if (it->size() > kMaxListEntries) return FieldError("rules", fmt::format("has more than {} entries", kMaxListEntries));
    for (size_t i = 0; i < it->size(); ++i) {
      COVE_ASSIGN_OR_RETURN(HostRule rule, ParseRule((*it)[i], fmt::format("rules[{}]", i)));
      policy.rules.push_back(std::move(rule));
    }
  }
  return policy;
}

nlohmann::json EgressPolicy::ToJson() const {
  Json j = Json::object();
  j["enableInternet"] = enable_internet;
  Json allowed = Json::array();
  for (const auto& p : allowed_hosts) allowed.push_back(p.text);
  j["allowedHosts"] = std::move(allowed);
  Json denied = Json::array();
  for (const auto& p : denied_hosts) denied.push_back(p.text);
  j["deniedHosts"] = std::move(denied);
  Json rules_json = Json::array();
  for (const auto& r : rules) {
    Json rj = Json::object();
    rj["host"] = r.host.text;
    if (!r.ports.empty()) rj["ports"] = r.ports;
    if (!r.path_prefix.empty()) rj["pathPrefix"] = r.path_prefix;
    if (!r.methods.empty()) rj["methods"] = r.methods;
    rj["allow"] = r.allow;
    if (!r.set_headers.empty()) {
      Json headers = Json::object();
      for (const auto& [name, value] : r.set_headers) headers[name] = value;
      rj["setHeaders"] = std::move(headers);
    }
    rules_json.push_back(std::move(rj));
  }
  j["rules"] = std::move(rules_json);
  return j;
}

Decision Decide(const EgressPolicy& policy, const Destination& dest) {
  std::string host = CanonicalHost(dest.host);
  for (const auto& p : policy.denied_hosts)
    if (p.Matches(host, dest.address)) return Deny("deniedHosts: " + p.text);

  const HostPattern* allowed_by = nullptr;
  for (const auto& p : policy.allowed_hosts) {
    if (p.Matches(host, dest.address)) {
      allowed_by = &p;
      break;
    }
  }
  if (!policy.allowed_hosts.empty() && !allowed_by) return Deny(fmt::format("{} is not in allowedHosts", host));

  Decision decision;
  const HostRule* rule = nullptr;
  for (const auto& r : policy.rules) {
    if (RuleApplies(r, dest, host)) {
      rule = &r;
      break;
    }
  }
  bool web_port = dest.port == 80 || dest.port == 443;
  if (rule) {
    decision = Decision{rule->allow, rule, fmt::format("rule {}: {}", rule->host.text, rule->allow ? "allow" : "deny")};
  } else if (allowed_by) {
    if (!web_port) return Deny(fmt::format("port {} needs a rule that lists it", dest.port));
    decision = Decision{true, nullptr, "allowedHosts: " + allowed_by->text};
  } else if (policy.enable_internet) {
    if (!web_port) return Deny(fmt::format("port {} needs a rule that lists it", dest.port));
    decision = Decision{true, nullptr, "enableInternet"};
  } else {
    return Deny("enableInternet is false and no rule or allowedHosts entry matches");
  }
  if (!decision.allow) return decision;

  if (auto non_global = NonGlobalAddress(dest, host)) {
    if (!NamedExplicitly(policy, host, dest.address))
      return Deny(fmt::format("{} is a non-global address not named explicitly in allowedHosts or a rule",
                              non_global->ToString()),
                  decision.rule);
  }
  return decision;
}

bool IsNonGlobal(const IpAddress& addr) {
  struct Range {
    const char* network;
    int prefix;
  };
  // Not globally routable; documentation ranges are deliberately absent.
  static constexpr Range kRanges[] = {
      {"0.0.0.0", 8},       {"10.0.0.0", 8},     {"100.64.0.0", 10}, {"127.0.0.0", 8},
      {"169.254.0.0", 16},  {"172.16.0.0", 12},  {"192.0.0.0", 24},  {"192.168.0.0", 16},
      {"198.18.0.0", 15},   {"224.0.0.0", 4},    {"240.0.0.0", 4},   // 240/4 holds 255.255.255.255
      {"::", 128},          {"::1", 128},        {"100::", 64},      {"fc00::", 7},
      {"fe80::", 10},       {"fec0::", 10},      {"ff00::", 8},
  };
  static const std::vector<Cidr> kNonGlobal = [] {
    std::vector<Cidr> out;
    for (const auto& r : kRanges) out.push_back(Cidr{*IpAddress::Parse(r.network), r.prefix});
    return out;
  }();
  if (auto v4 = EmbeddedV4(addr)) return IsNonGlobal(*v4);
  return std::any_of(kNonGlobal.begin(), kNonGlobal.end(),
                     [&](const Cidr& c) { return SamePrefix(c.network, addr, c.prefix); });
}

}  // namespace cove::proxy
