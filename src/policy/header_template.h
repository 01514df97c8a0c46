// The grammar of a rule's header templates: text with "{{secret.NAME}}"
// references (spaces inside the braces allowed). Pure functions; the egress
// policy checks templates with it, the proxy expands them with secrets.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace cove::proxy {

// A secret's name: 1-64 of A-Z, 0-9, '_'.
bool ValidSecretName(std::string_view name);

// Replaces every reference with value_of(NAME) and copies other text
// unchanged. kInvalidArgument for an unterminated "{{" or a reference that is
// not "secret.NAME"; an error of value_of is returned as it is.
Result<std::string> ExpandHeaderTemplate(std::string_view tmpl,
                                         const std::function<Result<std::string>(std::string_view name)>& value_of);

}  // namespace cove::proxy
