// What the egress proxy does with secrets in a request, as pure functions:
// expanding header templates ("Bearer {{secret.GITHUB_TOKEN}}") and finding
// and replacing placeholder tokens (secret_store.h).
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"
#include "proxy/secret_store.h"

namespace cove::proxy {

// Replaces every "{{secret.NAME}}" (spaces inside the braces allowed) with
// the secret's value. kNotFound naming the secret when one is missing;
// kInvalidArgument for an unterminated "{{" or a reference that is not
// "secret.NAME". Other text is copied unchanged.
Result<std::string> ExpandSecretTemplate(std::string_view tmpl, const SecretSet& secrets);

struct PlaceholderOutcome {
  bool replaced = false;       // at least one token was replaced by its value
  std::string exfiltration;    // non-empty: the name of a secret whose token goes to a host it is not bound to
};

// Replaces, in `text`, each placeholder token whose secret is bound to
// `host` with the secret's value; a token of a secret not bound to `host`
// is left as is and reported in `exfiltration` (the caller blocks the request).
PlaceholderOutcome ReplacePlaceholders(std::string& text, const std::string& host, const SecretSet& secrets);

}  // namespace cove::proxy
