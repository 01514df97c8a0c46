// Header templates and placeholder replacement (secret_templates.h).
#include "proxy/secret_templates.h"

#include "policy/header_template.h"

namespace cove::proxy {

Result<std::string> ExpandSecretTemplate(std::string_view tmpl, const SecretSet& secrets) {
  return ExpandHeaderTemplate(tmpl, [&secrets](std::string_view name) -> Result<std::string> {
    const Secret* s = secrets.Find(name);
    if (!s) return MakeError(ErrorCode::kNotFound, "secret " + std::string(name) + " is not set");
    return s->value;
  });
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
