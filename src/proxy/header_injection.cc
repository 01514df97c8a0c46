#include "proxy/header_injection.h"

#include "proxy/secret_templates.h"

namespace cove::proxy {
namespace {

std::string Exfiltration(const std::string& secret, const std::string& host) {
  return "exfiltration attempt: the placeholder of secret " + secret + " was sent to " + host +
         ", a host it is not bound to";
}

bool FitForHeader(const std::string& value) { return value.find_first_of(std::string("\r\n\0", 3)) == std::string::npos; }

}  // namespace

std::string InjectSecrets(http::HttpHead& req, std::string& origin_form, const std::string& host,
                          const std::vector<std::pair<std::string, std::string>>& set_headers,
                          const SecretSet& secrets) {
  if (secrets.HasPlaceholders()) {
    // In place: fields keep their order, those without a placeholder their values.
    for (auto& [name, value] : req.headers) {
      PlaceholderOutcome out = ReplacePlaceholders(value, host, secrets);
      if (!out.exfiltration.empty()) return Exfiltration(out.exfiltration, host);
      if (out.replaced && !FitForHeader(value))
        return "the value of a secret put into " + name + " is not fit for a header (request not sent)";
    }
    PlaceholderOutcome in_target = ReplacePlaceholders(origin_form, host, secrets);
    if (!in_target.exfiltration.empty()) return Exfiltration(in_target.exfiltration, host);
  }
  for (const auto& [name, tmpl] : set_headers) {
    auto value = ExpandSecretTemplate(tmpl, secrets);
    if (!value.ok()) return "setHeaders " + name + ": " + value.error().message + " (request not sent)";
    if (!FitForHeader(*value)) return "setHeaders " + name + ": the value is not fit for a header (request not sent)";
    req.Remove(name);
    req.Add(name, std::move(*value));
  }
  return std::string();
}

}  // namespace cove::proxy
