// Header templates and placeholder replacement (secret_templates.h).
#include "proxy/secret_templates.h"

namespace cove::proxy {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

Result<std::string> ExpandSecretTemplate(std::string_view tmpl, const SecretSet& secrets) {
  std::string out;
  size_t pos = 0;
  while (pos < tmpl.size()) {
    size_t open = tmpl.find("{{", pos);
    if (open == std::string_view::npos) {
      out.append(tmpl.substr(pos));
      break;
    }
    out.append(tmpl.substr(pos, open - pos));
    size_t close = tmpl.find("}}", open + 2);
    if (close == std::string_view::npos)
      return MakeError(ErrorCode::kInvalidArgument, "unterminated {{ in a header template");
    std::string_view ref = Trim(tmpl.substr(open + 2, close - open - 2));
    constexpr std::string_view kPrefix = "secret.";
    if (ref.substr(0, kPrefix.size()) != kPrefix || !SecretStore::ValidName(ref.substr(kPrefix.size())))
      return MakeError(ErrorCode::kInvalidArgument, "header templates name {{secret.NAME}}, not {{" + std::string(ref) + "}}");
    std::string_view name = ref.substr(kPrefix.size());
    const Secret* s = secrets.Find(name);
    if (!s) return MakeError(ErrorCode::kNotFound, "secret " + std::string(name) + " is not set");
    out.append(s->value);
    pos = close + 2;
  }
  return out;
}

PlaceholderOutcome ReplacePlaceholders(std::string& text, const std::string& host, const SecretSet& secrets) {
  PlaceholderOutcome outcome;
  if (text.find("cove-placeholder-") == std::string::npos) return outcome;
  auto address = IpAddress::Parse(host);
  for (const auto& s : secrets.secrets) {
    if (s.placeholder.empty() || text.find(s.placeholder) == std::string::npos) continue;
    bool bound = false;
    for (const auto& h : s.hosts)
      if (h.Matches(host, address)) bound = true;
    if (!bound) {
      if (outcome.exfiltration.empty()) outcome.exfiltration = s.name;
      continue;
    }
    for (size_t at = text.find(s.placeholder); at != std::string::npos;
         at = text.find(s.placeholder, at + s.value.size())) {
      text.replace(at, s.placeholder.size(), s.value);
      outcome.replaced = true;
    }
  }
  return outcome;
}

}  // namespace cove::proxy
