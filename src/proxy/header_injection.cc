#include "proxy/header_injection.h"

#include <algorithm>

#include "base/ascii.h"
#include "proxy/secret_templates.h"

namespace cove::proxy {

std::string InjectSecrets(boost::beast::http::fields& req, std::string& origin_form, const std::string& host,
                          const std::vector<std::pair<std::string, std::string>>& set_headers,
                          const SecretSet& secrets) {
  if (secrets.HasPlaceholders()) {
    std::vector<std::pair<std::string, std::vector<std::string>>> rewritten;
    for (const auto& field : req) {
      std::string value(field.value().data(), field.value().size());
      PlaceholderOutcome out = ReplacePlaceholders(value, host, secrets);
      if (!out.exfiltration.empty()) {
        return "exfiltration attempt: the placeholder of secret " + out.exfiltration + " was sent to " + host +
               ", a host it is not bound to";
      }
      if (!out.replaced) continue;
      std::string name(field.name_string().data(), field.name_string().size());
      auto it = std::find_if(rewritten.begin(), rewritten.end(),
                             [&](const auto& e) { return AsciiIEquals(e.first, name); });
      if (it == rewritten.end()) {
        rewritten.emplace_back(name, std::vector<std::string>());
        it = rewritten.end() - 1;
      }
      it->second.push_back(std::move(value));
    }
    PlaceholderOutcome in_target = ReplacePlaceholders(origin_form, host, secrets);
    if (!in_target.exfiltration.empty()) {
      return "exfiltration attempt: the placeholder of secret " + in_target.exfiltration + " was sent to " + host +
             ", a host it is not bound to";
    }
    for (const auto& [name, values] : rewritten) {
      // Fields with the name but without a placeholder keep their values.
      std::vector<std::string> all;
      size_t next = 0;
      for (auto it = req.find(name); it != req.end() && AsciiIEquals(std::string_view(it->name_string().data(), it->name_string().size()), name);
           ++it) {
        std::string value(it->value().data(), it->value().size());
        all.push_back(value.find("cove-placeholder-") != std::string::npos && next < values.size() ? values[next++]
                                                                                                 : value);
      }
      req.erase(name);
      for (const auto& v : all) req.insert(name, v);
    }
  }
  for (const auto& [name, tmpl] : set_headers) {
    auto value = ExpandSecretTemplate(tmpl, secrets);
    if (!value.ok()) return "setHeaders " + name + ": " + value.error().message + " (request not sent)";
    if (value->find_first_of(std::string("\r\n\0", 3)) != std::string::npos)
      return "setHeaders " + name + ": the value is not fit for a header (request not sent)";
    req.set(name, *value);
  }
  return std::string();
}


}  // namespace cove::proxy
